"""Self-service linking on proof, platform attestation and recall gating, end to end.

The app is served over real HTTP with the Telegram, Twilio and email adapters pointed at local fakes:
a one-time code really goes out as an SMS (or an email) and really comes back as a Telegram message.
"""

from __future__ import annotations

import logging
import re
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiosmtplib
import pytest
from pydantic import SecretStr
from sqlalchemy import select, update

from core.logs import QUIET_LOGGERS
from core.messages import Address, Assurance
from core.pipeline.strangers import ACKNOWLEDGEMENT
from core.settings import EmailSettings
from core.store.models import IdentityEvent, InboxRow, LinkChallenge, OutboxRow, Turn, utcnow
from identity.ledger import current_state, ledger, replay
from identity.linking import IdentityLinks
from identity.suggestions import merge_suggestions
from tests.apphost import Served, app_settings, serving
from tests.fakes.smtp_relay import FakeSmtpRelay
from tests.fakes.telegram_api import FakeTelegramAPI
from tests.fakes.twilio_api import FakeTwilioAPI
from tests.platforms import (
    post_mailgun_mime,
    post_telegram_message,
    post_twilio_sms,
    telegram_settings,
    twilio_settings,
)

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
AUTHSERV = "mx.threadline.example"
# what the sender writes into its own mail: our authserv-id vouching for the From: domain
FORGED_PASS = f"Authentication-Results: {AUTHSERV}; dmarc=pass header.from=example.com\r\n"
# the trace field a receiving MTA prepends; the provider's A-R stands above it, the sender's below
TRACE = (
    "Received: from mail.example.com ([198.51.100.7]) by mx.threadline.example; 1 Dec 2026 10:00 +0000\r\n"
)


@dataclass
class Platform:
    served: Served
    twilio: FakeTwilioAPI
    telegram: FakeTelegramAPI
    relay: FakeSmtpRelay
    next_update: int = 1000

    # ----- inbound, signed as each platform signs ------------------------------------------------

    async def sms(self, text: str, *, phone: str = PHONE) -> None:
        await post_twilio_sms(
            self.served.client,
            public=PUBLIC,
            account_sid=ACCOUNT_SID,
            auth_token=AUTH_TOKEN,
            to=OUR_NUMBER,
            phone=phone,
            text=text,
        )
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
        await post_telegram_message(
            self.served.client, secret=TG_SECRET, update_id=self.next_update, message=body
        )
        await self.idle()

    async def email(
        self, text: str, *, sender: str = ANA_MAIL, headers: str = "", via: str = "webhook"
    ) -> None:
        """A mail from ``sender`` (``headers`` written first, as the sender wrote them), by the signed
        webhook or through the app's own SMTP listener (``via="smtp"``, connecting from 127.0.0.1)."""
        message_id = f"<{secrets.token_hex(8)}@example.com>"
        raw = (
            f"{headers}From: {sender}\r\nTo: {OURS}\r\nSubject: help\r\nMessage-ID: {message_id}\r\n"
            "Date: Mon, 3 Mar 2025 09:30:51 -0800\r\nContent-Type: text/plain; charset=utf-8\r\n"
            f"\r\n{text}\r\n"
        ).encode()
        if via == "smtp":
            adapter = self.served.app.state.adapters["email"]
            assert adapter.smtp_port is not None
            client = aiosmtplib.SMTP(
                hostname="127.0.0.1", port=adapter.smtp_port, start_tls=False, timeout=30
            )
            async with client:
                errors, _ = await client.sendmail(sender, [OURS], raw)
            assert not errors
            await self.idle()
            return
        await post_mailgun_mime(self.served.client, key=MAIL_KEY, recipient=OURS, sender=sender, raw=raw)
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
async def platform(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Platform]:
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
                    authserv_id=AUTHSERV,
                    smtp_listen="127.0.0.1:0",
                    trusted_relays=request.param if hasattr(request, "param") else [],
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


async def test_a_claim_that_also_tells_a_fact_keeps_the_fact(platform: Platform) -> None:
    said = "my name is Ana Souza and my email is ana@example.com. The router is broken"
    await platform.tg(said)
    assert len(platform.relay.messages) == 1  # the code went to the mailbox
    customer = await platform.customer_of(f"telegram:{TG_USER}")
    memories = " ".join(m.text for m in await platform.served.hub.memory.list(customer))
    assert "Ana Souza" in memories and "router is broken" in memories.lower()
    async with platform.served.hub.db.session() as session:
        logged = list(await session.scalars(select(Turn.text).where(Turn.role == "customer")))
    assert logged == [said]
    code = code_in(platform.relay.messages[0].raw.decode())
    await platform.tg(code)
    assert platform.telegram_replies()[-1].startswith("Done:")
    assert code not in await everything_stored(platform.served)  # the code message is still scrubbed


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
    [reply] = platform.relay.messages  # the fixed acknowledgement, nothing else: anyone can write From:
    body = reply.message.get_body(preferencelist=("plain",))
    assert body is not None and body.get_content().strip() == ACKNOWLEDGEMENT
    async with platform.served.hub.db.session() as session:
        assert list(await session.scalars(select(LinkChallenge))) == []


