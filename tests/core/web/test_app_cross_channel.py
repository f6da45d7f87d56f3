"""One customer on two channels: a double charge told by SMS is known when they ask on Telegram.

Everything real but the platforms and the LLM: signed webhooks into the app over HTTP, the inbox,
the worker, Mem0 (local backend) and the official Twilio and Telegram SDK clients sending the replies
to local fakes. The two handles are linked by a test helper (an admin link, as the identity ledger
will make it), before the Telegram message arrives.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from sqlalchemy import select
from twilio.request_validator import RequestValidator

from core.messages import Assurance
from core.settings import Settings
from core.store.models import Identity
from tests.apphost import Served, app_settings, serving
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.telegram_api import FakeTelegramAPI
from tests.fakes.twilio_api import FakeTwilioAPI
from tests.platforms import telegram_settings, twilio_settings

PUBLIC = "https://bot.example.com"
ACCOUNT_SID = "AC" + "7" * 32
AUTH_TOKEN = "x-channel-auth-token"
OUR_NUMBER = "+15558675310"
CUSTOMER_PHONE = "+15551230000"
TELEGRAM_USER = 424242
TELEGRAM_SECRET = "cross-channel-secret"
COMPLAINT = "Hi, I was charged twice for my March invoice, 49.99 each time"
FACT = "Customer reports a double charge on the March invoice (49.99 taken twice)"


def model(request: dict[str, Any]) -> str:
    """A stand-in LLM that answers from what the hub put in front of it, and nothing else.

    Mem0's fact extraction (a JSON request) gets the fact when the turn mentions the charge; a chat
    request is answered with the lines of the recalled-memory block.
    """
    text = json.dumps(request["messages"])
    if (request.get("response_format") or {}).get("type") == "json_object":
        facts = [{"text": FACT}] if "charged twice" in text else []
        return json.dumps({"memory": facts})
    memory = next(
        m["content"]
        for m in request["messages"]
        if m["role"] == "system" and m["content"].startswith("<customer_memory>")
    )
    recalled = re.findall(r"^- (.*)$", memory, flags=re.MULTILINE)  # the lines under the day/channel headers
    return "From your history: " + " | ".join(recalled) if recalled else "I have no history for you yet."


def settings_for(
    twilio: FakeTwilioAPI, telegram: FakeTelegramAPI, llm: FakeOpenAI, tmp_path: Path
) -> Settings:
    """SMS and Telegram pointed at the fakes, the LLM at the fake model."""
    return app_settings(
        tmp_path / "data",
        llm_url=llm.base_url,
        public_base_url=PUBLIC,
        twilio=twilio_settings(
            twilio, account_sid=ACCOUNT_SID, auth_token=AUTH_TOKEN, from_number=OUR_NUMBER
        ),
        telegram=telegram_settings(telegram, secret=TELEGRAM_SECRET),
    )


@pytest.fixture
async def fakes() -> AsyncIterator[tuple[FakeTwilioAPI, FakeTelegramAPI, FakeOpenAI]]:
    async with (
        FakeTwilioAPI(account_sid=ACCOUNT_SID, auth_token=AUTH_TOKEN) as twilio,
        FakeTelegramAPI() as telegram,
        FakeOpenAI() as llm,
    ):
        llm.responder = model
        yield twilio, telegram, llm


async def send_sms(served: Served, sid: str, text: str) -> None:
    form = {"MessageSid": sid, "AccountSid": ACCOUNT_SID, "From": CUSTOMER_PHONE, "To": OUR_NUMBER}
    form |= {"Body": text, "NumMedia": "0"}
    signature = RequestValidator(AUTH_TOKEN).compute_signature(f"{PUBLIC}/webhooks/twilio/sms", form)
    response = await served.client.post(
        "/webhooks/twilio/sms",
        content=urlencode(form),
        headers={"content-type": "application/x-www-form-urlencoded", "x-twilio-signature": signature},
    )
    assert response.status_code == 200 and b"<Response" in response.content


async def send_telegram(served: Served, update_id: int, text: str) -> None:
    chat = {"id": TELEGRAM_USER, "type": "private", "first_name": "Ana"}
    update = {
        "update_id": update_id,
        "message": {
            "message_id": update_id,
            "date": 1_764_000_000,
            "chat": chat,
            "from": {"id": TELEGRAM_USER, "is_bot": False, "first_name": "Ana"},
            "text": text,
        },
    }
    response = await served.client.post(
        "/webhooks/telegram",
        content=json.dumps(update),
        headers={"content-type": "application/json", "x-telegram-bot-api-secret-token": TELEGRAM_SECRET},
    )
    assert response.status_code == 200


async def link_as_admin(served: Served, existing: str, new: str) -> str:
    """Test helper standing in for the identity ledger: ``new`` joins the customer of ``existing``."""
    async with served.hub.db.session() as session:
        owner = await session.scalar(select(Identity).where(Identity.address == existing))
        assert owner is not None
        session.add(
            Identity(
                address=new,
                channel=new.split(":", 1)[0],
                customer_id=owner.customer_id,
                assurance=Assurance.ADMIN_LINKED.value,
                method="test_helper",
            )
        )
        return owner.customer_id


async def test_a_double_charge_told_by_sms_is_known_on_telegram(
    fakes: tuple[FakeTwilioAPI, FakeTelegramAPI, FakeOpenAI], tmp_path: Path
) -> None:
    twilio, telegram, llm = fakes
    settings = settings_for(twilio, telegram, llm, tmp_path)
    async with serving(settings) as served:
        await send_sms(served, "SM" + "a" * 32, COMPLAINT)
        assert await served.hub.wait_idle(timeout=60) == {"inbox": 0, "outbox": 0, "memory": 0}
        [sms_reply] = twilio.messages
        assert sms_reply["To"] == CUSTOMER_PHONE and sms_reply["From"] == OUR_NUMBER

        customer = await link_as_admin(served, f"sms:{CUSTOMER_PHONE}", f"telegram:{TELEGRAM_USER}")
        await send_telegram(served, 9001, "what happened with my bill?")
        assert await served.hub.wait_idle(timeout=60) == {"inbox": 0, "outbox": 0, "memory": 0}

        [reply] = telegram.sent
        assert reply["chat"]["id"] == TELEGRAM_USER
        assert FACT in reply["text"]
        # the memory came in through recall, attributed to the channel it was told on
        chat_calls = [c for c in llm.calls if "response_format" not in c]
        last_prompt = json.dumps(chat_calls[-1]["messages"])
        assert re.search(r"\d{4}-\d\d-\d\d, via sms:\\n- " + re.escape(FACT), last_prompt)
        memories = await served.hub.memory.list(customer)
        assert [(m.text, m.channel, m.handle) for m in memories] == [(FACT, "sms", f"sms:{CUSTOMER_PHONE}")]


async def test_an_unlinked_telegram_user_learns_nothing_of_the_sms_customer(
    fakes: tuple[FakeTwilioAPI, FakeTelegramAPI, FakeOpenAI], tmp_path: Path
) -> None:
    twilio, telegram, llm = fakes
    settings = settings_for(twilio, telegram, llm, tmp_path)
    async with serving(settings) as served:
        await send_sms(served, "SM" + "b" * 32, COMPLAINT)
        await served.hub.wait_idle(timeout=60)
        await send_telegram(served, 9002, "what happened with my bill?")
        await served.hub.wait_idle(timeout=60)
        [reply] = telegram.sent
        assert reply["text"] == "I have no history for you yet."
        assert "charged twice" not in json.dumps(
            [c["messages"] for c in llm.calls if "response_format" not in c][-1]
        )


GERMAN_HISTORY = (  # a German customer by SMS, one line per thing, in the plural
    "Zwei Rechnungen vom Mai wurden doppelt abgebucht.",
    "Ich warte immer noch auf die Lieferungen vom März.",
    "Bei den Bestellungen im Juli ist etwas schiefgelaufen.",
    "Hallo, ich bin es wieder.",
    "Die Gutschriften vom Januar fehlen noch.",
    "Meine Kündigungen wurden nie bestätigt.",
    "Danke für die schnelle Antwort!",
    "Die Rücksendungen vom Oktober sind angekommen.",
)


async def test_a_german_customer_asking_on_telegram_is_answered_from_the_line_in_their_own_words(
    fakes: tuple[FakeTwilioAPI, FakeTelegramAPI, FakeOpenAI], tmp_path: Path
) -> None:
    """Offline (the customer's words are the memories; the template reply shows the three best): the
    question's "Rechnung" finds the line of "Rechnungen" by German stemming (``core.memory.lexemes``)."""
    twilio, telegram, _ = fakes
    settings = app_settings(
        tmp_path / "data",
        public_base_url=PUBLIC,
        twilio=twilio_settings(
            twilio, account_sid=ACCOUNT_SID, auth_token=AUTH_TOKEN, from_number=OUR_NUMBER
        ),
        telegram=telegram_settings(telegram, secret=TELEGRAM_SECRET),
    )
    async with serving(settings) as served:
        for number, text in enumerate(GERMAN_HISTORY):
            await send_sms(served, f"SM{number:032d}", text)
            assert await served.hub.wait_idle(timeout=60) == {"inbox": 0, "outbox": 0, "memory": 0}
        await link_as_admin(served, f"sms:{CUSTOMER_PHONE}", f"telegram:{TELEGRAM_USER}")
        await send_telegram(served, 9003, "Was ist eigentlich mit der Rechnung passiert?")
        assert await served.hub.wait_idle(timeout=60) == {"inbox": 0, "outbox": 0, "memory": 0}
        [reply] = telegram.sent
        shown = re.findall(r"^- (.*) \(sms, \d{4}-\d\d-\d\d\)$", reply["text"], flags=re.MULTILINE)
        assert shown and shown[0] == GERMAN_HISTORY[0], reply["text"]
