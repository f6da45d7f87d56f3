"""Human handoff end to end through the real app: signed Telegram and SMS webhooks from the fake platforms,
the admin API taking over, replying and handing back, the team told on the fake Slack.

While a person owns the conversation the bot sends nothing on any channel; the messages are still stored,
logged and remembered. A person's reply is sent once per idempotency key on the customer's latest private
conversation. Bad input (a forgotten customer, a group chat, an opted-out number, an owner's conflict)
changes nothing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy import func, select

from core.settings import EmailSettings, HandoffSettings, SlackSettings
from core.store.models import Handoff, MemoryJob, OperatorAction, OptOut, OutboxRow, Turn, utcnow
from tests.apphost import Served, app_settings, serving
from tests.fakes.openai_server import FakeOpenAI, ToolTrigger
from tests.fakes.slack_api import FakeSlackAPI
from tests.fakes.smtp_relay import FakeSmtpRelay
from tests.fakes.telegram_api import FakeTelegramAPI
from tests.fakes.twilio_api import FakeTwilioAPI
from tests.platforms import post_telegram_message, post_twilio_sms, telegram_settings, twilio_settings

TOKEN = "handoff-admin-token-0123456789"
AUTH = {"authorization": f"Bearer {TOKEN}"}
PUBLIC = "https://bot.example.com"
ACCOUNT_SID = "AC" + "7" * 32
AUTH_TOKEN = "handoff-test-twilio-auth-token"
OUR_NUMBER = "+15558675310"
TELEGRAM_SECRET = "handoff-test-telegram-secret"
SLACK_TOKEN = "xoxb-handoff-test"
TEAM_CHANNEL = "CTEAM0001"
PHONE = "+15551230000"


@pytest.fixture
async def platforms() -> AsyncIterator[tuple[FakeTwilioAPI, FakeTelegramAPI, FakeSlackAPI]]:
    async with (
        FakeTwilioAPI(account_sid=ACCOUNT_SID, auth_token=AUTH_TOKEN) as twilio,
        FakeTelegramAPI() as telegram,
        FakeSlackAPI(token=SLACK_TOKEN) as slack,
    ):
        yield twilio, telegram, slack


@pytest.fixture
async def served(
    platforms: tuple[FakeTwilioAPI, FakeTelegramAPI, FakeSlackAPI], tmp_path: Path
) -> AsyncIterator[Served]:
    """SMS and Telegram for customers, Slack for the team's notices; the team always online."""
    twilio, telegram, slack = platforms
    settings = app_settings(
        tmp_path / "data",
        admin_token=SecretStr(TOKEN),
        public_base_url=PUBLIC,
        twilio=twilio_settings(
            twilio, account_sid=ACCOUNT_SID, auth_token=AUTH_TOKEN, from_number=OUR_NUMBER
        ),
        telegram=telegram_settings(telegram, secret=TELEGRAM_SECRET),
        slack=SlackSettings(
            bot_token=SecretStr(SLACK_TOKEN),
            signing_secret=SecretStr("slack-signing"),
            api_base_url=slack.api_url,
        ),
        handoff=HandoffSettings(
            working_hours="", notify_slack_channel=TEAM_CHANNEL, escalate_after_minutes=5
        ),
    )
    async with serving(settings) as app:
        yield app


async def telegram(served: Served, update_id: int, text: str, *, user: int = 42, group: bool = False) -> None:
    private = {"id": user, "type": "private", "first_name": "Ana"}
    chat = {"id": -100 - user, "type": "group", "title": "Team"} if group else private
    message = {
        "message_id": update_id,
        "date": 1_764_000_000,
        "chat": chat,
        "from": {"id": user, "is_bot": False, "first_name": "Ana"},
        "text": text,
    }
    await post_telegram_message(served.client, secret=TELEGRAM_SECRET, update_id=update_id, message=message)


async def sms(served: Served, text: str, *, phone: str = PHONE) -> None:
    await post_twilio_sms(
        served.client,
        public=PUBLIC,
        account_sid=ACCOUNT_SID,
        auth_token=AUTH_TOKEN,
        to=OUR_NUMBER,
        phone=phone,
        text=text,
    )


async def settle(served: Served) -> None:
    assert await served.hub.wait_idle(timeout=60) == {"inbox": 0, "outbox": 0, "memory": 0}


async def admin(served: Served, method: str, path: str, *, expect: int = 200, **kw: Any) -> Any:
    response = await served.client.request(method, path, headers={**AUTH, **kw.pop("headers", {})}, **kw)
    assert response.status_code == expect, response.text
    return response.json()


