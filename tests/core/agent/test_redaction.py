"""Redaction: sensitive values never reach Mem0 or an LLM prompt, and ordinary support text is left alone.

The unit tests feed ``core.agent.redaction.redact`` realistic messages per kind, worded the way each channel
writes (terse SMS, chatty Telegram, Slack, formal email), and ordinary support text that must come back
unchanged. The end-to-end tests run a hub with a recording sender per channel and check every memory
and every request the LLM received (replies and Mem0's fact extraction alike).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from core.agent.prompt import build_messages, memory_block
from core.agent.redaction import KINDS, Redacted, placeholder, redact
from core.messages import Address, Assurance, InboundMessage, MemoryRecord
from tests.core.harness import make_settings, running_hub
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.recording import RecordingSender

CARD = "4111 1111 1111 1111"  # Visa test number, Luhn-valid
MASTERCARD = "5500-0000-0000-0004"
AMEX = "3782 822463 10005"
IBAN_DE = "DE89 3704 0044 0532 0130 00"
IBAN_GB = "GB82 WEST 1234 5698 7654 32"
SSN = "536-22-1234"
PASSWORD = "Tr0ub4dor&3"
OTP = "482913"
OPENAI_KEY = "sk-proj-4fGh8JkL2mNp9QrS7tUv3WxYz0Ab"
AWS_KEY = "AKIAIOSFODNN7EXAMPLE"
GITHUB_TOKEN = "ghp_R2d2C3poBb8Luke1Leia2Han3Solo4Chewie5"
SLACK_TOKEN = "xoxb-2048190455-8810472234-aB3dE5fG7hJ9kL"


def removed(kind: str) -> str:
    return placeholder(kind)


# ----- per kind, per channel wording -------------------------------------------------------------

POSITIVES: list[tuple[str, str, str, str]] = [
    # (channel, message, the value that must go, kind)
    ("sms", f"hi its me, card {CARD} exp 08/27 pls fix the charge", CARD, "card number"),
    ("telegram", f"my card number is {MASTERCARD}, why was it declined??", MASTERCARD, "card number"),
    ("slack", f"charged twice on amex {AMEX} :confused:", AMEX, "card number"),
    (
        "email",
        "Dear support,\n\nMy card 4111111111111111 was charged twice.\n\nBest,\nAna",
        "4111111111111111",
        "card number",
    ),
    ("slack", f"hey, our IBAN is {IBAN_GB} for the refund", IBAN_GB, "bank account"),
    ("email", f"Please refund to IBAN {IBAN_DE}.\n\nKind regards,\nAna", IBAN_DE, "bank account"),
    ("telegram", "refund to de89370400440532013000 pls", "de89370400440532013000", "bank account"),
    ("sms", "pls send it to account number 12345678 at chase", "12345678", "bank account"),
    ("email", "Our bank account no. 000123456789 is at Chase.", "000123456789", "bank account"),
    ("sms", f"ssn {SSN} for the credit check", SSN, "national id"),
    ("email", "My social security number is 536 22 1234, as requested.", "536 22 1234", "national id"),
    ("telegram", f"my password is {PASSWORD} and it still doesnt work", PASSWORD, "password"),
    ("slack", f"pw: {PASSWORD}", PASSWORD, "password"),
    ("email", 'I changed my password to be safe. The new password is "hunter2".', "hunter2", "password"),
    ("sms", f"the code is {OTP}", OTP, "one-time code"),
    ("telegram", f"OTP {OTP}", OTP, "one-time code"),
    ("email", f"Your verification code: {OTP} did not work", OTP, "one-time code"),
    ("slack", "my 2fa code 123 456 expired", "123 456", "one-time code"),
    ("slack", f"our key is {OPENAI_KEY}, is it leaked?", OPENAI_KEY, "secret"),
    ("email", f"AWS access key id {AWS_KEY}", AWS_KEY, "secret"),
    ("telegram", f"token {GITHUB_TOKEN}", GITHUB_TOKEN, "secret"),
    ("slack", f"the bot uses {SLACK_TOKEN}", SLACK_TOKEN, "secret"),
    ("sms", "api token: 9f8e7d6c5b4a39281706f5e4d3c2b1a0", "9f8e7d6c5b4a39281706f5e4d3c2b1a0", "secret"),
    ("email", "Authorization: Bearer Zx81QpLm27NvB4cTy6Rw0KsJh3", "Zx81QpLm27NvB4cTy6Rw0KsJh3", "secret"),
]


@pytest.mark.parametrize(("channel", "message", "value", "kind"), POSITIVES)
def test_each_kind_is_replaced_by_its_placeholder(channel: str, message: str, value: str, kind: str) -> None:
    result = redact(message)
    assert value not in result.text
    assert removed(kind) in result.text
    assert result.kinds == (kind,)
    assert result.changed
    # the rest of the message is kept word for word
    assert result.text == message.replace(value, removed(kind), 1)


def test_many_kinds_in_one_message_in_order_of_appearance() -> None:
    message = f"card {CARD}, iban {IBAN_DE}, ssn {SSN}, my password is {PASSWORD}, key {AWS_KEY}"
    result = redact(message)
    assert result.text == (
        "card [card number removed], iban [bank account removed], ssn [national id removed], "
        "my password is [password removed], key [secret removed]"
    )
    assert result.kinds == ("card number", "bank account", "national id", "password", "secret")
    assert set(result.kinds) <= set(KINDS)


def test_redaction_is_idempotent() -> None:
    once = redact(" ".join(message for _, message, _, _ in POSITIVES))
    assert redact(once.text) == Redacted(once.text)


# ----- checksums and ranges ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "message",
    [
        "card 4111 1111 1111 1112",  # Luhn fails
        "iban DE89 3704 0044 0532 0130 01",  # IBAN checksum fails
        "GB82 WEST 1234 5698 7654 33",
        "ssn 000-12-3456",  # area 000
        "ssn 666-12-3456",  # area 666
        "ssn 912-12-3456",  # 9xx (ITINs, never SSNs)
        "ssn 123-00-4567",  # group 00
        "ssn 123-45-0000",  # serial 0000
        "ssn 078-05-1120",  # the Woolworth wallet card
    ],
)
def test_numbers_that_fail_their_checksum_or_range_are_kept(message: str) -> None:
    assert redact(message) == Redacted(message)


# ----- no false positives on ordinary support text -----------------------------------------------

NEGATIVES = [
    "Order 4411 hasn't arrived yet",
    "my order #1234567 was charged $49.99 twice on 2024-03-15",
    "Amazon order 112-1234567-1234567 never came",
    "invoice INV-2024-00042 for 1,299.00 EUR, due 15/03/2024 at 10:30",
    "call me on +1 (555) 123-4567 or +44 20 7946 0958",
    "text me at 555-123-4567, or +86 138 0013 8000",
    "tracking number 1Z999AA10123456784",
    "IMEI 490154203237518, the phone won't boot",
    "my zip code is 94107",
    "error code 50001 when I log in",
    "promo code 2024 did not apply",
    "my password is not working",
    "I forgot my password, can you reset it?",
    "the password reset link expired",
    "my password is wrong apparently",
    "the token expired yesterday",
    "my api key stopped working after the update",
    "account 4411 is locked",
    "my account number is 4411",
    "ticket 20240315123456 is still open",
    "I paid 1500 on 2024-01-02 and 250 on 2024-02-03",
    "slack:T0123ABC:U0456DEF and telegram:123456789 are both me",
    "the code doesn't work",
    "reference ABCD1234EFGH5678 on the statement",
]


@pytest.mark.parametrize("message", NEGATIVES)
def test_ordinary_support_text_is_left_alone(message: str) -> None:
    assert redact(message) == Redacted(message)


# ----- the prompt shows redacted memories, turns and message -------------------------------------


def test_the_prompt_redacts_memories_written_before_redaction_existed() -> None:
    old = MemoryRecord(id="m1", text=f"User's card is {CARD}", channel="sms")
    block = memory_block([old])
    assert CARD not in block and "[card number removed]" in block
    messages = build_messages(text=f"pw: {PASSWORD}", channel="telegram", memories=[old], recent=[])
    assert all(CARD not in m.content and PASSWORD not in m.content for m in messages)


# ----- end to end: four channels, a running hub --------------------------------------------------

ADDRESSES = {
    "sms": Address(channel="sms", handle="+15551230000"),
    "telegram": Address(channel="telegram", handle="777000111"),
    "slack": Address(channel="slack", handle="T0123ABC:U0456DEF"),
    "email": Address(channel="email", handle="ana.lopez@example.com"),
}
SENSITIVE = {
    "card number": CARD,
    "bank account": IBAN_DE,
    "national id": SSN,
    "password": PASSWORD,
    "secret": OPENAI_KEY,
}
WORDING = {
    "sms": "pls refund to card {card} asap. iban {iban}. ssn {ssn}. my password is {pw} and key {key}",
    "telegram": "hi! my card is {card}, iban {iban}, ssn {ssn}, password: {pw}, api key {key}",
    "slack": "hey :wave: card {card} / IBAN {iban} / SSN {ssn} / pw: {pw} / our key is {key}",
    "email": (
        "Dear support,\n\nMy card {card} was charged twice. Please refund to IBAN {iban}.\n"
        "For verification: SSN {ssn}. My password is {pw}. Our API key is {key}.\n\nKind regards,\nAna"
    ),
}


def spellings(value: str) -> set[str]:
    """The value as written and in its compact forms (no spaces or dashes), any case."""
    compact = re.sub(r"[ \-]", "", value)
    return {value, compact, value.lower(), compact.lower()}


def leaks(text: str) -> list[str]:
    lowered = text.lower()
    return [kind for kind, value in SENSITIVE.items() if any(s.lower() in lowered for s in spellings(value))]


def inbound(channel: str, n: int, text: str) -> InboundMessage:
    address = ADDRESSES[channel]
    return InboundMessage(
        channel=channel,
        provider_message_id=f"{channel}-{n}",
        sender=address,
        text=text,
        reply_target={"to": str(address)},
        sender_assurance=Assurance.PLATFORM_ATTESTED,
        private=True,
    )


def new_messages(request: dict[str, Any]) -> list[str]:
    """The conversation lines of a Mem0 fact-extraction request (its "## New Messages" section)."""
    prompt = request["messages"][-1]["content"]
    section = prompt.split("## New Messages\n", 1)[-1].split("\n\n## ", 1)[0]
    return [line for line in section.splitlines() if line.strip()]


def copying_model(request: dict[str, Any]) -> str:
    """An LLM that repeats what it is given: a reply echoes the message, and Mem0's fact extraction
    returns every conversation line as a fact. Whatever reaches it would reach memory."""
    if (request.get("response_format") or {}).get("type") == "json_object":
        return json.dumps({"memory": [{"text": line} for line in new_messages(request)]})
    last = next(m["content"] for m in reversed(request["messages"]) if m["role"] == "user")
    return f"Noted: {last}"


async def _run_all_channels(tmp_path: Path, llm_url: str | None) -> tuple[list[MemoryRecord], int]:
    senders = [RecordingSender(name) for name in ADDRESSES]
    values = {"card": CARD, "iban": IBAN_DE, "ssn": SSN, "pw": PASSWORD, "key": OPENAI_KEY}
    async with running_hub(make_settings(tmp_path, llm_url=llm_url), *senders) as hub:
        for channel, wording in WORDING.items():
            await hub.accept(inbound(channel, 1, wording.format(**values)))
        await hub.wait_idle(timeout=60)
        # a later, ordinary message on every channel: its prompt recalls the memories and recent turns
        for channel in ADDRESSES:
            await hub.accept(inbound(channel, 2, "what did I send you earlier about my refund?"))
        await hub.wait_idle(timeout=60)
        memories: list[MemoryRecord] = []
        for address in ADDRESSES.values():
            customer = (await hub.resolver.resolve(address)).customer_id
            memories.extend(await hub.memory.list(customer))
        replies = sum(len(s.sent) for s in senders)
    return memories, replies


async def test_offline_hub_stores_no_sensitive_value_in_memory_on_any_channel(tmp_path: Path) -> None:
    memories, replies = await _run_all_channels(tmp_path, llm_url=None)
    assert replies == 8
    assert len(memories) >= 4, "every channel's first message is stored (redacted), not dropped"
    for memory in memories:
        assert leaks(memory.text) == [], memory.text
    stored = " ".join(m.text for m in memories)
    for kind in SENSITIVE:
        assert placeholder(kind) in stored, f"{kind} should be stored as its placeholder"


async def test_llm_hub_sends_no_sensitive_value_to_memory_or_any_prompt(tmp_path: Path) -> None:
    with FakeOpenAI(responder=copying_model) as fake:
        memories, replies = await _run_all_channels(tmp_path, llm_url=fake.base_url)
        calls = list(fake.calls)
    assert replies == 8
    assert memories, "the copying model makes Mem0 store what it was given"
    for memory in memories:
        assert leaks(memory.text) == [], memory.text
    chat_calls = [c for c in calls if "response_format" not in c]
    extraction_calls = [c for c in calls if "response_format" in c]
    assert len(chat_calls) == 8 and extraction_calls
    for call in calls:
        assert leaks(json.dumps(call["messages"], ensure_ascii=False)) == []
    # the later prompts still know that something was sent, as placeholders
    later = json.dumps([c["messages"] for c in chat_calls[4:]])
    assert "[card number removed]" in later and "[secret removed]" in later


async def test_a_reply_with_a_sensitive_value_is_not_stored_in_memory(tmp_path: Path) -> None:
    """A reply the LLM put a card in never reaches memory or the extraction LLM: replies are not
    remembered, and what is (the customer's words) is redacted."""

    def careless(request: dict[str, Any]) -> str:
        if (request.get("response_format") or {}).get("type") == "json_object":
            return copying_model(request)  # every line of the conversation becomes a memory
        return f"I see your card {CARD} and your one-time code is {OTP}."

    sender = RecordingSender("telegram")
    with FakeOpenAI(responder=careless) as fake:
        async with running_hub(make_settings(tmp_path, llm_url=fake.base_url), sender) as hub:
            await hub.accept(inbound("telegram", 1, "what card do you have on file?"))
            await hub.wait_idle(timeout=60)
            customer = (await hub.resolver.resolve(ADDRESSES["telegram"])).customer_id
            memories = await hub.memory.list(customer)
    assert CARD in sender.sent[0].text  # the customer still gets the reply as written
    assert memories
    # a reply is never remembered (it may repeat what other handles said: core.memory.writer), so the card
    # the LLM put in it cannot reach memory that way either
    assert not any("assistant" in m.text for m in memories), "the reply was stored"
    for memory in memories:
        assert CARD not in memory.text and OTP not in memory.text
    extraction = [c for c in fake.calls if "response_format" in c]
    assert extraction and all(CARD not in json.dumps(c) for c in extraction)
