"""Self-service linking on proof, platform attestation and recall gating, end to end.

The app is served over real HTTP with the Telegram, Twilio and email adapters pointed at local fakes:
a one-time code really goes out as an SMS (or an email) and really comes back as a Telegram message.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from pydantic import SecretStr
from sqlalchemy import select, update
from twilio.request_validator import RequestValidator

from core.logs import QUIET_LOGGERS
from core.messages import Address, Assurance
from core.settings import EmailSettings
from core.store.models import IdentityEvent, InboxRow, LinkChallenge, OutboxRow, Turn, utcnow
from identity.ledger import current_state, ledger, replay
from identity.linking import IdentityLinks
from tests.apphost import Served, app_settings, serving
from tests.fakes.smtp_relay import FakeSmtpRelay
from tests.fakes.telegram_api import FakeTelegramAPI
from tests.fakes.twilio_api import FakeTwilioAPI
from tests.platforms import telegram_settings, twilio_settings

PUBLIC = "https://bot.example.com"
ACCOUNT_SID = "AC" + "5" * 32
AUTH_TOKEN = "proof-auth-token"
OUR_NUMBER = "+15558675310"
PHONE = "+15551230000"
TG_SECRET = "proof-telegram-secret"
MAIL_KEY = "key-proof-0123456789abcdef"
OURS = "support@threadline.example"
ANA_MAIL = "ana@example.com"
TG_USER = 42


@dataclass
class Platform:
    served: Served
    twilio: FakeTwilioAPI
    telegram: FakeTelegramAPI
    relay: FakeSmtpRelay
    next_update: int = 1000

    # ----- inbound, signed as each platform signs ------------------------------------------------

    async def sms(self, text: str, *, sid: str | None = None, phone: str = PHONE) -> None:
        form = {"MessageSid": sid or "SM" + secrets.token_hex(16), "AccountSid": ACCOUNT_SID}
        form |= {"From": phone, "To": OUR_NUMBER, "Body": text, "NumMedia": "0"}
        signature = RequestValidator(AUTH_TOKEN).compute_signature(f"{PUBLIC}/webhooks/twilio/sms", form)
        response = await self.served.client.post(
            "/webhooks/twilio/sms",
            content=urlencode(form),
            headers={"content-type": "application/x-www-form-urlencoded", "x-twilio-signature": signature},
        )
        assert response.status_code == 200
        await self.idle()

    async def tg(self, text: str | None = None, *, user: int = TG_USER, **message: Any) -> None:
        self.next_update += 1
        body: dict[str, Any] = {
            "message_id": self.next_update,
            "date": int(time.time()),
            "chat": {"id": user, "type": "private", "first_name": "Ana"},
            "from": {"id": user, "is_bot": False, "first_name": "Ana"},
            **message,
        }
        if text is not None:
            body["text"] = text
        response = await self.served.client.post(
            "/webhooks/telegram",
            content=json.dumps({"update_id": self.next_update, "message": body}),
            headers={"content-type": "application/json", "x-telegram-bot-api-secret-token": TG_SECRET},
        )
        assert response.status_code == 200
        await self.idle()

    async def email(self, text: str, *, sender: str = ANA_MAIL) -> None:
        message_id = f"<{secrets.token_hex(8)}@example.com>"
        raw = (
            f"From: {sender}\r\nTo: {OURS}\r\nSubject: help\r\nMessage-ID: {message_id}\r\n"
            "Date: Mon, 3 Mar 2025 09:30:51 -0800\r\nContent-Type: text/plain; charset=utf-8\r\n"
            f"\r\n{text}\r\n"
        ).encode()
        ts, token = str(int(time.time())), secrets.token_hex(25)
        signature = hmac.new(MAIL_KEY.encode(), (ts + token).encode(), hashlib.sha256).hexdigest()
        fields = {
            "timestamp": ts,
            "token": token,
            "signature": signature,
            "recipient": OURS,
            "sender": sender,
        }
        response = await self.served.client.post(
            "/webhooks/email/inbound", data=fields, files={"body-mime": (None, raw)}
        )
        assert response.status_code == 200
        await self.idle()

    async def idle(self) -> None:
        assert await self.served.hub.wait_idle(timeout=60) == {"inbox": 0, "outbox": 0, "memory": 0}

    # ----- what came out -------------------------------------------------------------------------

    def telegram_replies(self, user: int = TG_USER) -> list[str]:
        return [m["text"] for m in self.telegram.sent if m["chat"]["id"] == user]

    def sms_to(self, phone: str = PHONE) -> list[str]:
        return [m["Body"] for m in self.twilio.messages if m["To"] == phone]

    async def customer_of(self, address: str) -> str:
        return (await self.served.hub.resolver.resolve(Address.parse(address))).customer_id

    async def assurance_of(self, address: str) -> Assurance:
        return (await self.served.hub.resolver.resolve(Address.parse(address))).assurance


def code_in(text: str) -> str:
    found = re.search(r"\b(\d{6})\b", text)
    assert found is not None, "no code in the message"
    return found[1]


@pytest.fixture
async def platform(tmp_path: Path) -> AsyncIterator[Platform]:
    async with (
        FakeTwilioAPI(account_sid=ACCOUNT_SID, auth_token=AUTH_TOKEN) as twilio,
        FakeTelegramAPI() as telegram,
    ):
        relay = FakeSmtpRelay().start()
        try:
            settings = app_settings(
                tmp_path / "data",
                public_base_url=PUBLIC,
                twilio=twilio_settings(
                    twilio, account_sid=ACCOUNT_SID, auth_token=AUTH_TOKEN, from_number=OUR_NUMBER
                ),
                telegram=telegram_settings(telegram, secret=TG_SECRET),
                email=EmailSettings(
                    address=f"Support <{OURS}>",
                    smtp_host="127.0.0.1",
                    smtp_port=relay.port,
                    inbound_signing_key=SecretStr(MAIL_KEY),
                ),
            )
            async with serving(settings) as served:
                yield Platform(served=served, twilio=twilio, telegram=telegram, relay=relay)
        finally:
            relay.stop()


async def everything_stored(served: Served) -> str:
    """Every text the store and memory hold, as one string (a code must be in none of it)."""
    async with served.hub.db.session() as session:
        texts = [row.text for row in await session.scalars(select(InboxRow))]
        texts += [row.text for row in await session.scalars(select(OutboxRow))]
        texts += [row.text for row in await session.scalars(select(Turn))]
        customers = {row.customer_id for row in await session.scalars(select(Turn))}
    for customer in customers:
        texts += [m.text for m in await served.hub.memory.list(customer)]
    return "\n".join(texts)


async def test_a_code_sent_by_sms_and_returned_on_telegram_links_the_two(
    platform: Platform, caplog: pytest.LogCaptureFixture
) -> None:
    for name in QUIET_LOGGERS:  # as ``threadline serve`` sets them up
        caplog.set_level(logging.WARNING, logger=name)
    caplog.set_level(logging.DEBUG)  # last: it also sets the capture handler's level
    await platform.sms("I was charged twice for the March invoice")
    ana = await platform.customer_of(f"sms:{PHONE}")
    await platform.tg("hello")
    stranger = await platform.customer_of(f"telegram:{TG_USER}")
    assert stranger != ana

    await platform.tg("/link +1 (555) 123-0000")

    [code_sms] = [text for text in platform.sms_to() if "verification code" in text]
    code = code_in(code_sms)
    assert "number ending in 0000" in platform.telegram_replies()[-1]
    assert await platform.customer_of(f"telegram:{TG_USER}") == stranger  # nothing linked yet

    await platform.tg(code)

    assert platform.telegram_replies()[-1].startswith("Done:")
    assert await platform.customer_of(f"telegram:{TG_USER}") == ana
    assert await platform.assurance_of(f"sms:{PHONE}") is Assurance.VERIFIED
    await platform.tg("what happened with my bill?")
    assert "charged twice" in platform.telegram_replies()[-1]  # the offline template shows the memory

    stored = await everything_stored(platform.served)
    assert code not in stored and code not in caplog.text
    assert "123-0000" not in caplog.text and PHONE not in caplog.text
    async with platform.served.hub.db.session() as session:
        assert replay(await ledger(session)) == await current_state(session)
        kinds = [e.kind for e in await session.scalars(select(IdentityEvent).order_by(IdentityEvent.id))]
    assert kinds[-2:] == ["merge", "link"]  # the claimant joined Ana; her number is now verified


async def test_a_code_by_email_links_the_mailbox(platform: Platform) -> None:
    await platform.tg("hi")
    await platform.tg("this is Ana, my email is Ana@Example.com")
    [mail] = platform.relay.messages
    assert mail.rcpt_tos == (ANA_MAIL,)
    body = mail.message.get_body(preferencelist=("plain",))
    assert body is not None
    await platform.tg(code_in(body.get_content()))
    assert platform.telegram_replies()[-1].startswith("Done:")
    assert await platform.customer_of(f"email:{ANA_MAIL}") == await platform.customer_of(
        f"telegram:{TG_USER}"
    )
    assert await platform.assurance_of(f"email:{ANA_MAIL}") is Assurance.VERIFIED


async def test_five_wrong_codes_lock_the_request(platform: Platform) -> None:
    await platform.sms("my router keeps dropping the wifi")
    await platform.tg("/link +15551230000")
    code = code_in(platform.sms_to()[-1])
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    for _ in range(5):
        await platform.tg(wrong)
    assert "locked" in platform.telegram_replies()[-1]
    await platform.tg(code)  # even the right code: the request is locked
    assert "locked" in platform.telegram_replies()[-1]
    assert await platform.customer_of(f"telegram:{TG_USER}") != await platform.customer_of(f"sms:{PHONE}")
    async with platform.served.hub.db.session() as session:
        [challenge] = list(await session.scalars(select(LinkChallenge)))
    assert challenge.status == "locked" and challenge.attempts == 5
    assert code not in await everything_stored(platform.served)


async def test_an_expired_code_fails(platform: Platform) -> None:
    await platform.sms("my router keeps dropping the wifi")
    await platform.tg("/link +15551230000")
    code = code_in(platform.sms_to()[-1])
    async with platform.served.hub.db.session() as session:  # eleven minutes later
        await session.execute(update(LinkChallenge).values(expires_at=utcnow() - timedelta(minutes=1)))
    await platform.tg(code)
    assert "expired" in platform.telegram_replies()[-1]
    assert await platform.customer_of(f"telegram:{TG_USER}") != await platform.customer_of(f"sms:{PHONE}")


async def test_an_unverified_email_cannot_claim_a_phone(platform: Platform) -> None:
    await platform.sms("my router keeps dropping the wifi")
    await platform.email("/link +15551230000")
    assert not any("verification code" in text for text in platform.sms_to())
    [reply] = platform.relay.messages
    body = reply.message.get_body(preferencelist=("plain",))
    assert body is not None and "only link addresses in a conversation we can verify" in body.get_content()
    async with platform.served.hub.db.session() as session:
        assert list(await session.scalars(select(LinkChallenge))) == []


async def test_telegram_vouches_for_the_senders_own_phone(platform: Platform) -> None:
    await platform.sms("I was charged twice for the March invoice")
    contact = {"phone_number": "15551230000", "first_name": "Ana", "user_id": TG_USER}
    await platform.tg(contact=contact)
    assert "phone number is now linked" in platform.telegram_replies()[-1]
    assert await platform.customer_of(f"telegram:{TG_USER}") == await platform.customer_of(f"sms:{PHONE}")
    assert await platform.assurance_of(f"sms:{PHONE}") is Assurance.PLATFORM_ATTESTED

    someone_else = {"phone_number": "+15559990000", "first_name": "Bo", "user_id": 777}
    await platform.tg(contact=someone_else)
    assert await platform.customer_of("sms:+15559990000") != await platform.customer_of(f"telegram:{TG_USER}")


async def test_an_unverified_email_learns_nothing_from_the_other_channels(platform: Platform) -> None:
    await platform.sms("I was charged twice for the March invoice")
    ana = await platform.customer_of(f"sms:{PHONE}")
    # an admin linked the address earlier; this message still carries no proof that Ana sent it
    links = IdentityLinks(platform.served.hub.db, platform.served.hub.memory)
    await links.link(Address.parse(f"email:{ANA_MAIL}"), ana, actor="admin:test")
    await platform.email("I'm Ana, what was my billing issue?")
    [reply] = platform.relay.messages
    body = reply.message.get_body(preferencelist=("plain",))
    assert body is not None and "charged twice" not in body.get_content()

    await platform.sms("and what was my billing issue?")
    assert "charged twice" in platform.sms_to()[-1]
