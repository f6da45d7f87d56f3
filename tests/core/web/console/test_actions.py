"""The console's POST actions: CSRF, roles, attribution, and what each changes (or, refused, does not)."""

from __future__ import annotations

import json
import re
from typing import Any

from sqlalchemy import select

from core.store.models import Customer, Handoff, Identity, IdentityEvent, OperatorAction, OutboxRow, Turn
from tests.apphost import Served
from tests.core.web.console.conftest import Browser, conversation, count, key_of, new_customer, services

CSRF_REFUSED = "Missing or invalid CSRF token."


async def actions(served: Served) -> list[tuple[str, str, str | None, str | None]]:
    async with services(served).db.read() as session:
        rows = await session.scalars(select(OperatorAction).order_by(OperatorAction.id))
        return [(a.operator, a.action, a.customer_id, a.subject) for a in rows]


async def ledger(served: Served) -> list[tuple[str, str]]:
    async with services(served).db.read() as session:
        rows = await session.scalars(select(IdentityEvent).order_by(IdentityEvent.id))
        return [(e.kind, e.actor) for e in rows]


async def state(served: Served) -> dict[str, Any]:
    """What an action could change: customers, handles, handoffs, outbox, ledger, operator actions."""
    async with services(served).db.read() as session:
        return {
            "customers": sorted((c.id, c.merged_into) for c in await session.scalars(select(Customer))),
            "identities": sorted((i.address, i.customer_id) for i in await session.scalars(select(Identity))),
            "handoffs": sorted((h.customer_id, h.status) for h in await session.scalars(select(Handoff))),
            "outbox": sorted((o.id, o.status) for o in await session.scalars(select(OutboxRow))),
            "ledger": len(list(await session.scalars(select(IdentityEvent)))),
            "actions": len(list(await session.scalars(select(OperatorAction)))),
        }


async def failed_reply(served: Served, customer_id: str) -> int:
    async with services(served).db.session() as session:
        row = OutboxRow(
            idempotency_key=f"reply:test-{customer_id}",
            channel="telegram",
            recipient="telegram:42",
            customer_id=customer_id,
            reply_target={"chat_id": "42"},
            text="a reply that failed",
            status="failed",
            attempts=5,
            last_error="boom",
            origin="bot",
        )
        session.add(row)
        await session.flush()
        return row.id


async def test_a_post_without_the_sessions_csrf_token_is_403_and_changes_nothing(
    served: Served, agent: Browser
) -> None:
    customer = await conversation(served, "telegram:42", ("customer", "hello"))
    for data in ({}, {"csrf_token": "not-the-token"}, {"csrf_token": ""}):
        response = await agent.post(f"/console/customers/{customer}/take", data, csrf=False)
        assert response.status_code == 403 and CSRF_REFUSED in response.text
        assert response.headers["content-security-policy"].startswith("default-src 'self'")
    response = await agent.post(
        f"/console/customers/{customer}/reply", {"text": "hi", "csrf_token": "nope"}, csrf=False
    )
    assert response.status_code == 403
    wrong_header = await agent.client.post(
        f"/console/customers/{customer}/take", headers={"X-CSRF-Token": "nope", "HX-Request": "true"}
    )
    assert wrong_header.status_code == 403
    assert await count(served, Handoff) == 0 and await count(served, OutboxRow) == 0
    # htmx sends the token in the X-CSRF-Token header (hx-headers on <body>)
    ok = await agent.client.post(
        f"/console/customers/{customer}/take", headers={"X-CSRF-Token": agent.csrf, "HX-Request": "true"}
    )
    assert ok.status_code == 303 and await count(served, Handoff) == 1