async def count(served: Served, model: Any, *where: Any) -> int:
    async with served.hub.db.read() as session:
        return int(await session.scalar(select(func.count()).select_from(model).where(*where)) or 0)


async def test_a_person_takes_over_the_bot_is_silent_on_every_channel_and_hands_back(
    served: Served, platforms: tuple[FakeTwilioAPI, FakeTelegramAPI, FakeSlackAPI]
) -> None:
    twilio, tg, slack = platforms
    await telegram(served, 1, "my invoice is wrong")
    await settle(served)
    assert len(tg.sent) == 1  # the bot answered
    customer = (await admin(served, "GET", "/admin/customers/telegram:42"))["id"]
    # the same customer on SMS too (an admin link), so "every channel" means two platforms
    await admin(
        served, "POST", "/admin/identities/link", json={"address": f"sms:{PHONE}", "customer_id": customer}
    )

    taken = await admin(
        served, "POST", f"/admin/customers/{customer}/handoff", json={"operator": "maria", "note": "billing"}
    )
    assert (taken["status"], taken["operator"], taken["requested_by"]) == ("owned", "maria", "operator")
    listed = (await admin(served, "GET", "/admin/handoffs"))["handoffs"]
    assert [(h["customer_id"], h["status"]) for h in listed] == [(customer, "owned")]

    await telegram(served, 2, "hello? still there?")
    await sms(served, "I also wrote by text")
    await settle(served)
    assert len(tg.sent) == 1 and twilio.messages == []  # nothing from the bot, on either channel
    async with served.hub.db.read() as session:
        said = list(
            await session.scalars(
                select(Turn.text).where(Turn.customer_id == customer, Turn.role == "customer")
            )
        )
        jobs = await session.scalar(
            select(func.count()).select_from(MemoryJob).where(MemoryJob.customer_id == customer)
        )
    assert said == ["my invoice is wrong", "hello? still there?", "I also wrote by text"]  # stored and logged
    assert jobs == 3  # and remembered

    # the person's reply: on the latest private conversation (SMS), once per key
    body = {"text": "Hi, Maria here: I fixed the invoice.", "operator": "maria", "key": "reply-0001"}
    first = await admin(served, "POST", f"/admin/customers/{customer}/replies", json=body)
    again = await admin(served, "POST", f"/admin/customers/{customer}/replies", json=body)
    assert (first["channel"], first["duplicate"], again["duplicate"]) == ("sms", False, True)
    assert first["outbox_id"] == again["outbox_id"]
    await settle(served)
    assert [m["Body"] for m in twilio.messages] == ["Hi, Maria here: I fixed the invoice."]
    async with served.hub.db.read() as session:
        turn = await session.scalar(select(Turn).where(Turn.role == "operator"))
        actions = list(await session.scalars(select(OperatorAction.action).order_by(OperatorAction.id)))
    assert turn is not None and (turn.operator, turn.customer_id, turn.channel) == ("maria", customer, "sms")
    assert actions == ["take_over", "reply"]

    # another operator cannot take it while Maria owns it; nothing changes
    await admin(served, "POST", f"/admin/customers/{customer}/handoff", json={"operator": "li"}, expect=409)

    handed = await admin(served, "DELETE", f"/admin/customers/{customer}/handoff", json={"operator": "maria"})
    assert (handed["status"], handed["closed_by"]) == ("closed", "maria")
    assert slack.posted == []  # taken over by a person: nobody waits, the team is not called
    assert (await admin(served, "GET", "/admin/handoffs"))["handoffs"] == []
    await telegram(served, 3, "thanks! one more question")
    await settle(served)
    assert len(tg.sent) == 2  # the bot answers again
    await admin(
        served, "DELETE", f"/admin/customers/{customer}/handoff", json={"operator": "maria"}, expect=404
    )


