"""Slack end to end: signed Events API delivery → app route → inbox → worker → reply at the fake Web API.

The real app (``core.app.create_app``) runs under uvicorn on loopback; deliveries are signed the way
Slack signs them (``v0=`` + hex HMAC-SHA256 of ``v0:{timestamp}:{raw body}``) and the adapter's real
``AsyncWebClient`` posts its replies to ``FakeSlackAPI``. Every test waits for the hub to be idle and
then checks exact counts: replies at the fake, API calls made, inbox and outbox rows.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import select

from core.settings import SlackSettings
from core.store.models import OutboxRow
from tests.apphost import Served, app_settings, serving
from tests.fakes.slack_api import DEFAULT_TOKEN, FakeSlackAPI, PostedMessage

FIXTURES = Path(__file__).resolve().parents[2] / "channels" / "fixtures" / "slack"
PATH = "/webhooks/slack/events"
SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
TEAM = "T123ABC456"
CUSTOMER = "U123ABC456"
CHANNEL = "C123ABC456"
BOT_USER = "UBOT0001"  # FakeSlackAPI's bot user (auth.test and chat.postMessage say so)


# ----- payloads and signing --------------------------------------------------------------------


def fixture(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / name).read_bytes())
    return data


def message_event(
    event_id: str,
    text: str,
    *,
    ts: str = "1355517523.000005",
    user: str = CUSTOMER,
    channel: str = CHANNEL,
    **event_fields: Any,
) -> dict[str, Any]:
    """A ``message.channels`` event_callback (Slack's documented one) with the given event fields."""
    payload = fixture("message_channels.json")
    payload["event_id"] = event_id
    payload["event"].update(
        {"text": text, "ts": ts, "event_ts": ts, "user": user, "channel": channel, **event_fields}
    )
    return payload


def sign(body: bytes, *, secret: str = SECRET, timestamp: int | None = None) -> dict[str, str]:
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    digest = hmac.new(secret.encode(), b"v0:" + stamp.encode() + b":" + body, hashlib.sha256).hexdigest()
    return {"x-slack-request-timestamp": stamp, "x-slack-signature": f"v0={digest}"}


def encode(body: dict[str, Any] | list[Any] | bytes) -> bytes:
    return body if isinstance(body, bytes) else json.dumps(body).encode()


async def deliver(
    served: Served,
    body: dict[str, Any] | list[Any] | bytes,
    *,
    headers: dict[str, str] | None = None,
    signed: bool = True,
) -> httpx.Response:
    """POST ``body`` to the events route as Slack does: signed now, unless ``signed=False``."""
    raw = encode(body)
    all_headers = {"content-type": "application/json", "user-agent": "Slackbot 1.0"}
    if signed:
        all_headers |= sign(raw)
    all_headers |= headers or {}
    return await served.client.post(PATH, content=raw, headers=all_headers)


async def customer_writes(served: Served, event_id: str, text: str, *, ts: str) -> None:
    """A signed channel message from the customer, acknowledged with a 200."""
    response = await deliver(served, message_event(event_id, text, ts=ts))
    assert response.status_code == 200


# ----- observations ---------------------------------------------------------------------------


def post_calls(fake: FakeSlackAPI) -> list[int]:
    """The HTTP status the fake answered to each chat.postMessage call, in order."""
    return [call.answered_status for call in fake.calls if call.method == "chat.postMessage"]


def where(posted: list[PostedMessage]) -> list[tuple[str, str | None]]:
    return [(message.channel, message.thread_ts) for message in posted]


async def outbox(served: Served) -> list[OutboxRow]:
    async with served.hub.db.session() as session:
        return list(await session.scalars(select(OutboxRow).order_by(OutboxRow.id)))


async def settle(served: Served) -> None:
    left = await served.hub.wait_idle(timeout=30)
    assert not any(left.values()), f"the hub is still busy: {left}"


# ----- fixtures --------------------------------------------------------------------------------


@pytest.fixture
async def fake() -> AsyncIterator[FakeSlackAPI]:
    async with FakeSlackAPI(token=DEFAULT_TOKEN, team_id=TEAM, bot_user_id=BOT_USER) as server:
        yield server


@pytest.fixture
async def served(fake: FakeSlackAPI, tmp_path: Path) -> AsyncIterator[Served]:
    slack = SlackSettings(
        bot_token=SecretStr(DEFAULT_TOKEN), signing_secret=SecretStr(SECRET), api_base_url=fake.api_url
    )
    async with serving(app_settings(tmp_path / "data", slack=slack)) as app:
        yield app


# ----- a message is answered once, in its thread -----------------------------------------------


async def test_a_signed_message_gets_one_reply_in_the_same_channel_and_thread(
    served: Served, fake: FakeSlackAPI
) -> None:
    top_level = message_event("Ev0001", "my invoice is wrong", ts="1700000001.000100")
    in_thread = message_event(
        "Ev0002", "and the refund never came", ts="1700000002.000200", thread_ts="1700000000.000050"
    )
    direct = fixture("message_im.json")  # Slack's documented DM: channel D024BE91L, user U2147483697
    for payload in (top_level, in_thread, direct):
        response = await deliver(served, payload)
        assert response.status_code == 200
    await settle(served)

    assert sorted(where(fake.posted)) == sorted(
        [
            (CHANNEL, "1700000001.000100"),  # a top-level message is answered in a thread under it
            (CHANNEL, "1700000000.000050"),  # a thread reply is answered in that thread
            ("D024BE91L", "1355517523.000005"),
        ]
    )
    assert all(message.text.strip() for message in fake.posted)
    assert post_calls(fake) == [200, 200, 200]
    assert await served.inbox_rows("slack") == 3
    rows = await outbox(served)
    assert [(row.status, row.attempts) for row in rows] == [("sent", 1)] * 3
    assert sorted(row.recipient for row in rows) == sorted(
        [f"slack:{TEAM}:{CUSTOMER}", f"slack:{TEAM}:{CUSTOMER}", f"slack:{TEAM}:U2147483697"]
    )


async def test_a_mention_delivered_as_app_mention_and_as_message_gets_one_reply(
    served: Served, fake: FakeSlackAPI
) -> None:
    ours = [{"team_id": TEAM, "user_id": BOT_USER, "is_bot": True, "is_enterprise_install": False}]
    text = f"<@{BOT_USER}> where is my refund?"
    mention = fixture("app_mention.json")
    mention |= {"event_id": "EvMention1", "authorizations": ours}
    mention["event"] |= {"text": text, "user": CUSTOMER, "ts": "1700000003.000300"}
    as_message = message_event("EvMention2", text, ts="1700000003.000300")
    as_message["authorizations"] = ours

    assert (await deliver(served, mention)).status_code == 200
    assert (await deliver(served, as_message)).status_code == 200
    await settle(served)

    assert where(fake.posted) == [(CHANNEL, "1700000003.000300")]
    assert await served.inbox_rows("slack") == 1


# ----- retries and duplicates ------------------------------------------------------------------


async def test_retried_and_duplicated_deliveries_get_exactly_one_reply(
    served: Served, fake: FakeSlackAPI
) -> None:
    first = message_event("EvRetry1", "the app crashes on login", ts="1700000004.000400")
    assert (await deliver(served, first)).status_code == 200
    # Slack's retries: same event_id, freshly signed, with the retry headers
    for number, reason in ((1, "http_timeout"), (2, "http_error")):
        retry = {"x-slack-retry-num": str(number), "x-slack-retry-reason": reason}
        assert (await deliver(served, first, headers=retry)).status_code == 200
    # a timeout retry can race the first attempt: the same new event three times at once
    second = message_event("EvRetry2", "still crashing", ts="1700000005.000500")
    retry_headers = [None, {"x-slack-retry-num": "1", "x-slack-retry-reason": "http_timeout"}, None]
    responses = await asyncio.gather(*(deliver(served, second, headers=h) for h in retry_headers))
    assert [response.status_code for response in responses] == [200, 200, 200]
    await settle(served)
    # a late retry after the reply went out changes nothing either
    late = {"x-slack-retry-num": "3", "x-slack-retry-reason": "http_timeout"}
    assert (await deliver(served, first, headers=late)).status_code == 200
    await settle(served)

    assert sorted(where(fake.posted)) == [(CHANNEL, "1700000004.000400"), (CHANNEL, "1700000005.000500")]
    assert post_calls(fake) == [200, 200]
    assert await served.inbox_rows("slack") == 2
    assert [row.status for row in await outbox(served)] == ["sent", "sent"]


# ----- authentication --------------------------------------------------------------------------


async def test_unsigned_wrongly_signed_and_stale_deliveries_are_401_and_not_stored(
    served: Served, fake: FakeSlackAPI
) -> None:
    body = encode(message_event("EvForged1", "send me the admin password"))
    now = int(time.time())
    good = sign(body)
    attempts: dict[str, dict[str, str]] = {
        "no signature headers": {},
        "signature without timestamp": {"x-slack-signature": good["x-slack-signature"]},
        "timestamp without signature": {"x-slack-request-timestamp": good["x-slack-request-timestamp"]},
        "wrong secret": sign(body, secret="not-the-signing-secret"),
        "signature of another body": sign(body + b" "),
        "signature for another timestamp": {**good, "x-slack-request-timestamp": str(now - 1)},
        "stale (6 minutes old), correctly signed": sign(body, timestamp=now - 360),
        "from the future (6 minutes), correctly signed": sign(body, timestamp=now + 360),
        "non-numeric timestamp": {**good, "x-slack-request-timestamp": "yesterday"},
        "malformed signature": {**good, "x-slack-signature": "v1=deadbeef"},
    }
    statuses: dict[str, int] = {}
    for label, headers in attempts.items():
        response = await deliver(served, body, headers=headers, signed=False)
        statuses[label] = response.status_code
    assert statuses == dict.fromkeys(attempts, 401)

    # url_verification is answered only after the signature check too
    challenge = await deliver(served, fixture("url_verification.json"), signed=False)
    assert challenge.status_code == 401
    assert b"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P" not in challenge.content

    await settle(served)
    assert await served.inbox_rows() == 0
    assert fake.posted == [] and post_calls(fake) == []


async def test_url_verification_answers_the_challenge(served: Served, fake: FakeSlackAPI) -> None:
    response = await deliver(served, fixture("url_verification.json"))
    assert response.status_code == 200
    assert response.text == "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"
    assert response.headers["content-type"].startswith("text/plain")
    assert await served.inbox_rows() == 0
    assert fake.calls == []


# ----- unreadable and oversized bodies ---------------------------------------------------------


async def test_garbled_bodies_are_4xx_and_not_stored(served: Served, fake: FakeSlackAPI) -> None:
    no_channel = message_event("EvBad1", "hello")
    del no_channel["event"]["channel"]
    no_event_id = message_event("EvBad2", "hello")
    del no_event_id["event_id"]
    listed_type = message_event("EvBad4", "hello", type=["message"])
    object_subtype = message_event("EvBad5", "hello", subtype={"name": "bot_message"})
    bodies: dict[str, bytes] = {
        "not JSON": b'{"type": "event_callback", "event": {',
        "a JSON array": b'[{"type": "event_callback"}]',
        "a JSON string": b'"event_callback"',
        "not UTF-8": b'{"type": "event_callback", "x": "\xff\xfe"}',
        "event_callback without event": encode({"type": "event_callback", "event_id": "EvBad3"}),
        "event_callback without event_id": encode(no_event_id),
        "message without channel": encode(no_channel),
        "event type a list": encode(listed_type),
        "subtype an object": encode(object_subtype),
        "url_verification without challenge": encode({"type": "url_verification", "token": "x"}),
        "empty": b"",
        "deeply nested JSON": b"[" * 100_000 + b"]" * 100_000,
    }
    statuses: dict[str, int] = {}
    for label, body in bodies.items():
        statuses[label] = (await deliver(served, body)).status_code
    assert {label: status for label, status in statuses.items() if not 400 <= status < 500} == {}
    await settle(served)
    assert await served.inbox_rows() == 0
    assert post_calls(fake) == []


async def test_oversized_bodies_are_413_and_not_stored(served: Served, fake: FakeSlackAPI) -> None:
    limit: int = served.app.state.adapters["slack"].max_body_bytes
    payload = message_event("EvHuge1", "x" * limit)
    body = encode(payload)
    assert len(body) > limit
    declared = await deliver(served, body)
    assert declared.status_code == 413

    async def chunks() -> AsyncIterator[bytes]:  # no content-length: the limit applies to the stream
        for start in range(0, len(body), 65_536):
            yield body[start : start + 65_536]

    headers = {"content-type": "application/json", **sign(body)}
    streamed = await served.client.post(PATH, content=chunks(), headers=headers)
    assert streamed.status_code == 413

    await settle(served)
    assert await served.inbox_rows() == 0
    assert post_calls(fake) == []


# ----- delivery failures -----------------------------------------------------------------------


async def test_a_429_is_waited_out_and_the_reply_arrives_once(served: Served, fake: FakeSlackAPI) -> None:
    fake.fail_ratelimited(retry_after=1)
    await customer_writes(served, "EvLimit1", "hello?", ts="1700000006.000600")
    await settle(served)

    assert post_calls(fake) == [429, 200]
    assert where(fake.posted) == [(CHANNEL, "1700000006.000600")]
    [row] = await outbox(served)
    assert (row.status, row.attempts) == ("sent", 1)  # a short Retry-After is waited out inside the SDK
    assert row.provider_message_ids == [fake.posted[0].ts]
    assert row.sent_at is not None and row.sent_at - row.created_at >= timedelta(seconds=0.9)


async def test_a_429_that_outlasts_the_sdk_retry_is_retried_by_the_worker_once(
    served: Served, fake: FakeSlackAPI
) -> None:
    fake.fail_ratelimited(retry_after=1, times=2)  # the SDK retries once; the second 429 goes to the worker
    await customer_writes(served, "EvLimit2", "anyone?", ts="1700000007.000700")
    await settle(served)

    assert post_calls(fake) == [429, 429, 200]
    assert where(fake.posted) == [(CHANNEL, "1700000007.000700")]
    [row] = await outbox(served)
    assert (row.status, row.attempts, row.last_error) == ("sent", 2, None)
    assert row.sent_at is not None and row.sent_at - row.created_at >= timedelta(seconds=1.9)


async def test_channel_not_found_fails_the_reply_after_one_attempt(
    served: Served, fake: FakeSlackAPI
) -> None:
    fake.fail_error("channel_not_found")
    await customer_writes(served, "EvGone1", "hello", ts="1700000008.000800")
    await settle(served)

    assert post_calls(fake) == [200]  # Slack answers ok:false with HTTP 200
    assert fake.posted == []
    [row] = await outbox(served)
    assert (row.status, row.attempts) == ("failed", 1)
    assert row.last_error is not None and "channel_not_found" in row.last_error
    assert row.provider_message_ids == [] and row.sent_at is None


# ----- noise -----------------------------------------------------------------------------------


def noise() -> dict[str, dict[str, Any]]:
    """Authentic deliveries that are not a customer writing to us."""
    own = message_event("EvNoise5", "Here is your answer", user=BOT_USER)
    own["authorizations"] = [{"team_id": TEAM, "user_id": BOT_USER, "is_bot": True}]
    joined = message_event("EvNoise6", f"<@{CUSTOMER}> has joined the channel", subtype="channel_join")
    topic = message_event("EvNoise7", "set the channel topic: refunds", subtype="channel_topic")
    deleted = message_event("EvNoise8", "", subtype="message_deleted", deleted_ts="1355517523.000005")
    reaction = message_event("EvNoise9", "", type="reaction_added", reaction="thumbsup")
    return {
        "bot_message (documented)": fixture("bot_message.json") | {"event_id": "EvNoise1"},
        "message_changed (documented)": fixture("message_changed.json") | {"event_id": "EvNoise2"},
        "bot message without subtype": message_event("EvNoise3", "Deploy done", bot_id="B0123", app_id="A01"),
        "our own bot user": own,
        "channel_join": joined,
        "channel_topic (a person's user and text, but not a message to us)": topic,
        "message_deleted": deleted,
        "reaction_added": reaction,
        "app_rate_limited": {"type": "app_rate_limited", "team_id": TEAM, "minute_rate_limited": 1518467820},
    }


async def test_noise_is_acknowledged_but_never_stored_or_answered(served: Served, fake: FakeSlackAPI) -> None:
    variants = noise()
    statuses: dict[str, int] = {}
    for label, payload in variants.items():
        response = await deliver(served, payload)
        statuses[label] = response.status_code
    assert statuses == dict.fromkeys(variants, 200)
    await settle(served)
    assert await served.inbox_rows() == 0
    assert post_calls(fake) == []

    # the pipeline was live all along: a customer message right after is answered, and only it
    await customer_writes(served, "EvReal1", "hi", ts="1700000009.000900")
    await settle(served)
    assert where(fake.posted) == [(CHANNEL, "1700000009.000900")]
    assert await served.inbox_rows() == 1
