"""Email by IMAP (``channels.email_imap``): the real aioimaplib client against ``FakeImapServer``, a real
IMAP4rev1 server on a loopback socket that can offer no IDLE, push new mail during IDLE, drop the
connection and refuse to store a flag. The app-level tests (a reply through the SMTP relay, exactly once)
are at the end.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from channels import email_imap
from channels.email import EmailAdapter
from channels.email_imap import ImapConfig
from core.errors import ConfigError
from core.messages import Assurance, InboundMessage
from core.pipeline.inbox import Accepted
from core.settings import EmailSettings, Settings
from core.store.db import Database
from core.store.leases import NamedLeases
from identity.normalize import normalize_address
from tests.apphost import app_settings, serving
from tests.fakes.imap_server import FakeImapServer
from tests.fakes.smtp_relay import FakeSmtpRelay

OURS = "support@threadline.example"
AUTHSERV = "mx.threadline.example"
PASSWORD = "imap-password-do-not-leak"
FIXTURES = Path(__file__).parent / "fixtures" / "email"


def mail(
    n: int, *, sender: str = "ana.souza@example.com", auth: str | None = AUTHSERV, text: str = ""
) -> bytes:
    """A customer's mail as the mailbox provider stored it: its verdict above its own trace field."""
    verdict = f"Authentication-Results: {auth}; dmarc=pass header.from=example.com\r\n" if auth else ""
    return (
        f"{verdict}Received: from mail.example.com ([198.51.100.7]) by {AUTHSERV}; 1 Dec 2026\r\n"
        f"From: Ana <{sender}>\r\nTo: {OURS}\r\nSubject: Order {n}\r\n"
        f"Message-ID: <imap-{n}@mail.example.com>\r\nMIME-Version: 1.0\r\n"
        f"Content-Type: text/plain; charset=utf-8\r\n\r\n{text or f'Where is my order number {n}?'}\r\n"
    ).encode()


def imap_settings(server: FakeImapServer, **overrides: object) -> EmailSettings:
    values: dict[str, object] = {
        "address": f"Threadline Support <{OURS}>",
        "smtp_host": "127.0.0.1",
        "smtp_port": 1,
        "authserv_id": AUTHSERV,
        "imap_host": "127.0.0.1",
        "imap_port": server.port,
        "imap_username": server.username,
        "imap_password": SecretStr(server.password),
        "imap_tls": False,
        "imap_poll_seconds": 0.1,
    }
    values.update(overrides)
    return EmailSettings.model_validate(values)


class Committer:
    """The ``accept`` the hub passes: records, can block until released, can fail."""

    def __init__(self) -> None:
        self.messages: list[InboundMessage] = []
        self.keys: set[str] = set()
        self.release = asyncio.Event()
        self.release.set()
        self.called = asyncio.Event()
        self.error: Exception | None = None

    async def __call__(self, message: InboundMessage) -> Accepted:
        self.called.set()
        await self.release.wait()
        if self.error is not None:
            raise self.error
        duplicate = message.provider_message_id in self.keys
        self.keys.add(message.provider_message_id)
        self.messages.append(message)
        return Accepted(inbox_id=len(self.messages), duplicate=duplicate)


