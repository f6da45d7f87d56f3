"""The console's case actions over HTTP: CSRF, attribution, the customer told once, and refusals that are
pages with their message and change nothing."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from core.pipeline.cases import RATING_QUESTION
from core.store.models import Case, OperatorAction, OutboxRow
from tests.apphost import Served
from tests.core.web.console.conftest import Browser, conversation, new_customer, services


async def state(served: Served) -> dict[str, Any]:
    async with services(served).db.read() as session:
        return {
            "cases": sorted(
                (c.id, c.customer_id, c.status, c.opened_by, c.resolved_by, c.summary)
                for c in await session.scalars(select(Case))
            ),
            "outbox": sorted((o.id, o.text) for o in await session.scalars(select(OutboxRow))),
            "actions": len(list(await session.scalars(select(OperatorAction)))),
        }


async def test_an_agent_opens_and_resolves_a_case_telling_the_customer_once(
    served: Served, agent: Browser
) -> None:
    customer = await conversation(served, "telegram:42", ("customer", "my parcel is late"))
    page = await agent.get(f"/console/customers/{customer}")
    assert 'id="open-case-form"' in page.text and "No cases." in page.text

    opened = await agent.post(f"/console/customers/{customer}/cases", {"title": "Parcel is late"})
    assert opened.status_code == 303
    assert opened.headers["location"] == f"/console/customers/{customer}#cases"
    page = await agent.get(f"/console/customers/{customer}")
    assert "Case #1 is open." in page.text and 'id="case-1" data-status="open"' in page.text
    assert "Resolve case #1" in page.text

    form = {"summary": "Re-sent by courier", "tell": "on"}
    resolved = await agent.post(f"/console/customers/{customer}/cases/1/resolve", form)
    assert resolved.status_code == 303
    page = await agent.get(f"/console/customers/{customer}")
    assert "Case #1 is resolved. The customer was told on telegram and asked for a rating." in page.text
    assert 'id="case-1" data-status="resolved"' in page.text and "Resolve case #1" not in page.text
    again = await agent.post(f"/console/customers/{customer}/cases/1/resolve", form)  # a double submit
    assert again.status_code == 409 and "resolved already" in again.text

    now = await state(served)
    assert now["cases"] == [(1, customer, "resolved", "operator:ben", "operator:ben", "Re-sent by courier")]
    assert now["outbox"] == [(1, f"Case #1 is resolved. {RATING_QUESTION}")]
    async with services(served).db.read() as session:
        recorded = [(a.operator, a.action) for a in await session.scalars(select(OperatorAction))]
    assert recorded == [("ben", "open_case"), ("ben", "resolve_case")]


async def test_refused_case_actions_are_pages_with_their_message_and_change_nothing(
    served: Served, agent: Browser
) -> None:
    ana = await conversation(served, "telegram:42", ("customer", "hello"))
    tom = await new_customer(served, "telegram:77")  # never wrote privately: nowhere to tell him
    await agent.get(f"/console/customers/{ana}")
    assert (
        await agent.post(f"/console/customers/{tom}/cases", {"title": "Outage question"})
    ).status_code == 303
    before = await state(served)

    no_csrf = await agent.post(f"/console/customers/{ana}/cases", {"title": "x"}, csrf=False)
    assert no_csrf.status_code == 403
    theirs = await agent.post(f"/console/customers/{ana}/cases/1/resolve", {"summary": "done"})
    assert theirs.status_code == 404 and f"customer {ana} has no case 1" in theirs.text
    told = await agent.post(f"/console/customers/{tom}/cases/1/resolve", {"summary": "done", "tell": "on"})
    assert told.status_code == 409 and "no private conversation" in told.text
    blank = await agent.post(f"/console/customers/{tom}/cases/1/resolve", {"summary": "   "})
    assert blank.status_code == 422 and "The field summary is required." in blank.text
    empty = await agent.post(f"/console/customers/{ana}/cases", {"title": ""})
    assert empty.status_code == 422
    nobody = await agent.post("/console/customers/cus_nobody/cases", {"title": "x"})
    assert nobody.status_code == 404
    huge = await agent.post(f"/console/customers/{tom}/cases/99999999999999999999/resolve", {"summary": "x"})
    assert huge.status_code in (404, 422)

    assert await state(served) == before
