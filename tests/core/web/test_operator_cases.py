"""A person opens and resolves support cases through the admin API, end to end through the real app: signed
webhooks from the fake Telegram and Twilio, the hub offline, the admin API with its bearer token.

The person's case comes from the customer's latest message; its resolution writes one summary memory and,
told, reaches the customer with the rating question and buttons, which a digit or a press then answers.
Refused calls (another customer's case, a case resolved already, nowhere to tell, no token, an empty
title) change nothing and send nothing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from core.pipeline.cases import RATING_QUESTION
from core.pipeline.ratings import RATING_THANKS
from core.store.models import Case, Handoff, OperatorAction, OutboxRow, Turn, utcnow
from tests.apphost import Served, serving
from tests.core.web import test_cases
from tests.core.web.test_cases import (
    TELEGRAM_SECRET,
    Platforms,
    admin,
    metric,
    settings_for,
    settle,
    sms,
    telegram,
)
from tests.platforms import post_telegram_message

platforms = test_cases.platforms  # the fake Twilio, Telegram and Slack (a fixture)
CARD = "4111 1111 1111 1111"
SUMMARY = "Refunded the duplicate charge of the March invoice"


@pytest.fixture
async def offline(platforms: Platforms, tmp_path: Path) -> AsyncIterator[Served]:
    async with serving(settings_for(platforms, tmp_path / "data")) as app:
        yield app


async def cases_of(served: Served, customer: str) -> list[dict[str, Any]]:
    listed: list[dict[str, Any]] = (await admin(served, "GET", f"/admin/customers/{customer}/cases"))["cases"]
    return listed


async def snapshot(served: Served) -> dict[str, Any]:
    """What a person's case call could change: cases, outbox, turns, handoffs, recorded actions."""
    async with served.hub.db.read() as session:
        return {
            "cases": sorted(
                (c.id, c.customer_id, c.status, c.summary, c.rating_asked_at is None)
                for c in await session.scalars(select(Case))
            ),
            "outbox": len(list(await session.scalars(select(OutboxRow)))),
            "turns": len(list(await session.scalars(select(Turn)))),
            "handoffs": len(list(await session.scalars(select(Handoff)))),
            "actions": len(list(await session.scalars(select(OperatorAction)))),
        }