async def test_an_agent_takes_over_replies_once_per_key_and_hands_back(
    served: Served, agent: Browser
) -> None:
    customer = await conversation(served, "telegram:42", ("customer", "I want a human"))
    response = await agent.post(f"/console/customers/{customer}/take")
    assert response.status_code == 303 and response.headers["location"] == f"/console/customers/{customer}"
    page = await agent.get(response.headers["location"])
    assert "You own this conversation now" in page.text and "owned by ben" in page.text
    key = key_of(page.text)
    for _ in range(2):  # a double submit of one rendered form sends once
        sent = await agent.post(f"/console/customers/{customer}/reply", {"text": "Hi, Ben here.", "key": key})
        assert sent.status_code == 303
    async with services(served).db.read() as session:
        [outbox] = list(await session.scalars(select(OutboxRow)))
        [turn] = list(await session.scalars(select(Turn).where(Turn.role == "operator")))
    assert (outbox.origin, outbox.text, outbox.customer_id) == ("operator", "Hi, Ben here.", customer)
    assert outbox.idempotency_key == f"operator:{key}" and turn.operator == "ben"
    assert key_of((await agent.get(f"/console/customers/{customer}")).text) != key  # fresh per form
    timeline = await agent.get(f"/console/customers/{customer}/timeline")
    assert '<li data-channel="telegram" data-role="operator"' in timeline.text
    assert '<span class="operator">ben</span>' in timeline.text
    back = await agent.post(f"/console/customers/{customer}/hand-back")
    assert back.status_code == 303
    async with services(served).db.read() as session:
        [handoff] = list(await session.scalars(select(Handoff)))
    assert (handoff.status, handoff.closed_by) == ("closed", "ben")
    assert [(who, what) for who, what, _, _ in await actions(served)] == [
        ("ben", "take_over"),
        ("ben", "reply"),
        ("ben", "hand_back"),
    ]
    timeline = await agent.get(f"/console/customers/{customer}/timeline")
    assert "Taken over by ben." in timeline.text and "Handed back to the bot by ben." in timeline.text


async def test_service_refusals_are_pages_with_their_message(
    served: Served, agent: Browser, admin: Browser
) -> None:
    customer = await conversation(served, "telegram:42", ("customer", "hello"))
    before = await state(served)
    cases = [
        ("/console/customers/cus_nobody/take", {}, 404, "no customer for cus_nobody"),
        (f"/console/customers/{customer}/hand-back", {}, 404, "has no open handoff"),
        (f"/console/customers/{customer}/reply", {"text": "   "}, 422, "The field text is required."),
        (f"/console/customers/{customer}/reply", {"text": "x" * 4001}, 422, "longer than 4000"),
        (f"/console/customers/{customer}/reply", {"text": "hi", "key": "bad key!"}, 422, "idempotency key"),
    ]
    for path, data, status, message in cases:
        response = await agent.post(path, data)
        assert response.status_code == status, (path, response.text)
        assert message in response.text, (path, response.text)
    assert await state(served) == before
    assert (await admin.post(f"/console/customers/{customer}/take")).status_code == 303
    taken = await agent.post(f"/console/customers/{customer}/take")
    assert taken.status_code == 409 and "owned by ada" in taken.text
    wrong = await admin.post("/console/identities/link", {"address": "pager:1", "customer_id": customer})
    assert wrong.status_code == 422


async def test_an_agent_is_refused_every_admin_action_and_nothing_changes(
    served: Served, agent: Browser
) -> None:
    ana = await conversation(served, "telegram:42", ("customer", "hello"))
    bea = await new_customer(served, "telegram:43")
    dead = await failed_reply(served, ana)
    before = await state(served)
    refusals = [
        ("/console/merge", {"source": bea, "target": ana}, "merge customers"),
        (f"/console/customers/{ana}/forget", {"confirm": ana}, "forget a customer"),
        (f"/console/dead-letters/{dead}/retry", {}, "retry a dead letter"),
        ("/console/identities/link", {"address": "telegram:44", "customer_id": ana}, "link a handle"),
        ("/console/identities/unlink", {"address": "telegram:42"}, "unlink a handle"),
        ("/console/merges/1/undo", {}, "undo a merge"),
    ]
    for path, data, action in refusals:
        response = await agent.post(path, data)
        assert response.status_code == 403, path
        assert f"Only an admin can {action}." in response.text
    for path, action in (
        (f"/console/customers/{ana}/export", "export a customer"),
        (f"/console/customers/{ana}/forget", "forget a customer"),
    ):
        response = await agent.get(path)
        assert response.status_code == 403 and f"Only an admin can {action}." in response.text
    assert await state(served) == before


