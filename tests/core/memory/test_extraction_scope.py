"""What Mem0 is shown when it extracts the facts of one handle's turn comes from that handle only.

The LLM is the fake's restating model: its extraction answer lists, as facts, every line it was shown
(Mem0's "Last k Messages" and "Existing Memories" context included), and its chat answer repeats its
prompt. So whatever of another handle reaches the extraction of a turn becomes a memory carrying this
handle's provenance, and would leave with the handle when it is unlinked. A customer's SMS handle tells
an invoice number; a Telegram handle linked to the customer says "hello". Each test failed on the code
before the fix (Mem0 showed the SMS words as last messages, the SMS memory as an existing memory, and
the writer handed it the bot's reply, which quoted the invoice).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from core.memory.local import LocalMemory
from core.memory.mem0_quirks import mem0_dir
from core.messages import Address, Assurance, ChatMessage, InboundMessage, Provenance
from core.settings import LLMSettings
from identity.linking import IdentityLinks
from tests.core.harness import make_settings, running_hub
from tests.core.memory.helpers import files_containing
from tests.fakes.openai_server import FakeOpenAI, restating_responder
from tests.fakes.recording import RecordingSender

A, B = "cust-a", "cust-b"
SMS = "sms:+15551230000"
TELEGRAM = "telegram:42"
INVOICE = "INV-4471"
SMS_WORDS = f"my invoice is {INVOICE} and my dog is called Zanzibar"
SMS_ONLY = (INVOICE, "Zanzibar")  # words only the SMS handle ever said


def origin(handle: str, *turn_ids: int) -> Provenance:
    return Provenance(
        channel=handle.split(":", 1)[0],
        handle=handle,
        message_ids=tuple(f"inbox:{t}" for t in turn_ids),
        category="support_history",
        turn_ids=turn_ids,
    )


def said(text: str) -> list[ChatMessage]:
    return [ChatMessage(role="user", content=text)]


def section(call: dict[str, Any], title: str) -> str:
    """One section of Mem0's extraction prompt (``## <title>``), stripped."""
    prompt = str(call["messages"][-1]["content"])
    return prompt.split(f"## {title}\n", 1)[-1].split("\n\n## ", 1)[0].strip()


def sms_words_in(text: str) -> list[str]:
    return [word for word in SMS_ONLY if word.lower() in text.lower()]


@pytest.fixture
def llm() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(responder=restating_responder) as fake:
        yield fake


@pytest.fixture
async def memory(tmp_path: Path, llm: FakeOpenAI) -> AsyncIterator[LocalMemory]:
    settings = LLMSettings(api_key=SecretStr("sk-test"), base_url=llm.base_url, max_retries=0, timeout=10)
    store = LocalMemory(data_dir=tmp_path / "data", llm=settings)
    yield store
    await store.aclose()


async def test_a_handles_extraction_is_shown_nothing_another_handle_said(
    memory: LocalMemory, llm: FakeOpenAI
) -> None:
    await memory.remember(A, said(SMS_WORDS), provenance=origin(SMS, 1), infer=True)
    assert any(INVOICE in r.text for r in await memory.list(A))  # the restating model kept it (for SMS)
    before = len(llm.calls)

    await memory.remember(A, said("hello"), provenance=origin(TELEGRAM, 2), infer=True)

    [extraction] = llm.calls[before:]
    assert section(extraction, "New Messages") == "user: hello"
    assert sms_words_in(json.dumps(extraction)) == [], "the Telegram turn's extraction saw SMS words"
    from_telegram = [r for r in await memory.list(A) if r.handle == TELEGRAM]
    assert from_telegram, "the restating model makes memories of what it was shown"
    assert all(sms_words_in(r.text) == [] for r in from_telegram)

    # unlinking Telegram moves its memories: they take nothing the SMS handle said
    assert await memory.move(A, B, handles=[TELEGRAM])
    assert all(sms_words_in(r.text) == [] for r in await memory.list(B))
    assert any(INVOICE in r.text for r in await memory.list(A))


async def test_the_existing_memories_shown_are_the_handles_own(memory: LocalMemory, llm: FakeOpenAI) -> None:
    await memory.remember(A, said("please text me after 6pm"), provenance=origin(TELEGRAM, 1), infer=True)
    await memory.remember(A, said(SMS_WORDS), provenance=origin(SMS, 2), infer=True)
    before = len(llm.calls)

    await memory.remember(A, said("any news?"), provenance=origin(TELEGRAM, 3), infer=True)

    [extraction] = llm.calls[before:]
    existing = section(extraction, "Existing Memories")
    assert "please text me after 6pm" in existing  # its own memories are still shown (Mem0 dedups by them)
    assert sms_words_in(existing) == []


