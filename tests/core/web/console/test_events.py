"""The console's event webhooks page over HTTP: create (the secret shown once), list, delete, refusals (SSRF,
roles, CSRF) that store nothing, and a dead delivery retried until a real local receiver takes it.

The default app has ``THREADLINE_EVENTS__ALLOW_PRIVATE`` off: an endpoint on a public address literal is
accepted there and nothing is ever sent to it (no event is recorded for it). The retry test runs its own app
with it on, so the hub reaches ``Receiver`` (a real HTTP server on 127.0.0.1 that verifies each delivery's
Standard Webhooks signature with the secret the console showed).
"""

from __future__ import annotations

import asyncio
import html
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import select

from core.events import record_event
from core.settings import EventSettings
from core.store.models import EventDelivery, EventEndpoint, OperatorAction, utcnow
from tests.apphost import Served, app_settings, serving
from tests.core.events.receiver import Receiver
from tests.core.web.console.conftest import ADMIN_TOKEN, PASSWORD, Browser, count, operators, services

PUBLIC_URL = "https://93.184.216.34/hook"  # a public address literal: accepted, never called (no events)
CSRF_REFUSED = "Missing or invalid CSRF token."
_SECRET = re.compile(r"whsec_[A-Za-z0-9+/=_-]+")


async def create(
    browser: Browser, url: str, events: list[str], *, include_text: bool = False, csrf: bool = True
) -> httpx.Response:
    form: dict[str, str | list[str]] = {"url": url, "events": events}
    if include_text:
        form["include_text"] = "on"
    if csrf:
        form["csrf_token"] = browser.csrf
    return await browser.client.post("/console/events", data=form)


async def endpoints(served: Served) -> list[tuple[int, str, list[str], bool, bool]]:
    """Every endpoint row: id, url, types, include_text, deleted."""
    async with services(served).db.read() as session:
        rows = await session.scalars(select(EventEndpoint).order_by(EventEndpoint.id))
        return [(e.id, e.url, list(e.event_types), e.include_text, e.deleted_at is not None) for e in rows]


async def audit(served: Served) -> list[tuple[str, str, str | None]]:
    async with services(served).db.read() as session:
        rows = await session.scalars(select(OperatorAction).order_by(OperatorAction.id))
        return [(a.operator, a.action, a.subject) for a in rows]


async def until(check: Callable[[], Awaitable[bool]], what: str, timeout: float = 30) -> None:
    async with asyncio.timeout(timeout):
        while not await check():
            await asyncio.sleep(0.05)
    assert await check(), what


async def test_create_shows_the_secret_once_and_the_list_never_does(
    served: Served, admin: Browser, caplog: pytest.LogCaptureFixture
) -> None:
    listed = await admin.get("/console/events")
    assert listed.status_code == 200 and "No event endpoints." in listed.text
    assert 'href="/console/events">Event webhooks</a>' in listed.text  # in the navigation

    created = await create(admin, PUBLIC_URL, ["message.received", "case.opened"], include_text=True)
    assert created.status_code == 200, created.text
    secrets = _SECRET.findall(created.text)
    assert len(secrets) == 1 and "shown only this once" in created.text
    secret = secrets[0]
    assert created.headers["cache-control"] == "no-store"
    assert "set-cookie" not in created.headers  # not carried to another page in a flash cookie

    rows = await endpoints(served)
    assert [(url, types, text, gone) for _, url, types, text, gone in rows] == [
        (PUBLIC_URL, ["message.received", "case.opened"], True, False)
    ]
    endpoint_id = rows[0][0]
    async with services(served).db.read() as session:
        stored = await session.get(EventEndpoint, endpoint_id)
        assert stored is not None and stored.secret == secret  # the one shown is the one that signs

    for path in ("/console/events", f"/console/events/{endpoint_id}"):
        again = await admin.get(path)
        assert again.status_code == 200
        assert "whsec_" not in again.text and secret not in again.text
    listed = await admin.get("/console/events")
    assert PUBLIC_URL in listed.text and "message.received, case.opened" in listed.text
    assert secret not in caplog.text
    assert await audit(served) == [("ada", "create_event_endpoint", str(endpoint_id))]


