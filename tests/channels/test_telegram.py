"""The Telegram adapter against documented webhook payloads and a fake Bot API driven by real PTB."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from channels.base import ChannelAdapter, WebhookRequest
from channels.telegram import (
    CONTACT_TEXT,
    MAX_TEXT_LENGTH,
    TelegramAdapter,
    set_webhook,
    split_text,
)
from core.errors import (
    BadRequest,
    ConfigError,
    PermanentDeliveryError,
    TransientDeliveryError,
    VerificationFailed,
)
from core.messages import Address, OutboundMessage, SharedContact
from core.settings import TelegramSettings
from identity.normalize import normalize_address
from tests.fakes.telegram_api import DEFAULT_TOKEN, FakeTelegramAPI, error_body

FIXTURES = Path(__file__).parent / "fixtures" / "telegram"
SECRET = "wh-Secret_0123456789abcdef"
BOT_ID = DEFAULT_TOKEN.split(":", 1)[0]


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def delivery(body: bytes, *, secret: str | None = SECRET) -> WebhookRequest:
    """A webhook POST as Telegram makes it: JSON body, the secret token in its header."""
    headers = {"content-type": "application/json"}
    if secret is not None:
        headers["x-telegram-bot-api-secret-token"] = secret
    return WebhookRequest(
        method="POST", path="/webhooks/telegram", query_string="", headers=headers, body=body
    )


def settings(api_base_url: str = "http://127.0.0.1:9/bot", **overrides: Any) -> TelegramSettings:
    values: dict[str, Any] = {
        "bot_token": SecretStr(DEFAULT_TOKEN),
        "secret_token": SecretStr(SECRET),
        "api_base_url": api_base_url,
    }
    values.update(overrides)
    return TelegramSettings(**values)


def reply(text: str, *, chat_id: int = 1111111, parts_sent: int = 0, **target: Any) -> OutboundMessage:
    return OutboundMessage(
        channel="telegram",
        recipient=Address(channel="telegram", handle=str(chat_id)),
        text=text,
        idempotency_key="reply-1",
        reply_target={"chat_id": chat_id, "message_id": 1365, "chat_type": "private", **target},
        parts_sent=parts_sent,
    )


@pytest.fixture
async def fake() -> AsyncIterator[FakeTelegramAPI]:
    async with FakeTelegramAPI() as server:
        yield server


@pytest.fixture
async def adapter(fake: FakeTelegramAPI) -> AsyncIterator[TelegramAdapter]:
    channel = TelegramAdapter(settings(fake.api_base_url), normalize=normalize_address)
    yield channel
    await channel.aclose()


@pytest.fixture
async def offline_adapter() -> AsyncIterator[TelegramAdapter]:
    """For inbound tests: its API URL points nowhere, so any network use would fail."""
    channel = TelegramAdapter(settings(), normalize=normalize_address)
    yield channel
    await channel.aclose()


# ----- construction ------------------------------------------------------------------------------


def test_is_a_channel_adapter_and_keeps_secrets_out_of_repr() -> None:
    channel = TelegramAdapter(settings(), normalize=normalize_address)
    assert isinstance(channel, ChannelAdapter)
    assert channel.name == "telegram"
    assert channel.max_body_bytes == 1_048_576
    text = repr(channel)
    assert DEFAULT_TOKEN.split(":", 1)[1] not in text and SECRET not in text
    assert BOT_ID in text


@pytest.mark.parametrize(
    ("overrides", "setting"),
    [
        ({"bot_token": None}, "THREADLINE_TELEGRAM__BOT_TOKEN"),
        ({"bot_token": SecretStr("not-a-token")}, "THREADLINE_TELEGRAM__BOT_TOKEN"),
        ({"secret_token": None}, "THREADLINE_TELEGRAM__SECRET_TOKEN"),
        ({"secret_token": SecretStr("has spaces!")}, "THREADLINE_TELEGRAM__SECRET_TOKEN"),
    ],
)
def test_refuses_to_start_without_a_usable_token_or_secret(overrides: dict[str, Any], setting: str) -> None:
    with pytest.raises(ConfigError) as caught:
        TelegramAdapter(settings(**overrides), normalize=normalize_address)
    assert caught.value.setting == setting
    assert DEFAULT_TOKEN not in str(caught.value)


# ----- verify ------------------------------------------------------------------------------------


async def test_verify_accepts_the_configured_secret(offline_adapter: TelegramAdapter) -> None:
    await offline_adapter.verify(delivery(fixture("private_text.json")))


@pytest.mark.parametrize("secret", [None, "", "wrong", SECRET + "x", SECRET[:-1], SECRET.upper(), "ünïcode"])
async def test_verify_fails_closed_with_403(offline_adapter: TelegramAdapter, secret: str | None) -> None:
    with pytest.raises(VerificationFailed) as caught:
        await offline_adapter.verify(delivery(fixture("private_text.json"), secret=secret))
    assert caught.value.status == 403


# ----- parse -------------------------------------------------------------------------------------


async def test_private_text_message(offline_adapter: TelegramAdapter) -> None:
    parsed = await offline_adapter.parse(delivery(fixture("private_text.json")))
    assert parsed.reply.status == 200 and parsed.reply.body == b""
    [message] = parsed.messages
    assert message.channel == "telegram"
    assert message.provider_message_id == f"{BOT_ID}:10000"
    assert message.sender == Address(channel="telegram", handle="1111111")
    assert message.text == "/start"
    assert message.reply_target == {"chat_id": 1111111, "message_id": 1365, "chat_type": "private"}
    assert message.received_at == datetime.fromtimestamp(1441645532, UTC)
    assert message.extras["chat_type"] == "private"
    assert message.extras["language_code"] == "en"
    json.dumps(message.extras)  # stored as JSON


async def test_group_message_with_a_64_bit_sender(offline_adapter: TelegramAdapter) -> None:
    [message] = (await offline_adapter.parse(delivery(fixture("group_text.json")))).messages
    assert message.sender == Address(channel="telegram", handle="7000000001")
    assert message.provider_message_id == f"{BOT_ID}:10001"
    assert message.reply_target == {"chat_id": -4012345678, "message_id": 42, "chat_type": "group"}
    assert message.text.endswith("my invoice is wrong")


async def test_forum_topic_message_keeps_its_thread(offline_adapter: TelegramAdapter) -> None:
    [message] = (await offline_adapter.parse(delivery(fixture("supergroup_topic.json")))).messages
    assert message.reply_target == {
        "chat_id": -1001234567890,
        "message_id": 88,
        "chat_type": "supergroup",
        "message_thread_id": 77,
    }


async def test_caption_is_the_text_and_media_are_attachments(offline_adapter: TelegramAdapter) -> None:
    [message] = (await offline_adapter.parse(delivery(fixture("photo_caption.json")))).messages
    assert message.text == "This is the damaged box"
    assert [(ref.ref, ref.media_type) for ref in message.attachments] == [
        ("AgACAgQAAxkBAAIBlarge", "image/jpeg")
    ]


async def test_shared_contact_goes_to_extras_and_is_never_logged(
    offline_adapter: TelegramAdapter, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    [message] = (await offline_adapter.parse(delivery(fixture("contact.json")))).messages
    assert message.text == CONTACT_TEXT
    assert message.extras["contact_user_id"] == 1111111
    assert message.shared_contact == SharedContact(phone="+15555550123", is_senders_own=True)
    assert "5555550123" not in message.text
    assert "5555550123" not in caplog.text


@pytest.mark.parametrize(
    "name",
    [
        "edited_message.json",
        "bot_message.json",
        "callback_query.json",
        "channel_post.json",
        "my_chat_member.json",
        "new_chat_members.json",
    ],
)
async def test_noise_is_acknowledged_without_messages(offline_adapter: TelegramAdapter, name: str) -> None:
    request = delivery(fixture(name))
    await offline_adapter.verify(request)
    parsed = await offline_adapter.parse(request)
    assert parsed.messages == [] and parsed.status_updates == []
    assert parsed.reply.status == 200


async def test_the_inbox_key_includes_the_bot(fake: FakeTelegramAPI) -> None:
    other_token = "987654321:AAOtherBotToken_abcdefghijklmnop"
    first = TelegramAdapter(settings(), normalize=normalize_address)
    second = TelegramAdapter(settings(bot_token=SecretStr(other_token)), normalize=normalize_address)
    body = delivery(fixture("private_text.json"))
    [a] = (await first.parse(body)).messages
    [b] = (await second.parse(body)).messages
    assert a.provider_message_id == f"{BOT_ID}:10000"
    assert b.provider_message_id == "987654321:10000"
    await first.aclose()
    await second.aclose()


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b"\xff\xfe garbage",
        b"[]",
        b'"update"',
        b'{"message": {"text": "no update id"}}',
        b'{"update_id": "10000"}',
        b'{"update_id": 1, "message": {"message_id": 1}}',
        b'{"update_id": 1, "message": "not an object"}',
    ],
)
async def test_garbled_body_is_a_bad_request(offline_adapter: TelegramAdapter, body: bytes) -> None:
    with pytest.raises(BadRequest) as caught:
        await offline_adapter.parse(delivery(body))
    assert 400 <= caught.value.status < 500


async def test_parse_does_no_network_io(offline_adapter: TelegramAdapter) -> None:
    """The API URL points at a closed port: parsing must not call getMe or anything else."""
    for name in ("private_text.json", "group_text.json", "contact.json"):
        assert (await offline_adapter.parse(delivery(fixture(name)))).messages


# ----- send --------------------------------------------------------------------------------------


async def test_send_one_message_to_the_chat(adapter: TelegramAdapter, fake: FakeTelegramAPI) -> None:
    result = await adapter.send(reply("Your refund is on its way."))
    [sent] = fake.sent
    assert sent["params"]["chat_id"] == 1111111
    assert sent["params"]["text"] == "Your refund is on its way."
    assert "reply_parameters" not in sent["params"]  # private chats need no quote
    assert result.provider_message_ids == (f"{sent['chat']['id']}:{sent['message_id']}",)
    assert [call["method"] for call in fake.calls] == ["getMe", "sendMessage"]


async def test_a_slow_answer_is_waited_for_not_taken_as_a_failure(
    adapter: TelegramAdapter, fake: FakeTelegramAPI
) -> None:
    """The Bot API delivers the message but answers 6 s later (past PTB's default 5 s read timeout): the
    send succeeds. Taken as a timeout, the worker would retry it and the customer would get it twice (the
    CI run of 2026-12-07 saw that under load)."""
    fake.answer_late(6.0)
    result = await adapter.send(reply("Your refund is on its way."))
    [sent] = fake.sent
    assert result.provider_message_ids == (f"{sent['chat']['id']}:{sent['message_id']}",)


async def test_bot_is_initialised_once(adapter: TelegramAdapter, fake: FakeTelegramAPI) -> None:
    await adapter.send(reply("one"))
    await adapter.send(reply("two"))
    assert [call["method"] for call in fake.calls] == ["getMe", "sendMessage", "sendMessage"]


async def test_group_reply_quotes_the_customer_and_stays_in_the_topic(
    adapter: TelegramAdapter, fake: FakeTelegramAPI
) -> None:
    message = reply("On it.", chat_id=-1001234567890, chat_type="supergroup", message_thread_id=77)
    await adapter.send(message)
    [sent] = fake.sent
    assert sent["params"]["chat_id"] == -1001234567890
    assert sent["params"]["message_thread_id"] == 77
    assert sent["params"]["reply_parameters"] == {"message_id": 1365, "allow_sending_without_reply": True}


async def test_without_a_reply_target_the_recipient_is_the_chat(
    adapter: TelegramAdapter, fake: FakeTelegramAPI
) -> None:
    message = OutboundMessage(
        channel="telegram",
        recipient=Address(channel="telegram", handle="7000000001"),
        text="Hello again",
        idempotency_key="k",
    )
    await adapter.send(message)
    assert fake.sent[0]["params"]["chat_id"] == 7000000001


async def test_long_reply_is_split_at_the_limit(adapter: TelegramAdapter, fake: FakeTelegramAPI) -> None:
    paragraphs = ["a" * 3000, "b" * 3000, "c " * 2500]
    result = await adapter.send(reply("\n\n".join(paragraphs)))
    texts = [sent["params"]["text"] for sent in fake.sent]
    assert len(fake.calls_to("sendMessage")) == len(texts) == len(result.provider_message_ids) == 4
    assert texts[0] == "a" * 3000 and texts[1] == "b" * 3000  # paragraph boundaries
    assert all(len(text) <= MAX_TEXT_LENGTH for text in texts)
    assert "".join(texts[2:]).replace(" ", "") == "c" * 2500
    assert result.provider_message_ids == tuple(
        f"{sent['chat']['id']}:{sent['message_id']}" for sent in fake.sent
    )


async def test_exactly_the_limit_is_one_message(adapter: TelegramAdapter, fake: FakeTelegramAPI) -> None:
    await adapter.send(reply("x" * MAX_TEXT_LENGTH))
    await adapter.send(reply("y" * (MAX_TEXT_LENGTH + 1)))
    assert [len(sent["params"]["text"]) for sent in fake.sent] == [MAX_TEXT_LENGTH, MAX_TEXT_LENGTH, 1]


async def test_parts_already_sent_are_skipped(adapter: TelegramAdapter, fake: FakeTelegramAPI) -> None:
    text = "\n\n".join(["a" * 3000, "b" * 3000, "c" * 3000])
    result = await adapter.send(reply(text, parts_sent=2))
    assert [sent["params"]["text"] for sent in fake.sent] == ["c" * 3000]
    assert len(result.provider_message_ids) == 1


async def test_rate_limit_is_transient_with_retry_after(
    adapter: TelegramAdapter, fake: FakeTelegramAPI
) -> None:
    fake.push_rate_limit(retry_after=1)
    with pytest.raises(TransientDeliveryError) as caught:
        await adapter.send(reply("hello"))
    assert caught.value.retry_after == 1.0
    assert caught.value.sent_ids == ()
    assert fake.sent == []
    # the worker's retry, after waiting retry_after, goes through: exactly one message in the end
    result = await adapter.send(reply("hello"))
    assert [sent["params"]["text"] for sent in fake.sent] == ["hello"]
    assert len(result.provider_message_ids) == 1


async def test_failure_mid_split_reports_the_parts_sent(
    adapter: TelegramAdapter, fake: FakeTelegramAPI
) -> None:
    text = "\n\n".join(["a" * 3000, "b" * 3000, "c" * 3000])
    await adapter.send(reply("warm up"))  # getMe and one message; the forced answer hits the next call
    fake.reset()
    fake.push(200, {"ok": True, "result": _message(501, "a")})
    fake.push_rate_limit(retry_after=1)
    with pytest.raises(TransientDeliveryError) as caught:
        await adapter.send(reply(text))
    assert caught.value.sent_ids == ("1111111:501",)
    assert caught.value.retry_after == 1.0
    # the retry skips the part that went out
    result = await adapter.send(reply(text, parts_sent=len(caught.value.sent_ids)))
    assert [sent["params"]["text"][0] for sent in fake.sent] == ["b", "c"]
    assert len(result.provider_message_ids) == 2


@pytest.mark.parametrize("push", ["push_server_error", "bad_gateway"])
async def test_server_errors_are_transient(
    adapter: TelegramAdapter, fake: FakeTelegramAPI, push: str
) -> None:
    if push == "bad_gateway":
        fake.push(502, "<html>502 Bad Gateway</html>")
    else:
        fake.push_server_error()
    with pytest.raises(TransientDeliveryError) as caught:
        await adapter.send(reply("hello"))
    assert caught.value.retry_after is None
    assert fake.sent == []


async def test_unreachable_api_is_transient(fake: FakeTelegramAPI) -> None:
    port = fake.port
    await fake.__aexit__(None, None, None)  # nothing listens there any more
    channel = TelegramAdapter(settings(f"http://127.0.0.1:{port}/bot"), normalize=normalize_address)
    try:
        with pytest.raises(TransientDeliveryError):
            await channel.send(reply("hello"))
    finally:
        await channel.aclose()


async def test_blocked_by_the_user_is_permanent(adapter: TelegramAdapter, fake: FakeTelegramAPI) -> None:
    fake.push_blocked()
    with pytest.raises(PermanentDeliveryError) as caught:
        await adapter.send(reply("hello"))
    assert "blocked" in str(caught.value)
    assert not isinstance(caught.value, TransientDeliveryError)


async def test_chat_not_found_is_permanent(adapter: TelegramAdapter, fake: FakeTelegramAPI) -> None:
    fake.push_chat_not_found()
    with pytest.raises(PermanentDeliveryError) as caught:
        await adapter.send(reply("hello", chat_id=424242))
    assert "chat not found" in str(caught.value).lower()


async def test_message_too_long_is_permanent(adapter: TelegramAdapter, fake: FakeTelegramAPI) -> None:
    fake.push(400, error_body(400, "Bad Request: message is too long"))
    with pytest.raises(PermanentDeliveryError):
        await adapter.send(reply("hello"))


async def test_group_migrated_to_supergroup_is_followed(
    adapter: TelegramAdapter, fake: FakeTelegramAPI
) -> None:
    fake.push(
        400,
        error_body(
            400,
            "Bad Request: group chat was upgraded to a supergroup chat",
            migrate_to_chat_id=-1001234567890,
        ),
    )
    result = await adapter.send(reply("hello", chat_id=-4012345678, chat_type="group"))
    [sent] = fake.sent
    assert sent["params"]["chat_id"] == -1001234567890
    assert result.provider_message_ids == (f"{sent['chat']['id']}:{sent['message_id']}",)


async def test_a_rejected_token_is_never_in_the_error(fake: FakeTelegramAPI) -> None:
    wrong = "123456789:AAWrongTokenWrongTokenWrongToken0"
    channel = TelegramAdapter(
        settings(fake.api_base_url, bot_token=SecretStr(wrong)), normalize=normalize_address
    )
    try:
        with pytest.raises(TransientDeliveryError) as caught:
            await channel.send(reply("hello"))
    finally:
        await channel.aclose()
    assert wrong not in str(caught.value)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


async def test_failed_initialisation_is_retried_on_the_next_send(
    adapter: TelegramAdapter, fake: FakeTelegramAPI
) -> None:
    fake.push_server_error(method="getMe")
    with pytest.raises(TransientDeliveryError):
        await adapter.send(reply("hello"))
    await adapter.send(reply("hello"))
    assert [call["method"] for call in fake.calls] == ["getMe", "getMe", "sendMessage"]
    assert len(fake.sent) == 1


async def test_empty_reply_is_permanent_and_sends_nothing(
    adapter: TelegramAdapter, fake: FakeTelegramAPI
) -> None:
    with pytest.raises(PermanentDeliveryError):
        await adapter.send(reply(" \n\n "))
    assert fake.calls == []


async def test_send_logs_no_body(
    adapter: TelegramAdapter, fake: FakeTelegramAPI, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="channels.telegram.adapter")
    await adapter.send(reply("a very private complaint"))
    records = [r.getMessage() for r in caplog.records if r.name == "channels.telegram.adapter"]
    assert records and not any("private complaint" in line for line in records)


async def test_aclose_is_idempotent_and_the_adapter_reopens(
    adapter: TelegramAdapter, fake: FakeTelegramAPI
) -> None:
    await adapter.aclose()
    await adapter.aclose()
    await adapter.send(reply("after close"))
    assert len(fake.sent) == 1


# ----- set_webhook -------------------------------------------------------------------------------


async def test_set_webhook(fake: FakeTelegramAPI) -> None:
    line = await set_webhook(settings(fake.api_base_url), "https://bot.example.com/")
    [params] = fake.webhooks
    assert params["url"] == "https://bot.example.com/webhooks/telegram"
    assert params["secret_token"] == SECRET
    assert params["allowed_updates"] == ["message", "callback_query"]  # messages and our buttons
    assert params["drop_pending_updates"] is False
    assert "https://bot.example.com/webhooks/telegram" in line and "@threadline_test_bot" in line
    assert "\n" not in line and SECRET not in line and DEFAULT_TOKEN not in line


async def test_set_webhook_refused_url_is_a_config_error(fake: FakeTelegramAPI) -> None:
    with pytest.raises(ConfigError) as caught:
        await set_webhook(settings(fake.api_base_url), "http://plain.example.com")
    assert "https url must be provided" in str(caught.value).lower()
    assert fake.webhooks == []


async def test_set_webhook_with_a_rejected_token(fake: FakeTelegramAPI) -> None:
    wrong = "123456789:AAWrongTokenWrongTokenWrongToken0"
    with pytest.raises(ConfigError) as caught:
        await set_webhook(settings(fake.api_base_url, bot_token=SecretStr(wrong)), "https://bot.example.com")
    assert caught.value.setting == "THREADLINE_TELEGRAM__BOT_TOKEN"
    assert wrong not in str(caught.value)


# ----- splitting ---------------------------------------------------------------------------------


def test_split_prefers_paragraphs_then_lines_then_words() -> None:
    assert split_text("short") == ["short"]
    assert split_text("aaaa\n\nbbbb", limit=6) == ["aaaa", "bbbb"]
    assert split_text("aaaa\nbbbb", limit=6) == ["aaaa", "bbbb"]
    assert split_text("aaaa bbbb", limit=6) == ["aaaa", "bbbb"]
    assert split_text("abcdefghij", limit=4) == ["abcd", "efgh", "ij"]
    assert split_text("   ") == []


def test_split_counts_utf16_code_units() -> None:
    emoji = "\U0001f600"  # two UTF-16 code units
    parts = split_text(emoji * MAX_TEXT_LENGTH)
    assert len(parts) == 2
    assert all(len(part.encode("utf-16-le")) // 2 <= MAX_TEXT_LENGTH for part in parts)
    assert "".join(parts) == emoji * MAX_TEXT_LENGTH


def _message(message_id: int, text: str) -> dict[str, Any]:
    return {
        "message_id": message_id,
        "from": {"id": int(BOT_ID), "is_bot": True, "first_name": "Threadline Test"},
        "chat": {"id": 1111111, "type": "private", "first_name": "Test"},
        "date": 1441645532,
        "text": text,
    }
