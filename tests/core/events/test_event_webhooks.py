"""Event webhooks end to end: a Telegram message through the real app, events to a local receiver.

The app (``core.app.create_app``) runs under uvicorn on loopback with the Telegram adapter pointed at
``FakeTelegramAPI``; endpoints are registered through the admin API; ``Receiver`` (a real HTTP server on
127.0.0.1) verifies every delivery's Standard Webhooks signature with the secret the admin API returned,
and fails, redirects or accepts as each test says. ``THREADLINE_EVENTS__ALLOW_PRIVATE`` is on to reach
it, except in the SSRF tests, which prove that a loopback receiver is refused without it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy import func, select

from core.logs import QUIET_LOGGERS
from core.settings import EventSettings, Settings
from core.store.models import EventDelivery, EventEndpoint, OutboxRow
from tests.apphost import Served, app_settings, serving
from tests.core.events.receiver import Receiver
from tests.core.web.test_app_telegram import SECRET, post, update
from tests.fakes.telegram_api import FakeTelegramAPI
from tests.platforms import telegram_settings

TOKEN = "admin-token-for-events-0123456789"
AUTH = {"authorization": f"Bearer {TOKEN}"}
TEXT = "my router keeps dropping the wifi"
SENDER = "telegram:1111111"


def settings_for(fake: FakeTelegramAPI, tmp_path: Path, *, allow_private: bool = True) -> Settings:
    events = EventSettings(allow_private=allow_private, backoff_base=0.05, backoff_max=0.2, max_attempts=3)
    return app_settings(
        tmp_path / "data",
        telegram=telegram_settings(fake, secret=SECRET),
        admin_token=SecretStr(TOKEN),
        events=events,
    )


@pytest.fixture
async def fake() -> AsyncIterator[FakeTelegramAPI]:
    async with FakeTelegramAPI() as server:
        yield server


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with Receiver() as server:
        yield server


@pytest.fixture
async def served(fake: FakeTelegramAPI, tmp_path: Path) -> AsyncIterator[Served]:
    async with serving(settings_for(fake, tmp_path)) as app:
        yield app


async def register(
    served: Served, receiver: Receiver, path: str, events: list[str], *, include_text: bool = False
) -> dict[str, Any]:
    answer = await served.client.post(
        "/admin/event-endpoints",
        json={"url": receiver.url_for(path), "events": events, "include_text": include_text},
        headers=AUTH,
    )
    assert answer.status_code == 200, answer.text
    created: dict[str, Any] = answer.json()
    assert created["secret"].startswith("whsec_")
    receiver.secrets[path] = created["secret"]
    return created


async def log_of(served: Served, endpoint_id: int) -> list[dict[str, Any]]:
    answer = await served.client.get(f"/admin/event-endpoints/{endpoint_id}/deliveries", headers=AUTH)
    assert answer.status_code == 200, answer.text
    deliveries: list[dict[str, Any]] = answer.json()["deliveries"]
    return deliveries


async def until(check: Callable[[], Awaitable[bool]], what: str, timeout: float = 30) -> None:
    for _ in range(int(timeout / 0.05)):
        if await check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


async def all_settled(served: Served, endpoint_id: int, count: int, status: str = "sent") -> None:
    async def done() -> bool:
        found = await log_of(served, endpoint_id)
        return len(found) == count and all(d["status"] == status for d in found)

    await until(done, f"{count} deliveries {status} at endpoint {endpoint_id}")


# ----- signed, retried under one webhook-id, ids only by default -----------------------------------


async def test_events_are_signed_retried_under_the_same_webhook_id_and_carry_ids_only(
    served: Served, fake: FakeTelegramAPI, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    for name in QUIET_LOGGERS:  # as ``threadline serve`` sets them up (aiosqlite prints SQL parameters)
        caplog.set_level(logging.WARNING, logger=name)
    caplog.set_level(logging.DEBUG)  # last: it sets the capturing handler's level too
    receiver.modes["/crm"] = "fail_once"  # every event's first attempt is answered 500
    endpoint = await register(served, receiver, "/crm", ["message.received", "reply.sent"])

    assert await post(served, update(701, TEXT)) == 200
    await all_settled(served, endpoint["id"], 2)

    received = receiver.at("/crm", "message.received")
    assert [r.answered for r in received] == [500, 204]  # failed once, then taken
    assert all(r.verified for r in receiver.at("/crm"))  # every attempt signed with the endpoint's secret
    assert received[0].webhook_id == received[1].webhook_id  # the retry is the same message
    assert received[0].webhook_id.startswith("msg_")
    assert received[0].body == received[1].body
    event = received[1].payload
    assert event["type"] == "message.received" and event["timestamp"]
    async with served.hub.db.read() as session:
        reply = (await session.scalars(select(OutboxRow))).one()
    assert event["data"]["inbox_id"] == reply.inbox_id
    assert event["data"]["customer_id"] == reply.customer_id
    assert event["data"]["channel"] == "telegram"
    # include_text off: neither the words nor the address go out
    for attempt in receiver.at("/crm"):
        assert (
            b"router" not in attempt.body and b"1111111" not in attempt.body and b"whsec_" not in attempt.body
        )
    assert "text" not in event["data"] and "sender" not in event["data"]

    sent = receiver.at("/crm", "reply.sent")
    assert [r.answered for r in sent] == [500, 204] and sent[0].webhook_id == sent[1].webhook_id
    assert sent[1].payload["data"]["outbox_id"] == reply.id
    assert sent[1].payload["data"]["customer_id"] == reply.customer_id

    log = {d["type"]: d for d in await log_of(served, endpoint["id"])}
    assert log["message.received"]["id"] == received[0].webhook_id
    assert log["message.received"]["attempts"] == 2 and log["message.received"]["last_status_code"] == 204
    assert log["reply.sent"]["attempts"] == 2

    metrics = (await served.client.get("/metrics")).text
    assert 'threadline_event_deliveries_total{outcome="sent"} 2.0' in metrics
    assert 'threadline_event_deliveries_total{outcome="failed"} 2.0' in metrics

    listed = (await served.client.get("/admin/event-endpoints", headers=AUTH)).json()["endpoints"]
    assert [e["id"] for e in listed] == [endpoint["id"]] and "secret" not in listed[0]
    secret = endpoint["secret"]
    assert secret not in caplog.text and secret.removeprefix("whsec_") not in caplog.text
    assert TEXT not in caplog.text


async def test_include_text_sends_the_words_and_the_address(
    served: Served, fake: FakeTelegramAPI, receiver: Receiver
) -> None:
    endpoint = await register(served, receiver, "/helpdesk", ["message.received"], include_text=True)
    assert await post(served, update(702, TEXT)) == 200
    await all_settled(served, endpoint["id"], 1)
    (event,) = receiver.at("/helpdesk", "message.received")
    assert event.payload["data"]["text"] == TEXT
    assert event.payload["data"]["sender"] == SENDER


# ----- redirects, dead letters and the admin retry ---------------------------------------------------


async def test_a_redirect_is_not_followed_and_a_dead_delivery_is_retried_by_the_admin(
    served: Served, fake: FakeTelegramAPI, receiver: Receiver
) -> None:
    receiver.modes["/moving"] = "redirect"
    endpoint = await register(served, receiver, "/moving", ["message.received"])
    assert await post(served, update(703, TEXT)) == 200
    await all_settled(served, endpoint["id"], 1, status="dead")  # events.max_attempts = 3

    attempts = receiver.at("/moving")
    assert [r.answered for r in attempts] == [302, 302, 302]
    assert len({r.webhook_id for r in attempts}) == 1
    assert receiver.moved_hits == 0  # the Location was never followed
    (dead,) = await log_of(served, endpoint["id"])
    assert dead["attempts"] == 3 and dead["retryable"] and dead["last_error"] == "redirect 302 not followed"
    metrics = (await served.client.get("/metrics")).text
    assert 'threadline_event_deliveries_total{outcome="dead"} 1.0' in metrics

    receiver.modes["/moving"] = "ok"
    retry = f"/admin/event-endpoints/{endpoint['id']}/deliveries/{dead['id']}/retry"
    answer = await served.client.post(retry, json={}, headers=AUTH)
    assert answer.status_code == 200 and answer.json()["status"] == "pending"
    await all_settled(served, endpoint["id"], 1)
    assert [r.webhook_id for r in receiver.at("/moving")] == [dead["id"]] * 4  # same webhook-id again

    again = await served.client.post(retry, json={}, headers=AUTH)
    assert again.status_code == 409  # sent: nothing to retry
    missing = f"/admin/event-endpoints/{endpoint['id']}/deliveries/msg_nope/retry"
    assert (await served.client.post(missing, json={}, headers=AUTH)).status_code == 404


async def test_a_deleted_endpoint_receives_nothing_more(
    served: Served, fake: FakeTelegramAPI, receiver: Receiver
) -> None:
    kept = await register(served, receiver, "/kept", ["message.received", "reply.sent"])
    gone = await register(served, receiver, "/gone", ["message.received", "reply.sent"])
    deleted = await served.client.delete(f"/admin/event-endpoints/{gone['id']}", headers=AUTH)
    assert deleted.status_code == 200
    assert await post(served, update(704, TEXT)) == 200
    await all_settled(served, kept["id"], 2)

    assert receiver.at("/gone") == []
    answer = await served.client.get(f"/admin/event-endpoints/{gone['id']}/deliveries", headers=AUTH)
    assert answer.status_code == 404
    async with served.hub.db.read() as session:
        rows = await session.scalar(
            select(func.count()).select_from(EventDelivery).where(EventDelivery.endpoint_id == gone["id"])
        )
        stored = await session.get(EventEndpoint, gone["id"])
    assert rows == 0
    assert stored is not None and stored.secret == ""  # the secret is gone with it
    assert (
        await served.client.delete(f"/admin/event-endpoints/{gone['id']}", headers=AUTH)
    ).status_code == 404


async def test_unknown_event_types_are_refused(served: Served, receiver: Receiver) -> None:
    answer = await served.client.post(
        "/admin/event-endpoints",
        json={"url": receiver.url_for("/x"), "events": ["message.received", "everything"]},
        headers=AUTH,
    )
    assert answer.status_code == 422 and "everything" in answer.json()["detail"]
    assert (await served.client.get("/admin/event-endpoints", headers=AUTH)).json()["endpoints"] == []


# ----- SSRF: loopback, private and link-local receivers are refused without the setting ---------------

REFUSED = [
    "https://127.0.0.1/hook",
    "https://localhost/hook",
    "https://[::1]/hook",
    "https://[::ffff:127.0.0.1]/hook",
    "https://169.254.169.254/latest/meta-data",
    "https://10.1.2.3/hook",
    "https://192.168.0.10/hook",
    "https://100.64.0.1/hook",
    "https://0.0.0.0/hook",
    "https://224.0.0.1/hook",
    "https://user:pw@93.184.216.34/hook",
    "http://93.184.216.34/hook",
    "ftp://93.184.216.34/hook",
    "https:///hook",
]


async def test_ssrf_private_and_loopback_receivers_are_refused_and_nothing_is_stored(
    fake: FakeTelegramAPI, receiver: Receiver, tmp_path: Path
) -> None:
    async with serving(settings_for(fake, tmp_path, allow_private=False)) as served:
        local = receiver.url_for("/hook")  # http://127.0.0.1:PORT/hook
        for url in [local, *REFUSED]:
            answer = await served.client.post(
                "/admin/event-endpoints", json={"url": url, "events": ["message.received"]}, headers=AUTH
            )
            assert answer.status_code == 422, (url, answer.text)
        async with served.hub.db.read() as session:
            assert await session.scalar(select(func.count()).select_from(EventEndpoint)) == 0

        # a public address is accepted (the guard tells them apart; nothing is sent to it: no events)
        public = await served.client.post(
            "/admin/event-endpoints",
            json={"url": "https://93.184.216.34/hook", "events": ["case.opened"]},
            headers=AUTH,
        )
        assert public.status_code == 200

        # checked again at send time: an endpoint whose host is now loopback (a DNS change, say) gets nothing
        async with served.hub.db.session() as session:
            session.add(
                EventEndpoint(
                    url=receiver.url_for("/hook"), event_types=["message.received"], secret="whsec_AAAA"
                )
            )
        assert await post(served, update(705, TEXT)) == 200

        async def refused() -> bool:
            async with served.hub.db.read() as session:
                row = await session.scalar(select(EventDelivery))
            return row is not None and row.status == "dead"

        await until(refused, "the loopback delivery to die")
        async with served.hub.db.read() as session:
            row = (await session.scalars(select(EventDelivery))).one()
        assert (row.last_error or "").startswith("refused:")
        assert receiver.received == []


# ----- handoffs and erasure ------------------------------------------------------------------------


async def test_handoff_events_and_forgetting_a_customer_removes_the_events_about_them(
    served: Served, fake: FakeTelegramAPI, receiver: Receiver
) -> None:
    types = ["message.received", "handoff.requested", "handoff.closed", "customer.forgotten"]
    endpoint = await register(served, receiver, "/crm", types, include_text=True)
    assert await post(served, update(706, TEXT)) == 200
    await all_settled(served, endpoint["id"], 1)
    customer = receiver.at("/crm", "message.received")[0].payload["data"]["customer_id"]

    taken = await served.client.post(
        f"/admin/customers/{customer}/handoff", json={"operator": "maria"}, headers=AUTH
    )
    assert taken.status_code == 200
    back = await served.client.request(
        "DELETE", f"/admin/customers/{customer}/handoff", json={"operator": "maria"}, headers=AUTH
    )
    assert back.status_code == 200
    await all_settled(served, endpoint["id"], 3)
    (opened,) = receiver.at("/crm", "handoff.requested")
    (closed,) = receiver.at("/crm", "handoff.closed")
    assert opened.payload["data"]["handoff_id"] == closed.payload["data"]["handoff_id"] == taken.json()["id"]
    assert (
        opened.payload["data"]["customer_id"] == customer and closed.payload["data"]["closed_by"] == "maria"
    )

    assert (await served.client.delete(f"/admin/customers/{customer}", headers=AUTH)).status_code == 200
    async with served.hub.db.read() as session:
        left = list(await session.scalars(select(EventDelivery)))
    assert [row.event_type for row in left] == ["customer.forgotten"]  # their words are gone from the log
    await all_settled(served, endpoint["id"], 1)
    (forgotten,) = receiver.at("/crm", "customer.forgotten")
    assert forgotten.payload["data"]["customer_id"] == customer
    assert b"router" not in forgotten.body and b"1111111" not in forgotten.body