async def test_a_loopback_url_is_refused_with_the_admin_apis_reason_and_nothing_is_stored(
    served: Served, admin: Browser
) -> None:
    assert services(served).settings.events.allow_private is False
    await admin.get("/console/events")
    url = "https://127.0.0.1:8443/hook"
    refused = await create(admin, url, ["message.received"])
    assert refused.status_code == 422
    api = await served.client.post(
        "/admin/event-endpoints",
        json={"url": url, "events": ["message.received"]},
        headers={"authorization": f"Bearer {ADMIN_TOKEN}"},
    )
    assert api.status_code == 422
    reason = api.json()["detail"]
    assert "THREADLINE_EVENTS__ALLOW_PRIVATE" in reason
    assert f"Not created: {reason}" in html.unescape(refused.text)
    assert f'value="{url}"' in refused.text  # the form keeps what was typed

    # the other refusals: a plain-http URL, an unknown type, no type at all
    for bad_url, types, says in [
        ("http://93.184.216.34/hook", ["message.received"], "the URL must be https"),
        (PUBLIC_URL, ["message.sent"], "unknown event type"),
        (PUBLIC_URL, [], "name at least one event type"),
    ]:
        answer = await create(admin, bad_url, types)
        assert answer.status_code == 422 and says in html.unescape(answer.text), says
    assert await endpoints(served) == [] and await audit(served) == []


async def test_delete_removes_the_endpoint_and_cancels_what_was_queued(
    served: Served, admin: Browser
) -> None:
    await admin.get("/console/events")
    assert (await create(admin, PUBLIC_URL, ["case.opened"])).status_code == 200
    [(endpoint_id, *_)] = await endpoints(served)
    async with services(served).db.session() as session:
        session.add(  # queued but not due for an hour: the lane leaves it alone until then
            EventDelivery(
                webhook_id="msg_queued0000000000000",
                endpoint_id=endpoint_id,
                event_type="case.opened",
                payload={},
                status="failed",
                attempts=1,
                next_attempt_at=utcnow() + timedelta(hours=1),
            )
        )
    await admin.get("/console/events")
    deleted = await admin.post(f"/console/events/{endpoint_id}/delete")
    assert deleted.status_code == 303 and deleted.headers["location"] == "/console/events"

    after = await admin.get("/console/events")
    assert "No event endpoints." in after.text and PUBLIC_URL not in after.text
    assert f"Event endpoint {endpoint_id} deleted" in after.text
    [(_, _, _, _, gone)] = await endpoints(served)
    assert gone
    async with services(served).db.read() as session:
        row = (await session.scalars(select(EventDelivery))).one()
        assert row.status == "cancelled"
    assert (await admin.get(f"/console/events/{endpoint_id}")).status_code == 404
    again = await admin.post(f"/console/events/{endpoint_id}/delete")
    assert again.status_code == 404
    assert await audit(served) == [
        ("ada", "create_event_endpoint", str(endpoint_id)),
        ("ada", "delete_event_endpoint", str(endpoint_id)),
    ]


async def test_an_agent_is_refused_every_event_webhook_action_and_nothing_changes(
    served: Served, admin: Browser, agent: Browser
) -> None:
    await admin.get("/console/events")
    assert (await create(admin, PUBLIC_URL, ["case.opened"])).status_code == 200
    [(endpoint_id, *_)] = await endpoints(served)
    async with services(served).db.session() as session:
        session.add(
            EventDelivery(
                webhook_id="msg_dead00000000000000000",
                endpoint_id=endpoint_id,
                event_type="case.opened",
                payload={},
                status="dead",
                attempts=8,
            )
        )
    before = (await endpoints(served), await audit(served))

    home = await agent.get("/console/")
    assert "/console/events" not in home.text  # not in an agent's navigation
    for path in ("/console/events", f"/console/events/{endpoint_id}"):
        page = await agent.get(path)
        assert page.status_code == 403 and "Only an admin can manage event webhooks." in page.text
    answers = [
        await create(agent, "https://93.184.216.35/hook", ["case.opened"]),
        await agent.post(f"/console/events/{endpoint_id}/delete"),
        await agent.post(f"/console/events/{endpoint_id}/deliveries/msg_dead00000000000000000/retry"),
    ]
    assert [a.status_code for a in answers] == [403, 403, 403]
    assert all("Only an admin can manage event webhooks." in a.text for a in answers)
    assert (await endpoints(served), await audit(served)) == before
    async with services(served).db.read() as session:
        assert (await session.scalars(select(EventDelivery))).one().status == "dead"