async def test_a_customer_asking_for_a_person_is_told_once_the_team_hears_and_it_escalates(
    served: Served, platforms: tuple[FakeTwilioAPI, FakeTelegramAPI, FakeSlackAPI]
) -> None:
    _, tg, slack = platforms
    await telegram(served, 10, "I want to talk to a person")
    await settle(served)
    assert len(tg.sent) == 1 and "a person from our team" in tg.sent[0]["text"]
    assert [p.channel for p in slack.posted] == [TEAM_CHANNEL]
    notice = slack.posted[0].text
    assert "waits for a person" in notice and "talk to a person" not in notice  # ids only, not the words
    handoffs = (await admin(served, "GET", "/admin/handoffs"))["handoffs"]
    assert [(h["status"], h["requested_by"], h["channel"]) for h in handoffs] == [
        ("waiting", "customer", "telegram")
    ]
    assert handoffs[0]["waiting_seconds"] >= 0

    await telegram(served, 11, "human")  # asked again while waiting: kept, not answered again
    await settle(served)
    assert len(tg.sent) == 1 and len(slack.posted) == 1

    # nobody answers: escalated once (a second round changes nothing), and the handoff stays open
    handoffs_service = served.app.state.admin.handoffs
    later = utcnow() + timedelta(minutes=6)
    first, second = await handoffs_service.escalate_due(later), await handoffs_service.escalate_due(later)
    assert len(first) == 1 and second == []
    await settle(served)
    assert len(slack.posted) == 2 and slack.posted[1].text.startswith("ESCALATED")
    assert [h["status"] for h in (await admin(served, "GET", "/admin/handoffs"))["handoffs"]] == ["waiting"]
    metrics = (await served.client.get("/metrics")).text
    assert 'threadline_handoffs_open{status="waiting"} 1.0' in metrics
    assert 'threadline_handoffs_opened_total{requested_by="customer"} 1.0' in metrics
    assert "threadline_handoff_escalations_total 1.0" in metrics


async def test_an_answer_already_in_the_outbox_is_withheld_when_a_person_takes_over(
    served: Served, platforms: tuple[FakeTwilioAPI, FakeTelegramAPI, FakeSlackAPI]
) -> None:
    _, tg, _ = platforms
    await telegram(served, 20, "hello")
    await settle(served)
    customer = (await admin(served, "GET", "/admin/customers/telegram:42"))["id"]
    # an agent answer committed just before the take-over, not yet sent
    async with served.hub.db.session() as session:
        row = await session.scalar(select(OutboxRow).where(OutboxRow.customer_id == customer))
        assert row is not None
        session.add(
            OutboxRow(
                idempotency_key="reply:late",
                channel="telegram",
                recipient=row.recipient,
                customer_id=customer,
                reply_target=dict(row.reply_target),
                text="the late answer",
                status="pending",
                origin="bot",
                next_attempt_at=utcnow() + timedelta(days=1),  # due only once the person owns it (below)
            )
        )
    await admin(served, "POST", f"/admin/customers/{customer}/handoff", json={"operator": "maria"})
    async with served.hub.db.session() as session:  # now due: the delivery lane finds it at its next poll
        late_row = await session.scalar(select(OutboxRow).where(OutboxRow.idempotency_key == "reply:late"))
        assert late_row is not None
        late_row.next_attempt_at = utcnow()
    await settle(served)
    assert [m["text"] for m in tg.sent if m["text"] == "the late answer"] == []
    async with served.hub.db.read() as session:
        late = await session.scalar(select(OutboxRow).where(OutboxRow.idempotency_key == "reply:late"))
    assert late is not None and (late.status, late.last_error) == ("withheld", "handoff")


async def test_replies_that_cannot_go_are_refused_and_change_nothing(
    served: Served, platforms: tuple[FakeTwilioAPI, FakeTelegramAPI, FakeSlackAPI]
) -> None:
    twilio, tg, _ = platforms
    # a customer who only ever wrote in a group: a person's reply would be read by everyone there
    await telegram(served, 30, "hi all", user=77, group=True)
    await sms(served, "hello")
    await sms(served, "STOP")
    await settle(served)
    grouped = (await admin(served, "GET", "/admin/customers/telegram:77"))["id"]
    texted = (await admin(served, "GET", f"/admin/customers/sms:{PHONE}"))["id"]
    before = await count(served, OutboxRow), await count(served, Turn), await count(served, Handoff)
    body = {"text": "hello from a person", "operator": "maria"}
    refused = await admin(served, "POST", f"/admin/customers/{grouped}/replies", json=body, expect=409)
    assert "no private conversation" in refused["detail"]
    refused = await admin(served, "POST", f"/admin/customers/{texted}/replies", json=body, expect=409)
    assert "opted out" in refused["detail"]
    assert await count(served, OptOut) == 1

    # a forgotten customer: 404, nothing stored
    await admin(served, "DELETE", f"/admin/customers/{grouped}")
    after_forget = await count(served, OutboxRow), await count(served, Turn), await count(served, Handoff)
    await admin(served, "POST", f"/admin/customers/{grouped}/replies", json=body, expect=404)
    await admin(served, "POST", f"/admin/customers/{grouped}/handoff", json={"operator": "maria"}, expect=404)
    assert (
        await count(served, OutboxRow),
        await count(served, Turn),
        await count(served, Handoff),
    ) == after_forget
    assert before[0] >= after_forget[0]

    # malformed: empty text, a bad operator name, a bad key, an unknown channel
    for bad in (
        {"text": "", "operator": "maria"},
        {"text": "hi", "operator": "<script>"},
        {"text": "hi", "operator": "maria", "key": "short"},
        {"text": "hi", "operator": "maria", "channel": "fax"},
        {"text": "  ", "operator": "maria"},
    ):
        await admin(served, "POST", f"/admin/customers/{texted}/replies", json=bad, expect=422)
    # without the admin token: 401 and nothing
    response = await served.client.post(f"/admin/customers/{texted}/handoff", json={"operator": "maria"})
    assert response.status_code == 401
    assert await count(served, Handoff) == 0
    assert twilio.messages == [] or all(m["Body"] != "hello from a person" for m in twilio.messages)
    assert all(m["text"] != "hello from a person" for m in tg.sent)


