"""Outbound exactly once where the platform lets us: a Twilio send we never recorded is recognised.

The adapter gives up waiting for Twilio (a timeout) after Twilio has in fact taken the message. Without
more, the retry would send the SMS a second time. Twilio's status report names the reply and the part
(they are in the callback URL we gave it), so it records the send, and the retry sends nothing.
"""

from __future__ import annotations

import asyncio
import functools
from pathlib import Path
from urllib.parse import urlencode, urlsplit

from sqlalchemy import select
from twilio.request_validator import RequestValidator

from channels.base import WebhookRequest
from channels.sms import STATUS_PATH, TwilioSmsAdapter
from core.messages import Address, Assurance, InboundMessage
from core.pipeline.hub import Hub
from core.store.models import OutboxRow
from identity.normalize import normalize_address
from tests.core.harness import make_settings, running_hub
from tests.fakes.twilio_api import FakeTwilioAPI
from tests.platforms import twilio_settings

PUBLIC = "https://bot.example.com"
ACCOUNT_SID = "AC" + "9" * 32
AUTH_TOKEN = "reconcile-auth-token"
OUR_NUMBER = "+15558675310"
CUSTOMER = "+15551230000"


def adapter_for(fake: FakeTwilioAPI) -> TwilioSmsAdapter:
    settings = twilio_settings(fake, account_sid=ACCOUNT_SID, auth_token=AUTH_TOKEN, from_number=OUR_NUMBER)
    normalize = functools.partial(normalize_address, default_region="US")
    return TwilioSmsAdapter(settings, public_base_url=PUBLIC, normalize=normalize, timeout=0.5)


async def sent_but_not_recorded(hub: Hub, fake: FakeTwilioAPI) -> dict[str, str]:
    """Twilio answers too late: our attempt times out, and only then does Twilio keep the message."""
    fake.delay = 1.5
    await hub.accept(
        InboundMessage(
            channel="sms",
            provider_message_id="SM" + "1" * 32,
            sender=Address(channel="sms", handle=CUSTOMER),
            text="is my refund on its way?",
            reply_target={"to": CUSTOMER},
            sender_assurance=Assurance.PLATFORM_ATTESTED,
            private=True,
        )
    )
    for _ in range(1200):  # bounded: a minute at most
        if fake.messages:
            break
        await asyncio.sleep(0.05)
    fake.delay = 0.0
    [sent] = fake.messages
    async with hub.db.session() as session:
        row = await session.scalar(select(OutboxRow))
    assert row is not None and row.status == "pending" and row.parts_sent == 0  # we do not know it went
    return sent


async def test_twilios_report_records_the_send_and_the_retry_sends_nothing(tmp_path: Path) -> None:
    async with FakeTwilioAPI(account_sid=ACCOUNT_SID, auth_token=AUTH_TOKEN) as fake:
        adapter = adapter_for(fake)
        async with running_hub(make_settings(tmp_path, backoff_base=6, backoff_max=6), adapter) as hub:
            sent = await sent_but_not_recorded(hub, fake)
            sid = next(m["sid"] for m in fake._messages)

            # Twilio calls the status URL it was given, signed over that exact URL
            url = sent["StatusCallback"]
            form = {"MessageSid": sid, "MessageStatus": "sent", "AccountSid": ACCOUNT_SID, "To": CUSTOMER}
            signature = RequestValidator(AUTH_TOKEN).compute_signature(url, form)
            request = WebhookRequest(
                method="POST",
                path=STATUS_PATH,
                query_string=urlsplit(url).query,
                headers={
                    "content-type": "application/x-www-form-urlencoded",
                    "x-twilio-signature": signature,
                },
                body=urlencode(form).encode(),
            )
            await adapter.verify(request)
            for update in (await adapter.parse(request)).status_updates:
                await hub.record_status("sms", update)

            assert await hub.wait_idle(timeout=60) == {"inbox": 0, "outbox": 0, "memory": 0}
            async with hub.db.session() as session:
                row = await session.scalar(select(OutboxRow))
    assert len(fake.messages) == 1  # one SMS, not two
    assert row is not None and row.status == "sent" and row.provider_message_ids == [sid]


async def test_without_the_report_the_retry_sends_again(tmp_path: Path) -> None:
    """The residual window no API closes: a retry before the platform's report arrives sends twice."""
    async with FakeTwilioAPI(account_sid=ACCOUNT_SID, auth_token=AUTH_TOKEN) as fake:
        adapter = adapter_for(fake)
        async with running_hub(make_settings(tmp_path, backoff_base=3, backoff_max=3), adapter) as hub:
            await sent_but_not_recorded(hub, fake)
            assert await hub.wait_idle(timeout=60) == {"inbox": 0, "outbox": 0, "memory": 0}
    assert len(fake.messages) >= 2  # the customer got the same SMS again