async def test_a_person_opens_and_resolves_a_case_the_customer_is_told_and_rates_it(
    offline: Served, platforms: Platforms
) -> None:
    _, tg, _ = platforms
    await telegram(offline, 1, "Hi, a question about my plan")  # no problem in words: no case by rules
    await settle(offline)
    customer = (await admin(offline, "GET", "/admin/customers/telegram:42"))["id"]
    assert await cases_of(offline, customer) == []
    async with offline.hub.db.read() as session:
        [asked] = list(await session.scalars(select(Turn.id).where(Turn.role == "customer")))
    sent = len(tg.sent)

    opened = await admin(
        offline,
        "POST",
        "/admin/customers/telegram:42/cases",  # an address names the customer, as everywhere
        json={"title": f"Card {CARD} was charged twice", "operator": "Bea"},
    )
    assert (opened["id"], opened["status"], opened["opened_by"]) == (1, "open", "operator:Bea")
    assert (opened["channel"], opened["turn_ids"], opened["resolved_at"]) == ("telegram", [asked], None)
    assert CARD not in opened["title"] and "charged twice" in opened["title"]  # redacted
    assert len(tg.sent) == sent  # opening tells nobody

    resolved = await admin(
        offline,
        "POST",
        f"/admin/customers/{customer}/cases/1/resolve",
        json={"summary": SUMMARY, "operator": "Bea", "tell": True},
    )
    assert resolved["told_on"] == "telegram"
    case = resolved["case"]
    assert (case["status"], case["resolved_by"], case["summary"]) == ("resolved", "operator:Bea", SUMMARY)
    await settle(offline)
    question = tg.sent[-1]
    assert len(tg.sent) == sent + 1 and question["text"] == f"Case #1 is resolved. {RATING_QUESTION}"
    keyboard = question["reply_markup"]["inline_keyboard"]
    assert [[b["callback_data"] for b in row] for row in keyboard] == [[f"rate:1:{n}" for n in range(1, 6)]]

    # a double submit resolves once and tells once
    await admin(
        offline,
        "POST",
        f"/admin/customers/{customer}/cases/1/resolve",
        expect=409,
        json={"summary": "again", "operator": "Bea", "tell": True},
    )
    await settle(offline)
    assert len(tg.sent) == sent + 1
    (listed,) = await cases_of(offline, customer)
    assert listed["summary"] == SUMMARY and len(listed["turn_ids"]) == 2  # the customer's and the notice

    # one summary memory, dated, attributed to the case
    summaries = [m for m in await offline.hub.memory.list(customer) if m.metadata.get("case_id") == 1]
    assert [m.text for m in summaries] == [f"Resolved case #1 ({utcnow().date().isoformat()}): {SUMMARY}"]

    # telling did not take the conversation over: no handoff, and the bot takes the rating
    assert (await admin(offline, "GET", "/admin/handoffs"))["handoffs"] == []
    await telegram(offline, 2, "5")
    await settle(offline)
    assert tg.sent[-1]["text"] == RATING_THANKS
    (listed,) = await cases_of(offline, customer)
    assert listed["rating"] == 5

    scraped = (await offline.client.get("/metrics")).text
    assert metric(scraped, 'threadline_cases_opened_total{opened_by="operator"}') == 1
    assert metric(scraped, 'threadline_cases_resolved_total{resolved_by="operator"}') == 1
    assert metric(scraped, "threadline_case_ratings_total") == 1
    async with offline.hub.db.read() as session:
        recorded = [
            (a.operator, a.action, a.customer_id, a.subject)
            for a in await session.scalars(select(OperatorAction).order_by(OperatorAction.id))
        ]
    assert recorded == [("Bea", "open_case", customer, "1"), ("Bea", "resolve_case", customer, "1")]


async def test_resolved_without_telling_nothing_is_sent_and_a_digit_rates_nothing(
    offline: Served, platforms: Platforms
) -> None:
    twilio, _, _ = platforms
    await sms(offline, "my router is broken")  # the rules open case #1
    await settle(offline)
    customer = (await admin(offline, "GET", "/admin/customers/sms:+15551239999"))["id"]
    sent = len(twilio.messages)
    resolved = await admin(
        offline,
        "POST",
        f"/admin/customers/{customer}/cases/1/resolve",
        json={"summary": "Replaced the router", "operator": "Cy"},
    )
    assert (resolved["told_on"], resolved["case"]["resolved_by"]) == (None, "operator:Cy")
    await settle(offline)
    assert len(twilio.messages) == sent  # not told
    await sms(offline, "3")  # a digit: an ordinary message now, answered by the bot, not a rating
    await settle(offline)
    assert len(twilio.messages) == sent + 1 and twilio.messages[-1]["Body"] != RATING_THANKS
    (case,) = await cases_of(offline, customer)
    assert case["rating"] is None
    summaries = [m.text for m in await offline.hub.memory.list(customer) if m.metadata.get("case_id") == 1]
    assert len(summaries) == 1 and summaries[0].endswith("Replaced the router")