async def test_the_bot_hears_what_the_person_said_after_the_hand_back(
    served: Served, platforms: tuple[FakeTwilioAPI, FakeTelegramAPI, FakeSlackAPI]
) -> None:
    _, tg, _ = platforms
    await telegram(served, 40, "where is my parcel?")
    await settle(served)
    customer = (await admin(served, "GET", "/admin/customers/telegram:42"))["id"]
    await admin(
        served,
        "POST",
        f"/admin/customers/{customer}/replies",
        json={"text": "Your parcel ships on Friday by DHL.", "operator": "li"},
    )
    await admin(served, "DELETE", f"/admin/customers/{customer}/handoff", json={"operator": "li"})
    await settle(served)
    async with served.hub.db.read() as session:
        jobs = list(await session.scalars(select(MemoryJob).where(MemoryJob.customer_id == customer)))
        operator_turn = await session.scalar(select(Turn.id).where(Turn.role == "operator"))
    assert any(operator_turn in job.turn_ids for job in jobs)  # the person's words went to memory
    recent = await served.hub.conversation.recent(customer, 10)
    assert [t.role for t in recent][-1] == "operator"  # and the next prompt sees them
    assert tg.sent[-1]["text"] == "Your parcel ships on Friday by DHL."


async def test_the_team_hears_by_email_once_even_when_the_relay_fails_first(
    platforms: tuple[FakeTwilioAPI, FakeTelegramAPI, FakeSlackAPI], tmp_path: Path
) -> None:
    _, tg, _ = platforms
    async with FakeSmtpRelay() as relay:
        relay.fail_next(451, stage="DATA")  # a relay that fails once: the notice is retried, sent once
        settings = app_settings(
            tmp_path / "data",
            admin_token=SecretStr(TOKEN),
            telegram=telegram_settings(tg, secret=TELEGRAM_SECRET),
            email=EmailSettings(
                address="support@shop.example",
                smtp_host="127.0.0.1",
                smtp_port=relay.port,
                inbound_signing_key=SecretStr("handoff-inbound-key"),
            ),
            handoff=HandoffSettings(working_hours="", notify_email="Team@Shop.example"),
        )
        async with serving(settings) as served:
            await telegram(served, 50, "agent")
            await settle(served)
            assert len(tg.sent) == 1
            assert [m.rcpt_tos for m in relay.messages] == [("team@shop.example",)]
            body = relay.messages[0].message.get_content()
            assert "waits for a person" in body and "agent" not in body.split("asked by")[0]


async def test_the_llms_handoff_tool_opens_a_handoff_with_its_reason_and_the_bot_goes_quiet(
    platforms: tuple[FakeTwilioAPI, FakeTelegramAPI, FakeSlackAPI], tmp_path: Path
) -> None:
    _, tg, _ = platforms
    trigger = ToolTrigger(phrase="close my account", arguments={"reason": "account closure needs staff"})
    with FakeOpenAI(tool_triggers=[trigger]) as llm:
        settings = app_settings(
            tmp_path / "data",
            llm_url=llm.base_url,
            admin_token=SecretStr(TOKEN),
            telegram=telegram_settings(tg, secret=TELEGRAM_SECRET),
            handoff=HandoffSettings(working_hours=""),
        )
        async with serving(settings) as served:
            await telegram(served, 60, "what are your opening hours?")
            await settle(served)
            await telegram(served, 61, "please close my account now")
            await settle(served)
            # the model's own words (it restates its context) are replaced by the handoff's one line
            assert [m["text"].startswith("I've asked a person") for m in tg.sent] == [False, True]
            [handoff] = (await admin(served, "GET", "/admin/handoffs"))["handoffs"]
            assert (handoff["requested_by"], handoff["note"]) == ("assistant", "account closure needs staff")
            calls = len(llm.calls)
            await telegram(served, 62, "hello?")
            await settle(served)
            assert len(tg.sent) == 2  # silent while the handoff is open
            assert len([c for c in llm.calls[calls:] if not c.get("response_format")]) == 0  # not even asked
