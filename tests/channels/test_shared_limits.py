"""The adapters' limits shared by several processes (issue 13), against the local fake platforms.

Two adapters bound to two ``DatabaseLimits`` over two separate engines on one database stand in for two
hosts. Each test fails with the limits each process kept for itself (the code before): there, every
process paced, capped and remembered tokens on its own, so two let twice through. Exact waits are
asserted on an injected clock; the one test on real time asserts only a generous lower bound.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any

import aiosmtplib
import pytest
from pydantic import SecretStr

from channels.email import EmailAdapter
from channels.email_smtp import SmtpListener
from channels.slack import ChannelPacer, SlackAdapter
from channels.telegram import TelegramAdapter
from channels.telegram.pacing import TelegramPacer
from core.errors import PermanentDeliveryError, TransientDeliveryError, VerificationFailed
from core.messages import Address, InboundMessage, OutboundMessage
from core.ports import UsesSharedLimits
from core.settings import SlackSettings, TelegramSettings
from core.store.db import Database
from core.store.shared_limits import DatabaseLimits
from identity.normalize import normalize_address
from tests.channels.test_email import (
    OURS,
    Committer,
    fixture,
    inbound,
    make_settings,
    reply_to,
    signed_fields,
    webhook,
)
from tests.fakes.slack_api import FakeSlackAPI
from tests.fakes.smtp_relay import FakeSmtpRelay
from tests.fakes.telegram_api import DEFAULT_TOKEN, FakeTelegramAPI

SLACK_TOKEN = "xoxb-fake-token"
TEAM = "T123ABC456"


@asynccontextmanager
async def two_hosts(
    url: str, clock: Callable[[], float] | None = None
) -> AsyncIterator[list[DatabaseLimits]]:
    """The shared limits of two processes: one database, two engines."""
    dbs = [await Database.open(url), await Database.open(url, run_migrations=False)]
    try:
        yield [DatabaseLimits(db, clock=clock) for db in dbs]
    finally:
        for db in dbs:
            await db.aclose()


def bound(adapter: Any, limits: DatabaseLimits) -> Any:
    assert isinstance(adapter, UsesSharedLimits)
    adapter.bind_limits(limits)
    return adapter


# ----- 2. the email reply cap ------------------------------------------------------------------------


@pytest.fixture
def relay() -> Iterator[FakeSmtpRelay]:
    with FakeSmtpRelay() as fake:
        yield fake


async def test_the_reply_cap_counts_the_replies_of_every_process(
    database_url: str, relay: FakeSmtpRelay
) -> None:
    async with two_hosts(database_url) as limits:
        a, b = (
            bound(
                EmailAdapter(
                    make_settings(smtp_port=relay.port, max_replies_per_hour=2), normalize=normalize_address
                ),
                one,
            )
            for one in limits
        )
        parent = inbound("gmail_reply")
        relay.fail_next(451)  # a failed attempt on one host gives its slot back to all
        with pytest.raises(TransientDeliveryError):
            await b.send(reply_to(parent, key="r0"))
        await a.send(reply_to(parent, key="r1"))
        await b.send(reply_to(parent, key="r2"))
        with pytest.raises(PermanentDeliveryError):  # each host sent one; together they reached the cap
            await a.send(reply_to(parent, key="r3"))
        with pytest.raises(PermanentDeliveryError):
            await b.send(reply_to(parent, key="r4"))
        await a.send(reply_to(inbound("outlook_reply"), key="r5"))  # another recipient is not capped
    assert len(relay.messages) == 3


# ----- 3. inbound email webhook tokens ---------------------------------------------------------------


async def test_a_webhook_token_used_on_one_host_is_refused_on_another(database_url: str) -> None:
    async with two_hosts(database_url) as limits:
        a, b = (bound(EmailAdapter(make_settings(), normalize=normalize_address), one) for one in limits)
        fields = signed_fields()
        await a.verify(webhook(fixture("gmail_reply"), fields=fields))
        with pytest.raises(VerificationFailed) as replayed:
            await b.verify(webhook(fixture("gmail_reply"), fields=fields))
        assert replayed.value.status == 403
        await b.verify(webhook(fixture("gmail_reply")))  # a fresh token is fine on either host


# ----- 4. Slack channel pacing -------------------------------------------------------------------------


def slack_adapter(fake: FakeSlackAPI, pacer: ChannelPacer, **settings: Any) -> SlackAdapter:
    return SlackAdapter(
        SlackSettings(
            bot_token=SecretStr(SLACK_TOKEN),
            signing_secret=SecretStr("s"),
            api_base_url=fake.api_url,
            **settings,
        ),
        normalize=normalize_address,
        pacer=pacer,
        rate_limit_retries=0,
        server_error_retries=0,
    )


def slack_reply(text: str, channel: str = "C1") -> OutboundMessage:
    return OutboundMessage(
        channel="slack",
        recipient=Address(channel="slack", handle=f"{TEAM}:U123ABC456"),
        text=text,
        idempotency_key=f"reply-{text}",
        reply_target={"channel": channel, "thread_ts": "1355517523.000005"},
    )


class TimedSlackAPI(FakeSlackAPI):
    """The fake, noting when each post arrived (its own clock, in its server thread)."""

    def __init__(self) -> None:
        super().__init__(token=SLACK_TOKEN)
        self.arrived: list[float] = []

    def _post(self, params: dict[str, Any]) -> dict[str, Any]:
        self.arrived.append(time.monotonic())
        return super()._post(params)


async def test_slack_pacing_is_one_queue_per_channel_for_every_process(database_url: str) -> None:
    sleeps: list[float] = []

    async def record(delay: float) -> None:
        sleeps.append(delay)

    async with (
        FakeSlackAPI(token=SLACK_TOKEN) as fake,
        two_hosts(database_url, clock=lambda: 1_000.0) as limits,
    ):
        a, b = (
            bound(slack_adapter(fake, ChannelPacer(interval=1.0, burst=1, sleep=record)), one)
            for one in limits
        )
        try:
            for i, adapter in enumerate((a, b, a, b)):
                await adapter.send(slack_reply(f"part {i}"))
            await b.send(slack_reply("elsewhere", channel="C2"))  # another channel has its own slots
        finally:
            await a.aclose()
            await b.aclose()
    assert sleeps == [1.0, 2.0, 3.0]  # separately, each process would have waited [1.0] once
    assert len(fake.posted) == 5


async def test_slack_pacing_across_processes_on_the_database_clock(database_url: str) -> None:
    """Real time: two processes post three messages each into one channel at once, paced at one per
    0.3 s; the six posts arrive at least five intervals apart in all (each process alone: two)."""
    interval = 0.3
    async with TimedSlackAPI() as fake, two_hosts(database_url) as limits:
        a, b = (bound(slack_adapter(fake, ChannelPacer(interval=interval, burst=1)), one) for one in limits)
        try:
            await asyncio.gather(
                *(adapter.send(slack_reply(f"{n}-{i}")) for i in range(3) for n, adapter in enumerate((a, b)))
            )
        finally:
            await a.aclose()
            await b.aclose()
    arrived = sorted(fake.arrived)
    assert len(arrived) == 6
    assert arrived[-1] - arrived[0] >= 5 * interval * 0.8, arrived


# ----- 5. Telegram's send rate -----------------------------------------------------------------------


def telegram_reply(n: int, chat_id: int) -> OutboundMessage:
    group = chat_id < 0
    return OutboundMessage(
        channel="telegram",
        recipient=Address(channel="telegram", handle="4242"),
        text=f"reply {n}",
        idempotency_key=f"reply-{chat_id}-{n}",
        reply_target={"chat_id": chat_id, "chat_type": "supergroup" if group else "private"},
    )


@pytest.mark.parametrize(
    ("chat_ids", "waits"),
    [
        # one group: 20 a minute (a burst of 20, then one every 3 s), whichever process sends
        ([-100123] * 24, [3.0, 6.0, 9.0, 12.0]),
        # private chats: 30 a second per bot (a burst of 30, then one every 1/30 s)
        ([1000 + n for n in range(32)], [1 / 30, 2 / 30]),
    ],
    ids=["group", "overall"],
)
async def test_telegram_send_rate_is_the_bots_not_each_processs(
    database_url: str, chat_ids: list[int], waits: list[float]
) -> None:
    sleeps: list[float] = []

    async def record(delay: float) -> None:
        sleeps.append(delay)

    bot_id = DEFAULT_TOKEN.split(":", 1)[0]
    async with FakeTelegramAPI() as fake, two_hosts(database_url, clock=lambda: 1_000.0) as limits:
        settings = TelegramSettings(
            bot_token=SecretStr(DEFAULT_TOKEN), secret_token=SecretStr("s"), api_base_url=fake.api_base_url
        )
        a, b = (
            bound(
                TelegramAdapter(
                    settings, normalize=normalize_address, pacer=TelegramPacer(bot_id, sleep=record)
                ),
                one,
            )
            for one in limits
        )
        try:
            for n, chat_id in enumerate(chat_ids):
                await (a if n % 2 == 0 else b).send(telegram_reply(n, chat_id))
        finally:
            await a.aclose()
            await b.aclose()
    assert sleeps == pytest.approx(waits)  # separately, each process stays within its own burst
    assert len(fake.sent) == len(chat_ids)


# ----- 6. the Slack profile attestation --------------------------------------------------------------


async def test_a_senders_slack_profile_is_asked_for_once_by_all_processes(database_url: str) -> None:
    user = "U0ANA0001"
    sender = normalize_address(f"slack:{TEAM}:{user}")
    async with FakeSlackAPI(token=SLACK_TOKEN) as fake, two_hosts(database_url) as limits:
        fake.profile_emails[user] = "ana@example.com"
        a, b = (
            bound(slack_adapter(fake, ChannelPacer(interval=0), trusted_teams=[TEAM]), one) for one in limits
        )
        try:
            assert await a.attested_handles(sender) == [Address(channel="email", handle="ana@example.com")]
            assert await b.attested_handles(sender) == []  # asked for already, by the other host
            assert await a.attested_handles(sender) == []
        finally:
            await a.aclose()
            await b.aclose()
    assert [c.method for c in fake.calls].count("users.info") == 1


# ----- 7. the SMTP listener -------------------------------------------------------------------------


async def smtp_send(port: int, n: int) -> str:
    client = aiosmtplib.SMTP(
        hostname="127.0.0.1", port=port, start_tls=False, local_hostname="client.test", timeout=30
    )
    async with client:
        raw = fixture("gmail_reply").replace(b"Message-ID: <", f"Message-ID: <n{n}.".encode(), 1)
        _, response = await client.sendmail("ana.souza@example.com", [OURS], raw)
    return response


async def test_two_smtp_listeners_on_one_host_share_the_port() -> None:
    async def parse(raw: bytes, mail_from: str | None, rcpt: Any, peer: str | None) -> InboundMessage | None:
        return inbound("gmail_reply")

    committers = [Committer(), Committer()]
    listeners = [
        SmtpListener(
            listen="127.0.0.1:0", address=OURS, hostname="threadline.example", max_bytes=10**6, parse=parse
        )
    ]
    await listeners[0].start(committers[0])
    port = listeners[0].port
    assert port is not None
    listeners.append(
        SmtpListener(
            listen=f"127.0.0.1:{port}",
            address=OURS,
            hostname="threadline.example",
            max_bytes=10**6,
            parse=parse,
        )
    )
    try:
        await listeners[1].start(committers[1])  # before SO_REUSEPORT: OSError, address already in use
        assert listeners[1].port == port
        answers = [await smtp_send(port, n) for n in range(8)]
        assert all(answer.startswith("2.0.0 OK") for answer in answers)
        assert sum(len(c.messages) for c in committers) == 8  # the kernel spread them: each was taken once
        await listeners[0].stop()  # one process goes away: the other still serves the port
        assert (await smtp_send(port, 99)).startswith("2.0.0 OK")
    finally:
        for listener in listeners:
            await listener.stop()
