"""Telegram end to end: signed webhook → app route → inbox → worker → reply at the fake Bot API.

The real app (``core.app.create_app``) runs under uvicorn on loopback; deliveries carry the
``X-Telegram-Bot-Api-Secret-Token`` header as Telegram sends it, and the adapter's real PTB bot sends
its replies to ``FakeTelegramAPI``. Every test waits for the hub to be idle and then checks exact
counts: messages at the fake, sendMessage calls made, inbox and outbox rows.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from core.settings import Settings
from core.store.models import OutboxRow
from tests.apphost import Served, app_settings, serving
from tests.fakes.telegram_api import DEFAULT_TOKEN, FakeTelegramAPI
from tests.platforms import telegram_settings

FIXTURES = Path(__file__).resolve().parents[2] / "channels" / "fixtures" / "telegram"
PATH = "/webhooks/telegram"
SECRET = "wh-Secret_0123456789abcdef"
SECRET_HEADER = "x-telegram-bot-api-secret-token"
BOT_ID = DEFAULT_TOKEN.split(":")[0]


# ----- payloads and delivery -------------------------------------------------------------------


def fixture(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / name).read_bytes())
    return data


def update(update_id: int, text: str, *, user: int = 1111111) -> dict[str, Any]:
    return {
        "update_id": update_id,
        "message": {
            "message_id": update_id,
            "date": 1441645532,
            "chat": {"id": user, "type": "private", "first_name": "Ana"},
            "from": {"id": user, "is_bot": False, "first_name": "Ana"},
            "text": text,
        },
    }


def encode(body: dict[str, Any] | list[Any] | bytes) -> bytes:
    return body if isinstance(body, bytes) else json.dumps(body).encode()


async def deliver(
    served: Served, body: dict[str, Any] | list[Any] | bytes, *, secret: str | bytes | None = SECRET
) -> httpx.Response:
    """POST ``body`` as Telegram does, with the secret-token header unless ``secret=None``."""
    headers: dict[str, str | bytes] = {"content-type": "application/json"}
    if secret is not None:
        headers[SECRET_HEADER] = secret
    return await served.client.post(PATH, content=encode(body), headers=headers)


async def post(served: Served, body: dict[str, Any] | bytes, *, secret: str | None = SECRET) -> int:
    return (await deliver(served, body, secret=secret)).status_code


# ----- observations ---------------------------------------------------------------------------


def send_attempts(fake: FakeTelegramAPI) -> int:
    """sendMessage calls that reached the fake, forced failures included."""
    return len(fake.calls_to("sendMessage"))


def chats(fake: FakeTelegramAPI) -> list[int]:
    """The chat of every message the fake accepted, in order."""
    return [int(message["chat"]["id"]) for message in fake.sent]


async def outbox(served: Served) -> list[OutboxRow]:
    async with served.hub.db.session() as session:
        return list(await session.scalars(select(OutboxRow).order_by(OutboxRow.id)))


async def settle(served: Served) -> None:
    left = await served.hub.wait_idle(timeout=30)
    assert not any(left.values()), f"the hub is still busy: {left}"


# ----- fixtures --------------------------------------------------------------------------------


@pytest.fixture
async def fake() -> AsyncIterator[FakeTelegramAPI]:
    async with FakeTelegramAPI() as server:
        yield server


def telegram_app(fake: FakeTelegramAPI, tmp_path: Path) -> Settings:
    telegram = telegram_settings(fake, secret=SECRET)
    return app_settings(tmp_path / "data", telegram=telegram)


@pytest.fixture
async def served(fake: FakeTelegramAPI, tmp_path: Path) -> AsyncIterator[Served]:
    async with serving(telegram_app(fake, tmp_path)) as app:
        yield app


# ----- a message is answered once, in its chat -------------------------------------------------


async def test_a_message_gets_exactly_one_reply_even_when_delivered_twice(
    served: Served, fake: FakeTelegramAPI
) -> None:
    assert await post(served, update(501, "my router keeps dropping the wifi")) == 200
    assert await post(served, update(501, "my router keeps dropping the wifi")) == 200  # Telegram retries
    await served.hub.wait_idle(timeout=30)
    assert [m["chat"]["id"] for m in fake.sent] == [1111111]
    assert await served.inbox_rows("telegram") == 1


async def test_private_and_group_messages_are_answered_once_in_their_own_chat(
    served: Served, fake: FakeTelegramAPI
) -> None:
    private = fixture("private_text.json")  # chat 1111111, message 1365
    group = fixture("group_text.json")  # group -4012345678, message 42, from 7000000001
    assert await post(served, private) == 200
    assert await post(served, group) == 200
    await settle(served)

    assert sorted(chats(fake)) == [-4012345678, 1111111]
    assert send_attempts(fake) == 2
    by_chat = {int(message["chat"]["id"]): message for message in fake.sent}
    assert "reply_parameters" not in by_chat[1111111]["params"]  # a private chat needs no quote
    assert by_chat[-4012345678]["params"]["reply_parameters"]["message_id"] == 42  # a group reply quotes
    assert all(message["text"].strip() for message in fake.sent)
    rows = await outbox(served)
    assert [(row.status, row.attempts) for row in rows] == [("sent", 1), ("sent", 1)]
    assert sorted(row.recipient for row in rows) == ["telegram:1111111", "telegram:7000000001"]
    assert await served.inbox_rows("telegram") == 2


# ----- retries and duplicates ------------------------------------------------------------------


async def test_redelivered_updates_get_exactly_one_reply(served: Served, fake: FakeTelegramAPI) -> None:
    # the same update three times at once (a retry racing the first delivery)
    racing = update(601, "I was charged twice")
    statuses = await asyncio.gather(*(post(served, racing) for _ in range(3)))
    assert statuses == [200, 200, 200]
    await settle(served)
    # and again long after the reply went out
    assert await post(served, racing) == 200
    await settle(served)

    assert chats(fake) == [1111111]
    assert send_attempts(fake) == 1
    assert await served.inbox_rows("telegram") == 1
    [row] = await outbox(served)
    assert row.status == "sent"


# ----- authentication --------------------------------------------------------------------------


async def test_missing_or_wrong_secret_token_is_403_and_not_stored(
    served: Served, fake: FakeTelegramAPI
) -> None:
    body = update(701, "please reset my password")
    attempts: dict[str, str | bytes | None] = {
        "no header": None,
        "empty header": "",
        "wrong secret": "not-the-secret",
        "another case": SECRET.upper(),
        "a prefix of the secret": SECRET[:-1],
        "the secret and more": SECRET + "x",
        "not ASCII": "wh-Secret_0123456789abcdeé".encode("latin-1"),
    }
    statuses: dict[str, int] = {}
    for label, secret in attempts.items():
        statuses[label] = (await deliver(served, body, secret=secret)).status_code
    assert statuses == dict.fromkeys(attempts, 403)
    # the secret is checked before the body is read: garbage without it is 403, not 400
    assert (await deliver(served, b"not json", secret=None)).status_code == 403

    await settle(served)
    assert await served.inbox_rows() == 0
    assert send_attempts(fake) == 0 and fake.sent == []


# ----- unreadable and oversized bodies ---------------------------------------------------------


def garbled() -> dict[str, bytes]:
    no_chat = update(802, "hello")
    del no_chat["message"]["chat"]
    bad_date = update(803, "hello")
    bad_date["message"]["date"] = "yesterday"
    no_date = update(804, "hello")
    no_date["message"]["date"] = None
    bad_sender = update(805, "hello")
    bad_sender["message"]["from"]["id"] = "ana"
    bad_chat_type = update(806, "hello")
    bad_chat_type["message"]["chat"]["type"] = {"private": True}
    numeric_text = update(807, "hello")
    numeric_text["message"]["text"] = 12.5
    return {
        "not JSON": b'{"update_id": 801, "message": {',
        "empty": b"",
        "not UTF-8": b'{"update_id": 801, "x": "\xff\xfe"}',
        "a JSON array": encode([update(801, "hello")]),
        "no update_id": encode({"message": update(801, "hello")["message"]}),
        "update_id as text": encode(update(801, "hello") | {"update_id": "801"}),
        "update_id as a boolean": encode(update(801, "hello") | {"update_id": True}),
        "message as text": encode({"update_id": 801, "message": "hello"}),
        "message without chat": encode(no_chat),
        "message with a text date": encode(bad_date),
        "message with a null date": encode(no_date),
        "sender id not a number": encode(bad_sender),
        "chat type an object": encode(bad_chat_type),
        "text a number": encode(numeric_text),
        "deeply nested JSON": b"[" * 100_000 + b"]" * 100_000,
    }


async def test_garbled_bodies_are_4xx_and_not_stored(served: Served, fake: FakeTelegramAPI) -> None:
    bodies = garbled()
    statuses: dict[str, int] = {}
    for label, body in bodies.items():
        statuses[label] = (await deliver(served, body)).status_code
    assert {label: status for label, status in statuses.items() if not 400 <= status < 500} == {}
    await settle(served)
    assert await served.inbox_rows() == 0
    assert send_attempts(fake) == 0


async def test_oversized_bodies_are_413_and_not_stored(served: Served, fake: FakeTelegramAPI) -> None:
    limit: int = served.app.state.adapters["telegram"].max_body_bytes
    body = encode(update(901, "x" * limit))
    assert len(body) > limit
    assert (await deliver(served, body)).status_code == 413

    async def chunks() -> AsyncIterator[bytes]:  # no content-length: the limit applies to the stream
        for start in range(0, len(body), 65_536):
            yield body[start : start + 65_536]

    headers = {"content-type": "application/json", SECRET_HEADER: SECRET}
    streamed = await served.client.post(PATH, content=chunks(), headers=headers)
    assert streamed.status_code == 413

    await settle(served)
    assert await served.inbox_rows() == 0
    assert send_attempts(fake) == 0


# ----- delivery failures -----------------------------------------------------------------------


async def test_429s_are_waited_out_and_each_reply_arrives_once(served: Served, fake: FakeTelegramAPI) -> None:
    customers = [1111111, 2222222, 3333333]
    fake.push_rate_limit(retry_after=1, times=len(customers))  # the next three sendMessage calls get 429
    for offset, user in enumerate(customers):
        assert await post(served, update(1001 + offset, "hello?", user=user)) == 200
    await settle(served)

    assert sorted(chats(fake)) == customers  # one message per customer, none twice
    rows = await outbox(served)
    assert [(row.status, row.last_error) for row in rows] == [("sent", None)] * 3
    # each 429 cost exactly one more call and one more attempt ...
    assert send_attempts(fake) == 2 * len(customers)
    assert sum(row.attempts - 1 for row in rows) == len(customers)
    # ... and no retry went out before the retry_after Telegram asked for
    for row in rows:
        assert row.sent_at is not None
        waited = (row.sent_at - row.created_at).total_seconds()
        assert waited >= 0.9 * (row.attempts - 1), (row.id, row.attempts, waited)


async def test_a_blocked_bot_fails_the_reply_after_one_attempt(served: Served, fake: FakeTelegramAPI) -> None:
    fake.push_blocked()
    assert await post(served, update(1101, "hello")) == 200
    await settle(served)

    assert send_attempts(fake) == 1
    assert fake.sent == []
    [row] = await outbox(served)
    assert (row.status, row.attempts) == ("failed", 1)
    assert row.last_error is not None and "blocked" in row.last_error
    assert row.provider_message_ids == [] and row.sent_at is None


# ----- noise -----------------------------------------------------------------------------------


def noise() -> dict[str, dict[str, Any]]:
    """Authentic updates that are not a customer writing to us."""
    from_bot = update(1201, "I am a bot too")
    from_bot["message"]["from"]["is_bot"] = True
    return {
        "edited_message (documented)": fixture("edited_message.json"),
        "a bot in a group": fixture("bot_message.json"),
        "a bot in a private chat": from_bot,
        "channel_post": fixture("channel_post.json"),
        "callback_query": fixture("callback_query.json"),
        "my_chat_member (we were blocked)": fixture("my_chat_member.json"),
        "new_chat_members (no text)": fixture("new_chat_members.json"),
    }


async def test_noise_is_acknowledged_but_never_stored_or_answered(
    served: Served, fake: FakeTelegramAPI
) -> None:
    variants = noise()
    statuses: dict[str, int] = {}
    for label, payload in variants.items():
        statuses[label] = await post(served, payload)
    assert statuses == dict.fromkeys(variants, 200)
    await settle(served)
    assert await served.inbox_rows() == 0
    assert send_attempts(fake) == 0

    # the pipeline was live all along: a customer message right after is answered, and only it
    assert await post(served, update(1301, "hi", user=2222222)) == 200
    await settle(served)
    assert chats(fake) == [2222222]
    assert await served.inbox_rows() == 1


# ----- the store is locked -----------------------------------------------------------------------


async def test_a_locked_database_gets_503_and_the_retry_is_answered_once(
    fake: FakeTelegramAPI, tmp_path: Path
) -> None:
    """Another process (say, the CLI) holds SQLite's write lock past the busy timeout: the webhook is
    refused with 503 and nothing is stored; Telegram's retry, once the lock is gone, is answered once."""
    settings = telegram_app(fake, tmp_path).model_copy(update={"database_busy_timeout": 0.3})
    async with serving(settings) as served:
        other = sqlite3.connect(tmp_path / "data" / "threadline.db", isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")
            refused = await deliver(served, update(901, "my router keeps dropping the wifi"))
            assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
            other.execute("ROLLBACK")
        finally:
            other.close()
        assert await served.inbox_rows("telegram") == 0  # nothing stored, nothing acknowledged
        metrics = (await served.client.get("/metrics")).text
        refused_series = 'threadline_webhooks_rejected_total{channel="telegram",reason="store_unavailable"}'
        assert f"{refused_series} 1.0" in metrics

        assert await post(served, update(901, "my router keeps dropping the wifi")) == 200
        await settle(served)
        assert chats(fake) == [1111111]
        assert await served.inbox_rows("telegram") == 1
