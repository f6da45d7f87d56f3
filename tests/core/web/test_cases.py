"""Support cases end to end through the real app: signed webhooks from the fake Telegram, Twilio and Slack,
the LLM a hostile fake that restates its whole context, the admin API linking handles and listing cases.

A case opened on Telegram (the model's ``open_case`` tool) is resolved by SMS (``resolve_case``) by the same
customer; on Slack the prompt the model gets shows it as resolved, with its date, and never as open, and
everything of it that reaches the prompt (memories, earlier turns) is marked as resolved history. Offline,
rules open and resolve cases. The resolution asks for a 1-5 rating; a bare digit answers it, once.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy import select

from core.pipeline.cases import RATING_QUESTION
from core.pipeline.ratings import RATING_THANKS
from core.settings import SlackSettings
from core.store.models import Case, Turn, utcnow
from tests.apphost import Served, app_settings, serving
from tests.core.web.test_app_slack import SECRET as SLACK_SECRET
from tests.core.web.test_app_slack import fixture, sign
from tests.fakes.openai_server import FakeOpenAI, ToolTrigger, restating_responder
from tests.fakes.slack_api import DEFAULT_TOKEN, FakeSlackAPI
from tests.fakes.telegram_api import FakeTelegramAPI
from tests.fakes.twilio_api import FakeTwilioAPI
from tests.platforms import post_telegram_message, post_twilio_sms, telegram_settings, twilio_settings

TOKEN = "cases-admin-token-0123456789"
AUTH = {"authorization": f"Bearer {TOKEN}"}
PUBLIC = "https://bot.example.com"
ACCOUNT_SID = "AC" + "8" * 32
AUTH_TOKEN = "cases-test-twilio-auth-token"
OUR_NUMBER = "+15558675311"
TELEGRAM_SECRET = "cases-test-telegram-secret"
PHONE = "+15551239999"
TEAM, SLACK_USER, BOT_USER = "T123ABC456", "U0CASES01", "UBOT0001"
TITLE = "Charged twice for the March invoice"
SUMMARY = "The duplicate March charge was refunded"

Platforms = tuple[FakeTwilioAPI, FakeTelegramAPI, FakeSlackAPI]


@pytest.fixture
async def platforms() -> AsyncIterator[Platforms]:
    async with (
        FakeTwilioAPI(account_sid=ACCOUNT_SID, auth_token=AUTH_TOKEN) as twilio,
        FakeTelegramAPI() as telegram,
        FakeSlackAPI(token=DEFAULT_TOKEN, team_id=TEAM, bot_user_id=BOT_USER) as slack,
    ):
        yield twilio, telegram, slack


def settings_for(platforms: Platforms, data: Path, llm_url: str | None = None) -> Any:
    twilio, telegram, slack = platforms
    return app_settings(
        data,
        llm_url=llm_url,
        admin_token=SecretStr(TOKEN),
        public_base_url=PUBLIC,
        twilio=twilio_settings(
            twilio, account_sid=ACCOUNT_SID, auth_token=AUTH_TOKEN, from_number=OUR_NUMBER
        ),
        telegram=telegram_settings(telegram, secret=TELEGRAM_SECRET),
        slack=SlackSettings(
            bot_token=SecretStr(DEFAULT_TOKEN),
            signing_secret=SecretStr(SLACK_SECRET),
            api_base_url=slack.api_url,
        ),
    )


@pytest.fixture
async def llm() -> AsyncIterator[FakeOpenAI]:
    """A hostile model: it restates its whole context, and calls the case tools on cue."""
    triggers = [
        ToolTrigger(phrase="charged twice", tool="open_case", arguments={"title": TITLE}),
        ToolTrigger(
            phrase="that fixed it", tool="resolve_case", arguments={"case_id": 1, "summary": SUMMARY}
        ),
    ]
    async with FakeOpenAI(responder=restating_responder, tool_triggers=triggers) as fake:
        yield fake


@pytest.fixture
async def served(platforms: Platforms, llm: FakeOpenAI, tmp_path: Path) -> AsyncIterator[Served]:
    async with serving(settings_for(platforms, tmp_path / "data", llm.base_url)) as app:
        yield app


@pytest.fixture
async def offline(platforms: Platforms, tmp_path: Path) -> AsyncIterator[Served]:
    async with serving(settings_for(platforms, tmp_path / "offline")) as app:
        yield app


# ----- the platforms' side ----------------------------------------------------------------------


async def telegram(served: Served, update_id: int, text: str, *, user: int = 42) -> None:
    message = {
        "message_id": update_id,
        "date": 1_764_000_000,
        "chat": {"id": user, "type": "private", "first_name": "Ana"},
        "from": {"id": user, "is_bot": False, "first_name": "Ana"},
        "text": text,
    }
    await post_telegram_message(served.client, secret=TELEGRAM_SECRET, update_id=update_id, message=message)


async def sms(served: Served, text: str) -> None:
    await post_twilio_sms(
        served.client,
        public=PUBLIC,
        account_sid=ACCOUNT_SID,
        auth_token=AUTH_TOKEN,
        to=OUR_NUMBER,
        phone=PHONE,
        text=text,
    )


async def slack_dm(served: Served, event_id: str, text: str, *, ts: str) -> None:
    payload = fixture("message_im.json")
    payload["event_id"] = event_id
    payload["event"].update({"text": text, "ts": ts, "event_ts": ts, "user": SLACK_USER})
    payload["authorizations"][0]["user_id"] = BOT_USER
    raw = json.dumps(payload).encode()
    response = await served.client.post(
        "/webhooks/slack/events", content=raw, headers={"content-type": "application/json", **sign(raw)}
    )
    assert response.status_code == 200


async def settle(served: Served) -> None:
    assert await served.hub.wait_idle(timeout=90) == {"inbox": 0, "outbox": 0, "memory": 0}


async def admin(served: Served, method: str, path: str, *, expect: int = 200, **kw: Any) -> Any:
    response = await served.client.request(method, path, headers=AUTH, **kw)
    assert response.status_code == expect, response.text
    return response.json()


async def link(served: Served, address: str, customer: str) -> None:
    await admin(served, "POST", "/admin/identities/link", json={"address": address, "customer_id": customer})


def call_for(llm: FakeOpenAI, phrase: str) -> dict[str, Any]:
    """The chat call that answered the message containing ``phrase`` (not a memory extraction)."""
    found = [
        call
        for call in llm.calls
        if call.get("tools") and phrase in str(call["messages"][-1].get("content", ""))
    ]
    assert len(found) == 1, f"{len(found)} answering calls for {phrase!r}"
    return found[0]


def metric(text: str, name: str) -> float:
    return sum(
        float(m.group(1)) for m in re.finditer(rf"^{re.escape(name)}(?:{{[^}}]*}})? (\S+)$", text, re.M)
    )


# ----- with an LLM --------------------------------------------------------------------------------


async def test_a_case_opened_on_telegram_resolved_by_sms_is_history_on_slack(
    served: Served, platforms: Platforms, llm: FakeOpenAI
) -> None:
    twilio, tg, slack = platforms
    await telegram(served, 1, "I was charged twice for my March invoice")
    await settle(served)
    customer = (await admin(served, "GET", "/admin/customers/telegram:42"))["id"]
    assert "I've opened case #1 for this." in tg.sent[-1]["text"]
    await link(served, f"sms:{PHONE}", customer)
    await link(served, f"slack:{TEAM}:{SLACK_USER}", customer)

    # the SMS prompt shows the case as open, with its number, so the model can resolve it
    await sms(served, "that fixed it, thanks!")
    await settle(served)
    shown = call_for(llm, "that fixed it")["messages"][1]["content"]
    assert f"case #1: open since {utcnow().date().isoformat()}: {TITLE}" in shown
    answer = twilio.messages[-1]["Body"]
    assert "Case #1 is resolved." in answer and answer.endswith(RATING_QUESTION)

    listed = await admin(served, "GET", f"/admin/customers/{customer}/cases")
    (case,) = listed["cases"]
    assert (case["id"], case["status"], case["title"], case["summary"]) == (1, "resolved", TITLE, SUMMARY)
    assert (case["opened_by"], case["resolved_by"], case["channel"]) == ("assistant", "assistant", "telegram")
    assert case["opened_at"] is not None and case["resolved_at"] is not None
    assert case["opened_at"] < case["resolved_at"] and case["rating"] is None
    async with served.hub.db.read() as session:
        turns = list(
            await session.scalars(select(Turn).where(Turn.id.in_(case["turn_ids"])).order_by(Turn.id))
        )
    assert [(t.channel, t.role) for t in turns] == [
        ("telegram", "customer"),
        ("telegram", "assistant"),
        ("sms", "customer"),
        ("sms", "assistant"),
    ]

    # one summary memory, with provenance and the case in its metadata
    summaries = [m for m in await served.hub.memory.list(customer) if m.metadata.get("case_id") == 1]
    assert len(summaries) == 1
    (summary,) = summaries
    resolved_on = case["resolved_at"][:10]
    assert summary.text == f"Resolved case #1 ({resolved_on}): {SUMMARY}"
    assert (summary.category, summary.channel, summary.handle) == ("support_history", "sms", f"sms:{PHONE}")
    assert summary.metadata["case_status"] == "resolved"

    # on Slack: the case is history, shown resolved with its date, never as open
    await slack_dm(served, "EvCASES001", "hi, one more question about my plan", ts="1700000100.000100")
    await settle(served)
    assert slack.posted and {m.channel for m in slack.posted} == {"D024BE91L"}  # answered (long: in parts)
    messages = call_for(llm, "one more question")["messages"]
    block = messages[1]["content"]
    assert f"case #1: resolved on {resolved_on}" in block and TITLE in block
    assert "case #1: open" not in block and "(no open case)" in block
    assert "[resolved case #1, on" in block  # the summary (and the memories of its turns) marked as history
    assert "never bring it up as a current problem" in " ".join(messages[0]["content"].split())
    mentions = [
        line
        for message in messages[:-1]
        for line in str(message["content"]).splitlines()
        if re.search(r"charged twice|that fixed it|case #1: open", line, re.IGNORECASE)
    ]
    assert mentions, "the case's words reach the prompt (memories, earlier turns)"
    for line in mentions:  # everything of the resolved case is marked as such
        assert "resolved" in line.lower(), line[:300]

    # the satisfaction question is answered once with a bare digit: thanked, not answered by the model
    calls = len(llm.calls)
    await sms(served, "5")
    await settle(served)
    assert twilio.messages[-1]["Body"] == RATING_THANKS
    assert all(not call.get("tools") for call in llm.calls[calls:])  # no answering call for it
    (case,) = (await admin(served, "GET", f"/admin/customers/{customer}/cases"))["cases"]
    assert case["rating"] == 5 and case["rated_at"] is not None
    await sms(served, "4")  # asked once: another digit is a message like any other
    await settle(served)
    assert twilio.messages[-1]["Body"] != RATING_THANKS
    (case,) = (await admin(served, "GET", f"/admin/customers/{customer}/cases"))["cases"]
    assert case["rating"] == 5

    scraped = (await served.client.get("/metrics")).text
    assert metric(scraped, "threadline_cases_opened_total") == 1
    assert metric(scraped, "threadline_cases_resolved_total") == 1
    assert 'threadline_case_ratings_total{rating="5"} 1.0' in scraped

    exported = await admin(served, "GET", f"/admin/customers/{customer}/export")
    assert [(c["id"], c["status"], c["rating"]) for c in exported["cases"]] == [(1, "resolved", 5)]
    assert (await admin(served, "GET", f"/admin/customers/sms:{PHONE.replace('+', '%2B')}/cases"))["cases"]
    await admin(served, "GET", "/admin/customers/telegram:999/cases", expect=404)


async def test_a_sender_nobody_vouches_for_and_a_group_open_no_case(served: Served, llm: FakeOpenAI) -> None:
    group = {
        "message_id": 7,
        "date": 1_764_000_000,
        "chat": {"id": -1007, "type": "group", "title": "Team"},
        "from": {"id": 43, "is_bot": False, "first_name": "Li"},
        "text": "I was charged twice, can someone look?",
    }
    response = await served.client.post(
        "/webhooks/telegram",
        content=json.dumps({"update_id": 7, "message": group}),
        headers={"content-type": "application/json", "x-telegram-bot-api-secret-token": TELEGRAM_SECRET},
    )
    assert response.status_code == 200
    await settle(served)
    assert all(not call.get("tools") for call in llm.calls)  # no tool offered in a group
    async with served.hub.db.read() as session:
        assert list(await session.scalars(select(Case))) == []


# ----- offline: the rules ---------------------------------------------------------------------------


async def test_offline_rules_open_and_resolve_a_case_and_ask_for_a_rating(
    offline: Served, platforms: Platforms
) -> None:
    _, tg, _ = platforms
    await telegram(offline, 1, "Hello! My router is broken since Monday")
    await settle(offline)
    customer = (await admin(offline, "GET", "/admin/customers/telegram:42"))["id"]
    assert "I've opened case #1 for this." in tg.sent[-1]["text"]
    await telegram(offline, 2, "also the refund for the old one is missing")  # one open case at a time
    await telegram(offline, 3, "it's still not working")  # not solved
    await settle(offline)
    listed = (await admin(offline, "GET", f"/admin/customers/{customer}/cases"))["cases"]
    assert [(c["id"], c["status"], c["opened_by"]) for c in listed] == [(1, "open", "rules")]
    assert listed[0]["title"] == "Hello! My router is broken since Monday"

    await telegram(offline, 4, "that fixed it, thanks")
    await settle(offline)
    assert tg.sent[-1]["text"].endswith(RATING_QUESTION) and "Case #1 is resolved." in tg.sent[-1]["text"]
    (case,) = (await admin(offline, "GET", f"/admin/customers/{customer}/cases"))["cases"]
    assert (case["status"], case["resolved_by"]) == ("resolved", "rules")
    assert (
        case["summary"] == "Hello! My router is broken since Monday. The customer said: that fixed it, thanks"
    )
    assert len(case["turn_ids"]) == 4  # the opening and resolving messages with their replies
    summaries = [m for m in await offline.hub.memory.list(customer) if m.metadata.get("case_id") == 1]
    assert [m.text for m in summaries] == [
        f"Resolved case #1 ({case['resolved_at'][:10]}): {case['summary']}"
    ]

    await telegram(offline, 5, " 4 ")
    await settle(offline)
    assert tg.sent[-1]["text"] == RATING_THANKS
    (case,) = (await admin(offline, "GET", f"/admin/customers/{customer}/cases"))["cases"]
    assert case["rating"] == 4

    await telegram(offline, 6, "the app is not working again")  # a new problem: a new case
    await settle(offline)
    listed = (await admin(offline, "GET", f"/admin/customers/{customer}/cases"))["cases"]
    assert [(c["id"], c["status"]) for c in listed] == [(2, "open"), (1, "resolved")]  # newest first