async def test_refused_case_calls_change_nothing_and_send_nothing(
    offline: Served, platforms: Platforms
) -> None:
    twilio, tg, _ = platforms
    await sms(offline, "my router is broken")  # case #1, of the SMS customer
    # the other customer writes only in a group: there is no private conversation to tell them in
    group = {
        "message_id": 7,
        "date": 1_764_000_000,
        "chat": {"id": -100200, "type": "group", "title": "Neighbours"},
        "from": {"id": 77, "is_bot": False, "first_name": "Tom"},
        "text": "hello all",
    }
    await post_telegram_message(offline.client, secret=TELEGRAM_SECRET, update_id=9, message=group)
    await settle(offline)
    ana = (await admin(offline, "GET", "/admin/customers/sms:+15551239999"))["id"]
    tom = (await admin(offline, "GET", "/admin/customers/telegram:77"))["id"]
    tom_case = (
        await admin(
            offline,
            "POST",
            f"/admin/customers/{tom}/cases",
            json={"title": "Asked about an outage", "operator": "Bea"},
        )
    )["id"]
    before, sent = await snapshot(offline), (len(twilio.messages), len(tg.sent))

    resolve = {"summary": "done", "operator": "Bea"}
    # another customer's case, through this customer's path: 404
    await admin(offline, "POST", f"/admin/customers/{ana}/cases/{tom_case}/resolve", expect=404, json=resolve)
    await admin(offline, "POST", f"/admin/customers/{tom}/cases/1/resolve", expect=404, json=resolve)
    # nowhere private to tell Tom (a group would read it): 409, and the case stays open
    told = {**resolve, "tell": True}
    conflict = await admin(
        offline, "POST", f"/admin/customers/{tom}/cases/{tom_case}/resolve", expect=409, json=told
    )
    assert "no private conversation" in conflict["detail"]
    # unknown customer, unknown case, empty or blank text, a bad operator name: 404 / 422
    await admin(
        offline, "POST", "/admin/customers/cus_nobody/cases", expect=404, json={"title": "x", "operator": "B"}
    )
    await admin(offline, "POST", f"/admin/customers/{ana}/cases/999/resolve", expect=404, json=resolve)
    await admin(offline, "POST", f"/admin/customers/{ana}/cases/0/resolve", expect=422, json=resolve)
    await admin(
        offline, "POST", f"/admin/customers/{ana}/cases", expect=422, json={"title": "", "operator": "B"}
    )
    blank = await admin(
        offline, "POST", f"/admin/customers/{ana}/cases", expect=422, json={"title": "   ", "operator": "B"}
    )
    assert blank["detail"] == "the title is empty"
    await admin(
        offline,
        "POST",
        f"/admin/customers/{ana}/cases/1/resolve",
        expect=422,
        json={**resolve, "summary": " "},
    )
    await admin(
        offline, "POST", f"/admin/customers/{ana}/cases", expect=422, json={"title": "x", "operator": "<b>"}
    )
    # no token, a wrong token: 401 before anything is read
    for headers in ({}, {"authorization": "Bearer wrong-token-0123456789"}):
        response = await offline.client.post(
            f"/admin/customers/{ana}/cases/1/resolve", json=resolve, headers=headers
        )
        assert response.status_code == 401
        response = await offline.client.post(
            f"/admin/customers/{ana}/cases", json={"title": "x", "operator": "B"}, headers=headers
        )
        assert response.status_code == 401

    await settle(offline)
    assert await snapshot(offline) == before
    assert (len(twilio.messages), len(tg.sent)) == sent


async def test_a_digit_rates_the_case_asked_about_not_one_a_person_closed_quietly_since(
    offline: Served, platforms: Platforms
) -> None:
    _, tg, _ = platforms
    await telegram(offline, 1, "my router is broken")  # the rules open case #1
    await telegram(offline, 2, "that fixed it, thanks")  # and resolve it, asking for a rating
    await settle(offline)
    assert tg.sent[-1]["text"].endswith(RATING_QUESTION)
    customer = (await admin(offline, "GET", "/admin/customers/telegram:42"))["id"]
    second = await admin(
        offline, "POST", f"/admin/customers/{customer}/cases", json={"title": "Billing", "operator": "Bea"}
    )
    await admin(  # resolved since, without telling the customer: nobody asked for its rating
        offline,
        "POST",
        f"/admin/customers/{customer}/cases/{second['id']}/resolve",
        json={"summary": "Billing address corrected", "operator": "Bea"},
    )
    await telegram(offline, 3, "4")
    await settle(offline)
    assert tg.sent[-1]["text"] == RATING_THANKS
    ratings = {c["id"]: c["rating"] for c in await cases_of(offline, customer)}
    assert ratings == {1: 4, second["id"]: None}