async def test_an_admin_merges_and_undoes_through_the_console_attributed_in_the_ledger(
    served: Served, admin: Browser
) -> None:
    ana = await conversation(served, "telegram:42", ("customer", "hello"))
    bea = await conversation(served, "sms:+15551230000", ("customer", "hi by sms"))
    merged = await admin.post("/console/merge", {"source": bea, "target": ana})
    assert merged.status_code == 303 and merged.headers["location"] == f"/console/customers/{ana}"
    page = await admin.get(merged.headers["location"])
    assert f"Merged {bea} into {ana}" in page.text
    found = re.search(r'action="/console/merges/(\d+)/undo"', page.text)
    assert found is not None and "Undo merge</button>" in page.text
    merge_id = found.group(1)
    timeline = await admin.get(f"/console/customers/{ana}/timeline")
    assert 'data-channel="sms" data-role="customer"' in timeline.text  # the whole timeline, every channel
    source_page = await admin.get(f"/console/customers/{bea}")
    assert f'action="/console/merges/{merge_id}/undo"' in source_page.text
    undone = await admin.post(f"/console/merges/{merge_id}/undo", {"back": ana})
    assert undone.status_code == 303 and undone.headers["location"] == f"/console/customers/{ana}"
    assert await ledger(served) == [
        ("create", "system"),
        ("create", "system"),
        ("merge", "operator:ada"),
        ("unmerge", "operator:ada"),
    ]
    assert [(w, a, c, s) for w, a, c, s in await actions(served)] == [
        ("ada", "merge", ana, merge_id),
        ("ada", "undo_merge", bea, merge_id),
    ]
    after = await admin.get(f"/console/customers/{ana}")
    assert "Undo merge</button>" not in after.text
    ledger_rows = re.findall(r"<td>operator:ada</td>", after.text)
    assert len(ledger_rows) == 2
    again = await admin.post(f"/console/merges/{merge_id}/undo")
    assert again.status_code == 409


async def test_an_admin_links_and_unlinks_a_handle(served: Served, admin: Browser) -> None:
    ana = await conversation(served, "telegram:42", ("customer", "hello"))
    linked = await admin.post("/console/identities/link", {"address": "telegram:44", "customer_id": ana})
    assert linked.status_code == 303 and linked.headers["location"] == f"/console/customers/{ana}"
    unlinked = await admin.post("/console/identities/unlink", {"address": "telegram:44", "back": ana})
    assert unlinked.status_code == 303 and unlinked.headers["location"] == f"/console/customers/{ana}"
    assert (await ledger(served))[1:] == [("link", "operator:ada"), ("unlink", "operator:ada")]
    assert [a for _, a, _, _ in await actions(served)] == ["link", "unlink"]


async def test_a_reply_to_a_forgotten_customer_is_404_and_stores_nothing(
    served: Served, admin: Browser
) -> None:
    customer = await conversation(served, "telegram:42", ("customer", "please forget me"))
    page = await admin.get(f"/console/customers/{customer}")
    key = key_of(page.text)
    confirm = await admin.get(f"/console/customers/{customer}/forget")
    assert confirm.status_code == 200 and "Type the customer id" in confirm.text
    mismatch = await admin.post(f"/console/customers/{customer}/forget", {"confirm": "cus_other"})
    assert mismatch.status_code == 422 and await count(served, Customer) == 1
    forgotten = await admin.post(f"/console/customers/{customer}/forget", {"confirm": customer})
    assert forgotten.status_code == 303 and forgotten.headers["location"] == "/console/"
    assert await count(served, Customer) == 0
    assert ("forget", "operator:ada") in await ledger(served)
    reply = await admin.post(f"/console/customers/{customer}/reply", {"text": "still there?", "key": key})
    assert reply.status_code == 404 and f"no customer for {customer}" in reply.text
    assert await count(served, OutboxRow) == 0 and await count(served, Turn, Turn.role == "operator") == 0
    assert (await admin.get(f"/console/customers/{customer}")).status_code == 404


async def test_an_admin_exports_json_and_retries_a_dead_letter(served: Served, admin: Browser) -> None:
    customer = await conversation(served, "telegram:42", ("customer", "hello"))
    exported = await admin.get(f"/console/customers/{customer}/export")
    assert exported.status_code == 200 and exported.headers["content-type"] == "application/json"
    assert exported.headers["content-disposition"] == f'attachment; filename="{customer}.json"'
    assert json.loads(exported.text)["customer_id"] == customer
    dead = await failed_reply(served, customer)
    page = await admin.get("/console/dead-letters")
    assert f'action="/console/dead-letters/{dead}/retry"' in page.text and ">Retry</button>" in page.text
    retried = await admin.post(f"/console/dead-letters/{dead}/retry")
    assert retried.status_code == 303 and retried.headers["location"] == "/console/dead-letters"
    async with services(served).db.read() as session:
        row = await session.get(OutboxRow, dead)
        assert row is not None and row.status != "failed"
    assert [(a, c, s) for _, a, c, s in await actions(served)] == [
        ("export", customer, None),
        ("retry", customer, str(dead)),
    ]
    assert (await admin.post("/console/dead-letters/999999/retry")).status_code == 404