async def until(condition: Callable[[], bool], *, timeout: float = 15.0) -> None:
    """Wait for ``condition`` (a hang guard, not a performance assert)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "timed out waiting"
        await asyncio.sleep(0.02)


@pytest.fixture
def server() -> Iterator[FakeImapServer]:
    with FakeImapServer(password=PASSWORD) as fake:
        yield fake


@pytest.fixture
def polling_server() -> Iterator[FakeImapServer]:
    with FakeImapServer(password=PASSWORD, idle=False) as fake:
        yield fake


async def started(settings: EmailSettings, committer: Committer) -> EmailAdapter:
    adapter = EmailAdapter(settings, normalize=normalize_address)
    await adapter.start_inbound(committer)
    return adapter


@pytest.fixture
async def running(server: FakeImapServer) -> AsyncIterator[tuple[EmailAdapter, Committer]]:
    committer = Committer()
    adapter = await started(imap_settings(server, imap_poll_seconds=3600), committer)
    try:
        yield adapter, committer
    finally:
        await adapter.stop_inbound()


# --- configuration ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "missing"),
    [
        ({"imap_host": "imap.example.com"}, "THREADLINE_EMAIL__IMAP_USERNAME"),
        ({"imap_host": "imap.example.com", "imap_username": "u"}, "THREADLINE_EMAIL__IMAP_PASSWORD"),
        ({"imap_host": "imap.example.com", "imap_password": "p"}, "THREADLINE_EMAIL__IMAP_USERNAME"),
        ({"imap_username": "u", "imap_password": "p"}, "THREADLINE_EMAIL__IMAP_HOST"),
        (
            {"imap_host": "imap.example.com", "imap_username": "u", "imap_password": "p", "imap_tls": False},
            "THREADLINE_EMAIL__IMAP_TLS",
        ),
    ],
)
def test_partial_imap_configuration_refuses_to_start_naming_the_setting(
    values: dict[str, object], missing: str
) -> None:
    settings = EmailSettings.model_validate({"address": OURS, "smtp_host": "127.0.0.1", **values})
    with pytest.raises(ConfigError) as caught:
        EmailAdapter(settings, normalize=normalize_address)
    assert caught.value.setting == missing
    assert missing in str(caught.value)


def test_imap_alone_is_an_inbound_path_and_turns_the_channel_on() -> None:
    settings = Settings(
        email=EmailSettings(
            address=OURS,
            smtp_host="smtp.example.com",
            imap_host="imap.example.com",
            imap_username="u",
            imap_password=SecretStr("p"),
        )
    )
    settings.check()  # no SMTP listener, no webhook key: IMAP is enough
    assert "email" in settings.enabled_channels()
    with pytest.raises(ConfigError) as caught:
        Settings(email=EmailSettings(imap_host="imap.example.com")).check()
    assert caught.value.setting == "THREADLINE_EMAIL__ADDRESS"


async def test_the_password_is_in_no_repr(
    server: FakeImapServer, running: tuple[EmailAdapter, Committer]
) -> None:
    adapter, _ = running
    settings = imap_settings(server)
    config = ImapConfig.from_settings(settings)
    for text in (repr(adapter), repr(adapter.imap), repr(config), repr(settings), str(settings)):
        assert PASSWORD not in text
    assert OURS not in repr(config)  # the username is an address


async def test_a_wrong_password_refuses_to_start_clearly(server: FakeImapServer) -> None:
    adapter = EmailAdapter(
        imap_settings(server, imap_password=SecretStr("wrong-password")), normalize=normalize_address
    )
    with pytest.raises(ConfigError) as caught:
        await adapter.start_inbound(Committer())
    assert caught.value.setting == "THREADLINE_EMAIL__IMAP_PASSWORD"
    assert "refused the login" in str(caught.value) and "wrong-password" not in str(caught.value)
    assert server.refused_logins == 1 and adapter.imap is None


async def test_an_unknown_mailbox_refuses_to_start(server: FakeImapServer) -> None:
    adapter = EmailAdapter(imap_settings(server, imap_mailbox="Support"), normalize=normalize_address)
    with pytest.raises(ConfigError) as caught:
        await adapter.start_inbound(Committer())
    assert caught.value.setting == "THREADLINE_EMAIL__IMAP_MAILBOX"


# --- receiving ------------------------------------------------------------------------------------


async def test_unseen_mail_is_committed_then_marked_seen_never_before(server: FakeImapServer) -> None:
    uid = server.deliver(mail(1))
    committer = Committer()
    committer.release.clear()  # the commit hangs: the message must stay unseen meanwhile
    adapter = await started(imap_settings(server), committer)
    try:
        await asyncio.wait_for(committer.called.wait(), 15)
        await asyncio.sleep(0.3)
        assert not server.seen(uid), "flagged \\Seen before the commit returned"
        assert server.commands["STORE"] == 0
        committer.release.set()
        await until(lambda: server.seen(uid))
        [message] = committer.messages
        assert message.provider_message_id == f"<imap-1@mail.example.com>|{OURS}"
        assert message.sender.handle == "ana.souza@example.com"
        assert message.sender_assurance is Assurance.PLATFORM_ATTESTED  # the provider's own verdict
    finally:
        await adapter.stop_inbound()


async def test_a_failed_commit_leaves_the_message_unseen_and_it_comes_again(
    server: FakeImapServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(email_imap, "RETRY_SECONDS", 0.1)
    uid = server.deliver(mail(2))
    committer = Committer()
    committer.error = RuntimeError("database is locked")
    adapter = await started(imap_settings(server), committer)
    try:
        await asyncio.wait_for(committer.called.wait(), 15)
        await until(lambda: server.commands["SEARCH"] >= 2)  # the next round came
        assert not server.seen(uid) and not committer.messages
        committer.error = None
        await until(lambda: server.seen(uid))
        assert len(committer.messages) == 1
    finally:
        await adapter.stop_inbound()


async def test_a_failed_store_leaves_it_unseen_and_the_repeat_is_a_duplicate(
    server: FakeImapServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(email_imap, "RETRY_SECONDS", 0.1)
    server.fail_store(1)
    uid = server.deliver(mail(3))
    committer = Committer()
    adapter = await started(imap_settings(server), committer)
    try:
        await until(lambda: server.seen(uid))
        # committed twice (the flag failed the first time), the second a no-op by its Message-ID
        assert [m.provider_message_id for m in committer.messages] == [
            f"<imap-3@mail.example.com>|{OURS}"
        ] * 2
        assert server.commands["STORE"] == 2
    finally:
        await adapter.stop_inbound()


async def test_polling_without_idle(polling_server: FakeImapServer) -> None:
    committer = Committer()
    adapter = await started(imap_settings(polling_server), committer)
    try:
        await until(lambda: polling_server.commands["SEARCH"] >= 1)
        uid = polling_server.deliver(mail(4))
        await until(lambda: polling_server.seen(uid))
        assert len(committer.messages) == 1
        assert polling_server.commands["IDLE"] == 0
        assert polling_server.commands["SEARCH"] >= 2  # found by a later poll
    finally:
        await adapter.stop_inbound()


async def test_mail_arriving_during_idle_is_picked_up(
    server: FakeImapServer, running: tuple[EmailAdapter, Committer]
) -> None:
    _, committer = running  # polls every hour: only the EXISTS push can bring it in
    await until(lambda: server.commands["IDLE"] >= 1)
    await asyncio.sleep(0.1)
    uid = server.deliver(mail(5))
    await until(lambda: server.seen(uid))
    assert [m.provider_message_id for m in committer.messages] == [f"<imap-5@mail.example.com>|{OURS}"]
    await until(lambda: server.commands["IDLE"] >= 2)  # and it went back to IDLE


@pytest.mark.parametrize("command", ["SEARCH", "FETCH", "STORE"])
async def test_mail_announced_with_another_commands_answer_is_not_missed(
    server: FakeImapServer, running: tuple[EmailAdapter, Committer], command: str
) -> None:
    """Mail that lands while a round runs is announced once, with that command's answer, not as an IDLE
    push: the poller must see it there (aioimaplib drops an EXISTS that comes with a SEARCH, FETCH or
    STORE answer), or it idles until the next renewal, ten minutes later."""
    _, committer = running  # polls every hour, and the server pushes nothing for this mail
    await until(lambda: server.commands["IDLE"] >= 1)
    server.deliver_during(command, mail(9))
    first = server.deliver(mail(8))  # pushed: the round it starts sends SEARCH, FETCH and STORE
    await until(lambda: server.seen(first))
    await until(lambda: len(server.mails) == 2 and not server.unseen())
    assert [m.provider_message_id for m in committer.messages] == [
        f"<imap-{n}@mail.example.com>|{OURS}" for n in (8, 9)
    ]


async def test_a_server_repeating_an_unchanged_count_is_not_taken_for_new_mail() -> None:
    """Every answer carries ``* N EXISTS`` with N unchanged: the poller goes to IDLE and stays there (it
    does not take each repeat for new mail and search again and again), and real new mail still comes."""
    with FakeImapServer(password=PASSWORD, repeat_count=True) as server:
        server.deliver(mail(10))
        committer = Committer()
        adapter = await started(imap_settings(server, imap_poll_seconds=3600), committer)
        try:
            await until(lambda: not server.unseen() and server.commands["IDLE"] >= 1)
            searches = server.commands["SEARCH"]
            await asyncio.sleep(0.5)
            assert server.commands["SEARCH"] == searches and server.commands["IDLE"] == 1
            uid = server.deliver(mail(11))  # pushed during IDLE: a new count
            await until(lambda: server.seen(uid))
            assert len(committer.messages) == 2
        finally:
            await adapter.stop_inbound()


async def test_a_dropped_connection_is_survived(
    server: FakeImapServer, running: tuple[EmailAdapter, Committer]
) -> None:
    adapter, committer = running
    await until(lambda: server.commands["IDLE"] >= 1)
    server.drop_next("FETCH")  # the round the push starts dies on its first FETCH
    uid = server.deliver(mail(6))
    await until(lambda: server.seen(uid))
    assert adapter.imap is not None and adapter.imap.sessions == 2
    assert server.logins >= 3  # the start-up check, the first session, the one after the drop
    assert len(committer.messages) == 1
    later = server.deliver(mail(7))  # and the new session idles and is pushed to as the first did
    await until(lambda: server.seen(later))


async def test_a_drop_during_idle_is_noticed(
    server: FakeImapServer, running: tuple[EmailAdapter, Committer]
) -> None:
    adapter, committer = running
    await until(lambda: server.commands["IDLE"] >= 1)
    assert adapter.imap is not None
    server.drop_connections()
    await until(lambda: adapter.imap is not None and adapter.imap.sessions == 2)
    uid = server.deliver(mail(8))
    await until(lambda: server.seen(uid))
    assert len(committer.messages) == 1


async def test_forged_authentication_results_vouch_for_nobody(
    server: FakeImapServer, running: tuple[EmailAdapter, Committer]
) -> None:
    _, committer = running
    forged = (FIXTURES / "forged_auth.eml").read_bytes()  # another authserv-id says dmarc=pass
    # our own authserv-id, written by the sender: below the provider's trace field, so not the provider's
    below = mail(9, auth=None).replace(
        b"From:",
        f"Authentication-Results: {AUTHSERV}; dmarc=pass header.from=example.com\r\nFrom:".encode(),
        1,
    )
    uids = [server.deliver(forged), server.deliver(below), server.deliver(mail(10))]
    await until(lambda: all(server.seen(uid) for uid in uids))
    assurance = {m.provider_message_id.split("|")[0]: m.sender_assurance for m in committer.messages}
    assert assurance == {
        "<forged-0001@attacker.example>": Assurance.UNVERIFIED,
        "<imap-9@mail.example.com>": Assurance.UNVERIFIED,
        "<imap-10@mail.example.com>": Assurance.PLATFORM_ATTESTED,
    }


async def test_noise_unreadable_and_oversized_mail_is_marked_seen_never_committed(
    server: FakeImapServer,
) -> None:
    committer = Committer()
    adapter = EmailAdapter(imap_settings(server, imap_poll_seconds=3600), normalize=normalize_address)
    adapter.max_body_bytes = 4096
    auto_reply = (FIXTURES / "auto_reply.eml").read_bytes()
    no_from = b"To: support@threadline.example\r\nSubject: hi\r\nMessage-ID: <x@y>\r\n\r\nno sender\r\n"
    oversized = mail(11, text="x" * 5000)
    uids = [server.deliver(auto_reply), server.deliver(no_from), server.deliver(oversized)]
    good = server.deliver(mail(12))
    await adapter.start_inbound(committer)
    try:
        await until(lambda: all(server.seen(uid) for uid in [*uids, good]))
        assert [m.provider_message_id for m in committer.messages] == [f"<imap-12@mail.example.com>|{OURS}"]
        assert server.commands["FETCH"] == 1 + 3  # sizes once; the oversized one's body never fetched
    finally:
        await adapter.stop_inbound()


async def test_stop_ends_promptly_while_idling(
    running: tuple[EmailAdapter, Committer], server: FakeImapServer
) -> None:
    adapter, _ = running
    await until(lambda: server.commands["IDLE"] >= 1)
    await asyncio.wait_for(adapter.stop_inbound(), 5)  # a hang guard: IDLE waits up to 10 minutes
    assert adapter.imap is None
    await until(lambda: server.connections == 0)


async def test_no_address_or_body_in_the_logs(
    server: FakeImapServer, running: tuple[EmailAdapter, Committer], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG", logger="channels")
    await until(lambda: server.commands["IDLE"] >= 1)
    uid = server.deliver(mail(13, text="my card is 4111 1111 1111 1111"))
    await until(lambda: server.seen(uid))
    text = caplog.text
    assert "ana.souza" not in text and "4111" not in text and PASSWORD not in text
    assert "imap uid 1: message committed" in text


# --- through the app: a reply by SMTP, exactly once -----------------------------------------------


def inbox_has(db: Path, message_id: str) -> bool:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10) as conn:
        found = conn.execute(
            "SELECT count(*) FROM inbox WHERE provider_message_id = ?", (f"{message_id}|{OURS}",)
        ).fetchone()[0]
    conn.close()
    return bool(found)


async def test_through_the_app_a_mail_is_answered_once_and_seen_only_after_its_inbox_row(
    tmp_path: Path, server: FakeImapServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(email_imap, "RETRY_SECONDS", 0.1)
    db = tmp_path / "threadline.db"
    rows_at_store: list[bool] = []
    server.on_store = lambda uid: rows_at_store.append(inbox_has(db, f"<imap-{uid}@mail.example.com>"))
    with FakeSmtpRelay() as relay:
        settings = app_settings(
            tmp_path, email=imap_settings(server, smtp_port=relay.port, imap_poll_seconds=3600)
        )
        async with serving(settings) as served:
            first = server.deliver(mail(1))
            await until(lambda: len(relay.messages) == 1 and server.seen(first), timeout=30)
            # a redelivery: the flag cannot be stored once, so the next round fetches the message again
            server.fail_store(1)
            second = server.deliver(mail(2))
            await until(lambda: server.seen(second), timeout=30)
            await until(lambda: len(relay.messages) == 2, timeout=30)
            await asyncio.sleep(0.5)  # time for a wrong second reply to show
            assert await served.inbox_rows("email") == 2
        answered = sorted(str(m.message["In-Reply-To"]) for m in relay.messages)
    assert answered == ["<imap-1@mail.example.com>", "<imap-2@mail.example.com>"]
    assert all(m.rcpt_tos == ("ana.souza@example.com",) for m in relay.messages)
    # the flag was set twice (the refused STORE flags nothing), each time once the inbox row existed
    assert rows_at_store == [True, True]
    assert server.commands["STORE"] == 3


# --- several processes on one database: one reads the mailbox at a time -----------------------------


async def test_one_poller_per_mailbox_among_processes_and_a_takeover_when_it_stops(
    server: FakeImapServer, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(email_imap, "LEASE_SECONDS", 0.6)
    db = await Database.open(database_url)
    committers = [Committer(), Committer()]
    adapters = [EmailAdapter(imap_settings(server), normalize=normalize_address) for _ in committers]
    for adapter, owner in zip(adapters, ("host-a", "host-b"), strict=True):
        adapter.bind_leases(NamedLeases(db, owner=owner))
    try:
        for adapter, committer in zip(adapters, committers, strict=True):
            await adapter.start_inbound(committer)
        first = server.deliver(mail(20))
        await until(lambda: server.seen(first))
        await asyncio.sleep(0.5)  # time for the other one to poll too, were it allowed
        sessions = [adapter.imap.sessions for adapter in adapters if adapter.imap is not None]
        assert sorted(sessions) == [0, 1]
        holder = sessions.index(1)
        await adapters[holder].stop_inbound()  # releases the lease: the other takes over
        second = server.deliver(mail(21))
        await until(lambda: server.seen(second))
        assert [len(c.messages) for c in committers][1 - holder] == 1
        assert [len(c.messages) for c in committers][holder] == 1
    finally:
        for adapter in adapters:
            await adapter.stop_inbound()
        await db.aclose()