async def test_a_post_without_the_csrf_token_is_403_and_changes_nothing(
    served: Served, admin: Browser
) -> None:
    await admin.get("/console/events")
    for token in (None, "not-the-token"):
        data: dict[str, str | list[str]] = {"url": PUBLIC_URL, "events": ["case.opened"]}
        if token is not None:
            data["csrf_token"] = token
        refused = await admin.client.post("/console/events", data=data)
        assert refused.status_code == 403 and CSRF_REFUSED in refused.text
    assert await endpoints(served) == []
    assert (await create(admin, PUBLIC_URL, ["case.opened"])).status_code == 200
    [(endpoint_id, *_)] = await endpoints(served)
    assert (await admin.post(f"/console/events/{endpoint_id}/delete", csrf=False)).status_code == 403
    retry = await admin.post(f"/console/events/{endpoint_id}/deliveries/msg_x/retry", {"csrf_token": "no"})
    assert retry.status_code == 403
    assert not (await endpoints(served))[0][4]
    assert await audit(served) == [("ada", "create_event_endpoint", str(endpoint_id))]


# ----- a dead delivery retried, to a real receiver -------------------------------------------------------


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with Receiver() as server:
        yield server


@pytest.fixture
async def private(tmp_path: Path) -> AsyncIterator[Served]:
    """An app whose event lane may call loopback (``allow_private``), fast retries, two tries in all."""
    events = EventSettings(allow_private=True, backoff_base=0.05, backoff_max=0.2, max_attempts=2)
    settings = app_settings(tmp_path / "data", admin_token=SecretStr(ADMIN_TOKEN), events=events)
    async with serving(settings) as app:
        yield app


async def test_retry_of_a_dead_delivery_requeues_it_under_the_same_webhook_id(
    private: Served, receiver: Receiver
) -> None:
    await operators(private).add("ada", "admin", PASSWORD)
    async with httpx.AsyncClient(base_url=private.url, timeout=30) as client:
        admin = Browser(client)
        assert (await admin.sign_in("ada")).status_code == 303
        await admin.get("/console/events")
        created = await create(admin, receiver.url_for("/hook"), ["case.opened"])
        assert created.status_code == 200, created.text
        receiver.secrets["/hook"] = _SECRET.findall(created.text)[0]
        receiver.modes["/hook"] = "fail"
        [(endpoint_id, *_)] = await endpoints(private)

        async with services(private).db.session() as session:
            assert await record_event(session, "case.opened", {"case_id": 7}) == 1

        async def delivery() -> EventDelivery:
            async with services(private).db.read() as session:
                return (await session.scalars(select(EventDelivery))).one()

        async def dead() -> bool:
            return (await delivery()).status == "dead"

        await until(dead, "the delivery to die after two failed tries")
        msg_id = (await delivery()).webhook_id
        log = await admin.get(f"/console/events/{endpoint_id}")
        assert log.status_code == 200 and msg_id in log.text and "dead" in log.text
        assert f"/console/events/{endpoint_id}/deliveries/{msg_id}/retry" in log.text
        assert '"case_id"' not in log.text  # no payload

        receiver.modes["/hook"] = "ok"
        retried = await admin.post(f"/console/events/{endpoint_id}/deliveries/{msg_id}/retry")
        assert retried.status_code == 303 and retried.headers["location"] == f"/console/events/{endpoint_id}"

        async def sent() -> bool:
            return (await delivery()).status == "sent"

        await until(sent, "the retried delivery to be sent")
        taken = [r for r in receiver.at("/hook") if r.answered == 204]
        assert [(r.webhook_id, r.verified) for r in taken] == [(msg_id, True)]
        assert all(r.webhook_id == msg_id for r in receiver.at("/hook"))

        again = await admin.post(f"/console/events/{endpoint_id}/deliveries/{msg_id}/retry")
        assert again.status_code == 409 and "not dead" in again.text  # sent now: nothing to retry
        assert await count(private, OperatorAction, OperatorAction.action == "retry_event_delivery") == 1
        async with services(private).db.read() as session:
            action = (
                await session.scalars(
                    select(OperatorAction).where(OperatorAction.action == "retry_event_delivery")
                )
            ).one()
            assert (action.operator, action.subject) == ("ada", msg_id)
