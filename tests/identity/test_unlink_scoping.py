"""A handle that leaves takes only what its own words said, with a model that restates its context.

The issue, through the real app (signed webhooks over HTTP, the admin API with its bearer token, Mem0's
local backend, the fake LLM over HTTP): Ana tells an invoice number by SMS; an admin links a Telegram
handle to her; the Telegram side talks; the admin unlinks it. The fake LLM restates what it is shown
(``restating_responder``): its replies quote the prompt, so a reply to Telegram quotes Ana's SMS, and its
fact extraction turns every line it was shown (the new messages, the earlier messages, the existing
memories) into a memory with the provenance of the turn being written.

After the unlink, nothing derived from Ana's other handle may be with the Telegram handle: no memory with
Telegram provenance holds the invoice number, no reply in its conversation log quotes it, the model is
never shown it again for that handle, and a ``forget`` of Ana leaves it in no table and no file.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy import select

from core.store.models import Customer, Turn
from tests.apphost import Served, app_settings, serving
from tests.fakes.openai_server import FakeOpenAI, restating_responder
from tests.fakes.telegram_api import FakeTelegramAPI
from tests.fakes.twilio_api import FakeTwilioAPI
from tests.platforms import post_telegram_message, post_twilio_sms, telegram_settings, twilio_settings
from tests.scan import files_holding, tables_holding

PUBLIC = "https://bot.example.com"
ACCOUNT_SID = "AC" + "5" * 32
AUTH_TOKEN = "unlink-scoping-auth-token"
OUR_NUMBER = "+15558675310"
PHONE = "+15551230000"
SMS = f"sms:{PHONE}"
TG_USER = 4242
TELEGRAM = f"telegram:{TG_USER}"
TG_SECRET = "unlink-scoping-secret"
ADMIN_TOKEN = "admin-token-unlink-scoping"
INVOICE = "QX7731KB"  # what Ana said on SMS: it must never end up with the Telegram handle


@dataclass
class App:
    served: Served
    llm: FakeOpenAI
    telegram: FakeTelegramAPI
    data_dir: Path
    next_update: int = 100
    marks: dict[str, int] = field(default_factory=dict)

    async def sms(self, text: str) -> None:
        await post_twilio_sms(
            self.served.client,
            public=PUBLIC,
            account_sid=ACCOUNT_SID,
            auth_token=AUTH_TOKEN,
            to=OUR_NUMBER,
            phone=PHONE,
            text=text,
        )
        await self.idle()

    async def tg(self, text: str) -> str:
        """Send ``text`` from the Telegram handle; returns the reply (every part it was sent in)."""
        before = len(self.telegram_replies())
        self.next_update += 1
        chat = {"id": TG_USER, "type": "private", "first_name": "Tom"}
        message = {
            "message_id": self.next_update,
            "date": 1_764_000_000,
            "chat": chat,
            "from": {"id": TG_USER, "is_bot": False, "first_name": "Tom"},
            "text": text,
        }
        await post_telegram_message(
            self.served.client, secret=TG_SECRET, update_id=self.next_update, message=message
        )
        await self.idle()
        return " ".join(self.telegram_replies()[before:])

    async def idle(self) -> None:
        assert await self.served.hub.wait_idle(timeout=60) == {"inbox": 0, "outbox": 0, "memory": 0}

    async def admin(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        response = await self.served.client.request(
            method, path, json=body, headers={"authorization": f"Bearer {ADMIN_TOKEN}"}
        )
        assert response.status_code == 200, response.text
        return response.json()

    async def customer_of(self, address: str) -> str:
        found: str = (await self.admin("GET", f"/admin/customers/{address}"))["id"]
        return found

    def telegram_replies(self) -> list[str]:
        return [m["text"] for m in self.telegram.sent if m["chat"]["id"] == TG_USER]


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[App]:
    data_dir = tmp_path / "data"
    with FakeOpenAI(responder=restating_responder) as llm:
        async with (
            FakeTwilioAPI(account_sid=ACCOUNT_SID, auth_token=AUTH_TOKEN) as twilio,
            FakeTelegramAPI() as telegram,
        ):
            settings = app_settings(
                data_dir,
                llm_url=llm.base_url,
                public_base_url=PUBLIC,
                admin_token=SecretStr(ADMIN_TOKEN),
                twilio=twilio_settings(
                    twilio, account_sid=ACCOUNT_SID, auth_token=AUTH_TOKEN, from_number=OUR_NUMBER
                ),
                telegram=telegram_settings(telegram, secret=TG_SECRET),
            )
            async with serving(settings) as served:
                yield App(served=served, llm=llm, telegram=telegram, data_dir=data_dir)


async def memories_everywhere(app: App) -> list[tuple[str, str | None, str]]:
    """Every memory of every customer: (customer, provenance handle, text)."""
    hub = app.served.hub
    async with hub.db.session() as session:
        customers = list(await session.scalars(select(Customer.id)))
    return [(c, m.handle, m.text) for c in customers for m in await hub.memory.list(c)]


async def test_an_unlinked_handle_takes_only_its_own_words(app: App) -> None:
    await app.sms(f"my invoice number is {INVOICE}, the March one")
    ana = await app.customer_of(SMS)
    await app.tg("hello, it is Tom here")
    await app.admin("POST", "/admin/identities/link", {"address": TELEGRAM, "customer_id": ana})
    reply = await app.tg("what do you know about me?")

    # the premise: with the handle linked, the model was shown Ana's invoice for the Telegram turn and
    # quoted it in the reply (before the memory writer kept replies from Mem0, its extraction also made a
    # memory of it with the Telegram handle's provenance)
    assert INVOICE in reply

    left = await app.admin("POST", "/admin/identities/unlink", {"address": TELEGRAM})
    tom = left["customer_id"]
    await app.idle()  # memories the handle takes along may be written again for it (re-derived)
    calls_before = len(app.llm.calls)

    # no memory with the Telegram handle's provenance holds what Ana said, wherever it is
    assert [(c, t) for c, h, t in await memories_everywhere(app) if h == TELEGRAM and INVOICE in t] == []
    # the handle's conversation log keeps no reply that quoted Ana
    async with app.served.hub.db.session() as session:
        logged = list(await session.scalars(select(Turn).where(Turn.customer_id == tom)))
    assert logged and all(turn.address == TELEGRAM for turn in logged)
    assert [turn.role for turn in logged if INVOICE in turn.text] == []
    shown = await app.admin("GET", f"/admin/customers/{tom}?turns=200")
    assert INVOICE not in json.dumps(shown)

    reply = await app.tg("what is my invoice number?")
    # the unlinked handle recalls nothing of Ana: not in what the model was shown, not in the reply
    assert all(INVOICE not in json.dumps(call) for call in app.llm.calls[calls_before:])
    assert reply and INVOICE not in reply

    receipt = await app.admin("DELETE", f"/admin/customers/{ana}")
    assert receipt["customer_id"] == ana
    await app.idle()
    assert await tables_holding(app.served.hub, INVOICE) == []
    assert files_holding(app.data_dir, INVOICE.encode()) == []
    # Tom is still there, with his own words
    assert any("Tom here" in t for c, _, t in await memories_everywhere(app) if c == tom)