async def test_mem0_keeps_no_last_messages(memory: LocalMemory, llm: FakeOpenAI, tmp_path: Path) -> None:
    await memory.remember(A, said(SMS_WORDS), provenance=origin(SMS, 1), infer=True)
    await memory.remember(A, said("and the router blinks"), provenance=origin(SMS, 2), infer=True)
    # not even the same handle's: the rows are keyed by customer, and would follow no handle
    assert section(llm.calls[-1], "Last k Messages") == ""
    with sqlite3.connect(mem0_dir(tmp_path / "data") / "history.db") as db:
        assert db.execute("SELECT count(*) FROM messages").fetchone() == (0,)


async def test_raw_messages_kept_by_an_earlier_version_are_deleted(tmp_path: Path) -> None:
    canary = "zqlastmessagecanary"
    history = mem0_dir(tmp_path / "data") / "history.db"
    history.parent.mkdir(parents=True)
    with sqlite3.connect(history) as db:
        db.execute(
            "CREATE TABLE messages (id TEXT PRIMARY KEY, session_scope TEXT, role TEXT, content TEXT,"
            " name TEXT, created_at DATETIME)"
        )
        db.execute(
            "INSERT INTO messages VALUES ('1', 'user_id=cust-a', 'user', ?, NULL, '2026-01-01')", (canary,)
        )
    db.close()
    assert files_containing(tmp_path, canary)
    memory = LocalMemory(data_dir=tmp_path / "data", llm=LLMSettings())
    try:
        assert await memory.list(A) == []  # opens Mem0
    finally:
        await memory.aclose()
    assert files_containing(tmp_path, canary) == []


# ----- through the hub: the bot's reply quotes the invoice on Telegram -----------------------------


def inbound(address: str, n: int, text: str) -> InboundMessage:
    sender = Address.parse(address)
    return InboundMessage(
        channel=sender.channel,
        provider_message_id=f"{sender.channel}-{n}",
        sender=sender,
        text=text,
        reply_target={"to": address},
        sender_assurance=Assurance.PLATFORM_ATTESTED,
        private=True,
    )


async def test_an_unlinked_handle_takes_only_what_its_own_words_said(tmp_path: Path, llm: FakeOpenAI) -> None:
    sms, telegram = RecordingSender("sms"), RecordingSender("telegram")
    async with running_hub(make_settings(tmp_path, llm_url=llm.base_url), sms, telegram) as hub:
        await hub.accept(inbound(SMS, 1, SMS_WORDS))
        await hub.wait_idle(timeout=60)
        customer = (await hub.resolver.resolve(Address.parse(SMS))).customer_id
        links = IdentityLinks(hub.db, hub.memory)
        await links.link(Address.parse(TELEGRAM), customer, actor="admin:test")
        before = len(llm.calls)

        await hub.accept(inbound(TELEGRAM, 2, "hello"))
        await hub.wait_idle(timeout=60)

        # the reply drew on the SMS memory (the restating model repeats its prompt)
        assert INVOICE in telegram.sent[-1].text
        extractions = [c for c in llm.calls[before:] if c.get("response_format")]
        assert extractions, "the Telegram turn was written to memory with extraction"
        for call in extractions:
            assert section(call, "New Messages") == "user: hello"  # the customer's words, not the reply
            assert sms_words_in(json.dumps(call)) == [], "the Telegram turn's extraction saw SMS words"
        memories = await hub.memory.list(customer)
        assert any(r.handle == TELEGRAM for r in memories)
        assert all(sms_words_in(r.text) == [] for r in memories if r.handle == TELEGRAM)

        await links.unlink(Address.parse(TELEGRAM), actor="admin:test")
        assert await links.run_moves() == 0
        left = (await hub.resolver.resolve(Address.parse(TELEGRAM))).customer_id
        assert left != customer
        taken = await hub.memory.list(left)
        assert taken and all(r.handle == TELEGRAM for r in taken)
        assert all(sms_words_in(r.text) == [] for r in taken)
        assert any(INVOICE in r.text for r in await hub.memory.list(customer))