async def test_telegram_vouches_for_the_senders_own_phone(platform: Platform) -> None:
    contact = {"phone_number": "15551230000", "first_name": "Ana", "user_id": TG_USER}  # no "+", as Telegram
    await platform.tg(contact=contact)
    assert "phone number is now linked" in platform.telegram_replies()[-1]
    await platform.sms("I was charged twice for the March invoice")
    assert await platform.customer_of(f"telegram:{TG_USER}") == await platform.customer_of(f"sms:{PHONE}")
    assert await platform.assurance_of(f"sms:{PHONE}") is Assurance.PLATFORM_ATTESTED

    someone_else = {"phone_number": "+15559990000", "first_name": "Bo", "user_id": 777}
    await platform.tg(contact=someone_else)
    assert await platform.customer_of("sms:+15559990000") != await platform.customer_of(f"telegram:{TG_USER}")


async def test_a_contact_without_plus_is_never_read_in_the_default_region(platform: Platform) -> None:
    """The attack: a Telegram user shares their own contact, 5016001234 (Belize, +501), and the hub read it
    as +1 501-600-1234, a US customer's number, merging the attacker into that customer."""
    victim = "+15016001234"
    await platform.sms("my order 7731 goes to 12 Elm Street", phone=victim)
    attacker = 777
    contact = {"phone_number": "5016001234", "first_name": "Mallory", "user_id": attacker}
    await platform.tg(contact=contact, user=attacker)
    assert await platform.customer_of(f"telegram:{attacker}") != await platform.customer_of(f"sms:{victim}")
    assert await platform.customer_of("sms:+5016001234") == await platform.customer_of(f"telegram:{attacker}")
    await platform.tg("where is my order going?", user=attacker)
    assert not any("Elm" in reply or "7731" in reply for reply in platform.telegram_replies(attacker))


async def test_a_contact_held_by_another_customer_is_a_suggestion_not_a_merge(platform: Platform) -> None:
    await platform.sms("my order 7731 goes to 12 Elm Street")
    owner = await platform.customer_of(f"sms:{PHONE}")
    contact = {"phone_number": PHONE, "first_name": "Ana", "user_id": TG_USER}
    await platform.tg(contact=contact)
    assert "our team will check it" in platform.telegram_replies()[-1]
    sharer = await platform.customer_of(f"telegram:{TG_USER}")
    assert sharer != owner
    await platform.tg("where is my order going?")
    assert not any("Elm" in reply for reply in platform.telegram_replies())
    suggestions = await merge_suggestions(platform.served.hub.db)
    assert [(s.customer_a, s.address_a, s.customer_b, s.address_b) for s in suggestions] == [
        (owner, f"sms:{PHONE}", sharer, f"telegram:{TG_USER}")
    ]
    async with platform.served.hub.db.session() as session:
        assert "merge" not in [event.kind for event in await ledger(session)]


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


async def _victim_with_a_linked_mailbox(platform: Platform) -> str:
    await platform.sms("I was charged twice for the March invoice; my card ends 4242")
    victim = await platform.customer_of(f"sms:{PHONE}")
    links = IdentityLinks(platform.served.hub.db, platform.served.hub.memory)
    await links.link(Address.parse(f"email:{ANA_MAIL}"), victim, actor="admin:test")
    return victim


@pytest.mark.parametrize(
    ("via", "forged"),
    [
        pytest.param("webhook", TRACE + FORGED_PASS, id="webhook-below-trace"),
        pytest.param("webhook", FORGED_PASS, id="webhook-no-trace"),
        pytest.param("smtp", FORGED_PASS, id="listener"),
        pytest.param("smtp", TRACE + FORGED_PASS, id="listener-below-trace"),
    ],
)
async def test_a_forged_authentication_results_header_takes_over_nothing(
    platform: Platform, via: str, forged: str
) -> None:
    """The attack: a mail from anywhere, ``From: ana@example.com`` and our authserv-id saying dmarc=pass,
    asks to link the attacker's phone; the code would go to the attacker, who sends it back the same way."""
    victim = await _victim_with_a_linked_mailbox(platform)
    attacker_phone = "+15559990000"
    await platform.email(f"/link {attacker_phone}", headers=forged, via=via)
    codes = [text for text in platform.sms_to(attacker_phone) if "verification code" in text]
    if codes:  # what the old code did: finish the takeover
        await platform.email(code_in(codes[-1]), headers=forged, via=via)
    assert codes == []
    assert await platform.customer_of(f"sms:{attacker_phone}") != victim
    async with platform.served.hub.db.session() as session:
        assert list(await session.scalars(select(LinkChallenge))) == []


@pytest.mark.parametrize("platform", [["127.0.0.1/32"]], indirect=True)
async def test_our_own_relays_authentication_results_is_trusted(platform: Platform) -> None:
    await _victim_with_a_linked_mailbox(platform)
    await platform.email("/link +15559990000", headers=FORGED_PASS, via="smtp")  # from the trusted relay
    assert any("verification code" in text for text in platform.sms_to("+15559990000"))


async def test_the_providers_authentication_results_above_its_trace_is_trusted(platform: Platform) -> None:
    await _victim_with_a_linked_mailbox(platform)
    await platform.email("/link +15559990000", headers=FORGED_PASS + TRACE, via="webhook")
    assert any("verification code" in text for text in platform.sms_to("+15559990000"))
