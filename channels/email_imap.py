"""Inbound email by IMAP from a mailbox the team already has (``THREADLINE_EMAIL__IMAP_HOST``).

``ImapPoller`` runs in the app's event loop (aioimaplib), beside the SMTP listener and the webhook; its
connection, and the commands below, are ``channels.email_imap_session.ImapSession``:

1. connect (TLS from the first byte; plain IMAP only to a loopback host), ``LOGIN``, ``SELECT`` the
   mailbox (``imap_mailbox``);
2. a round: ``UID SEARCH UNSEEN``, then for the lowest ``BATCH`` UIDs, in UID (arrival) order, their
   ``RFC822.SIZE`` and ``UID FETCH uid BODY.PEEK[]``: *peek*, so fetching marks nothing seen. Each
   message goes through ``channels.email_ingest.ingest`` (the SMTP listener's own parse-and-commit step);
   only once its inbox row is committed is ``UID STORE uid +FLAGS.SILENT (\\Seen)`` sent. A crash between
   the commit and the flag leaves the message unseen: the next round fetches it again and the inbox's
   unique key (its Message-ID) makes it a no-op, then it is flagged. Nothing is answered twice;
3. then ``IDLE`` when ``CAPABILITY`` lists it (any push from the server starts a round; IDLE is re-issued
   every ``IDLE_RENEW_SECONDS``, well before the 29 minutes of RFC 2177), otherwise a sleep of
   ``imap_poll_seconds``; and again. A new-mail notice (``* N EXISTS``) comes once: pushed during IDLE,
   or with the answer to the command that ran when the mail landed (a SEARCH, FETCH or STORE of the
   round). The session notes every one as it is read (``ImapSession.count.mail``, cleared by each round before
   its SEARCH); one noted after that brings another round instead of the wait.

What is never committed, and why it still leaves the unseen set (else it would come back every round):
a message over the channel's size limit (``EmailAdapter.max_body_bytes``, 10 MiB, as the SMTP listener's
``552``), one that cannot be read and one the parser fails on are logged with their UID only and marked
seen, as is noise (auto-replies, lists, bounces: never answered). A failed commit leaves the message
unseen and the next round comes after ``RETRY_SECONDS``; so does a failed ``STORE``.

A dropped connection (aioimaplib's connection-lost callback, noticed even in IDLE) or any protocol error
ends the session: it reconnects after a backoff doubling from ``BACKOFF_BASE`` to ``BACKOFF_MAX``
seconds. A refused ``LOGIN`` or ``SELECT`` at start-up stops the start with a ``ConfigError`` naming the
setting; later it is logged and retried with the same backoff. ``stop`` cancels the loop and closes the
socket at once.

Trust: mail fetched from the team's own mailbox went through the mailbox provider's MTA, the border of our
domain: its ``Authentication-Results`` field (under ``authserv_id``) sits above the ``Received`` trace
field it prepended, and anything the sender wrote sits below it. That is the webhook's case,
``HeaderTrust.PROVIDER`` (``channels.email_auth``): a field naming us below the first trace field, or one
naming another authserv-id, vouches for nobody. A provider that writes its verdict below a trace field of
its own authenticates nobody here (fail closed): its senders get the reply policy of unauthenticated mail.

Several processes on one PostgreSQL database (scale mode): one polls at a time. The adapter is handed the
store's named leases (``core.ports.UsesNamedLeases``); the poller holds ``email-imap:<hash>`` while it
works, renews it every third of ``LEASE_SECONDS`` and stops its session when it loses it. A process killed
with ``kill -9`` renews nothing; another takes over once the lease lapses. Two pollers at once would only
repeat work (the Message-ID key), never answer twice.

Logs carry UIDs, counts and exception types: never an address, a subject or a body (aioimaplib's own
logger, which would print what it receives at DEBUG, is quieted in ``core.logs``). The password is a
``SecretStr``: in no repr, and aioimaplib scrubs it from its own log of the ``LOGIN`` line.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import functools
import hashlib
import logging
import ssl
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from ipaddress import ip_address
from typing import Any

from pydantic import SecretStr

from channels.base import AcceptFn
from channels.email_imap_session import ImapError, ImapSession, LoginRefused
from channels.email_ingest import Outcome, ingest
from core.errors import ConfigError
from core.messages import InboundMessage
from core.ports import NamedLease
from core.settings import EmailSettings, env_name

log = logging.getLogger(__name__)

# the raw message → the parsed one (``EmailAdapter._parse_imap``); None for noise; BadRequest if unreadable
ParseFn = Callable[[bytes], Awaitable[InboundMessage | None]]

RETRY_SECONDS = 5.0  # after a failed commit or STORE: the next round comes this soon, IDLE or not
BACKOFF_BASE = 1.0
BACKOFF_MAX = 60.0
BATCH = 50  # unseen messages handled per round; more are handled in the next round, at once
LEASE_SECONDS = 60.0

_LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain"})


@dataclass(frozen=True, slots=True, kw_only=True)
class ImapConfig:
    """The IMAP settings, complete and checked (``from_settings``); the username and password in no repr."""

    host: str
    port: int
    username: str = field(repr=False)
    password: SecretStr = field(repr=False)
    mailbox: str
    tls: bool
    poll_seconds: float

    @classmethod
    def from_settings(cls, settings: EmailSettings) -> ImapConfig | None:
        """None when IMAP is off (no host); ``ConfigError`` naming the setting when it is partly set."""
        host = (settings.imap_host or "").strip()
        username = (settings.imap_username or "").strip()
        password = settings.imap_password
        has_password = password is not None and bool(password.get_secret_value())
        if not host:
            if username or has_password:
                given = env_name("email", "imap_username" if username else "imap_password")
                raise ConfigError(
                    f"{env_name('email', 'imap_host')} is required when {given} is set",
                    setting=env_name("email", "imap_host"),
                )
            return None
        for key, present in (("imap_username", bool(username)), ("imap_password", has_password)):
            if not present:
                raise ConfigError(
                    f"{env_name('email', key)} is required when {env_name('email', 'imap_host')} is set",
                    setting=env_name("email", key),
                )
        if not settings.imap_tls and not _is_loopback(host):
            raise ConfigError(
                f"{env_name('email', 'imap_tls')}=false sends the mailbox password in clear text: "
                "allowed only to a loopback host",
                setting=env_name("email", "imap_tls"),
            )
        mailbox = settings.imap_mailbox.strip()
        if not mailbox or not mailbox.isprintable() or not mailbox.isascii():
            raise ConfigError(
                f"{env_name('email', 'imap_mailbox')} must be a printable ASCII mailbox name",
                setting=env_name("email", "imap_mailbox"),
            )
        assert password is not None
        return cls(
            host=host,
            port=settings.imap_port,
            username=username,
            password=password,
            mailbox=mailbox,
            tls=settings.imap_tls,
            poll_seconds=settings.imap_poll_seconds,
        )

    @property
    def lease_name(self) -> str:
        """The named lease of this mailbox (hashed: the username is an address, not for the store's eyes)."""
        key = f"{self.host}:{self.port}\n{self.username}\n{self.mailbox}".encode()
        return f"email-imap:{hashlib.sha256(key).hexdigest()[:32]}"


def _is_loopback(host: str) -> bool:
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class _Next(enum.Enum):
    """What a round asks for next."""

    WAIT = "wait"  # everything handled: IDLE or sleep until new mail
    AGAIN = "again"  # more unseen messages than one batch: the next round now
    RETRY = "retry"  # a commit or a flag failed: the next round after RETRY_SECONDS


class ImapPoller:
    """Fetches the mailbox's unseen messages, commits each, then flags it ``\\Seen``; see the module."""

    def __init__(
        self,
        config: ImapConfig,
        *,
        parse: ParseFn,
        max_bytes: int,
        leases: NamedLease | None = None,
        ssl_context: ssl.SSLContext | None = None,
        backoff_base: float = BACKOFF_BASE,
        backoff_max: float = BACKOFF_MAX,
    ) -> None:
        self._config = config
        self._parse = parse
        self._max_bytes = max_bytes
        self._leases = leases
        self._ssl_context = ssl_context
        self._backoff_base = backoff_base
        self._backoff_max = backoff_max
        self._task: asyncio.Task[None] | None = None
        self._session: ImapSession | None = None
        self.sessions = 0  # sessions opened (logged in): a reconnect shows here

    def __repr__(self) -> str:
        return f"ImapPoller({self._config!r}, running={self.running})"

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def check(self) -> None:
        """Log in and open the mailbox once, at start-up: a refused login or mailbox is a ``ConfigError``
        naming the setting. A server that cannot be reached now is only logged: the loop retries."""
        session = ImapSession(self._config, ssl_context=self._ssl_context)
        try:
            await session.open()
        except LoginRefused as exc:
            raise ConfigError(str(exc), setting=exc.setting) from None
        except ImapError as exc:
            log.warning("imap: the server cannot be reached now (%s); retrying in the background", exc)
        finally:
            await session.logout()
            session.close()

    async def start(self, accept: AcceptFn) -> None:
        if self.running:
            raise RuntimeError("the IMAP poller is already running")
        await self.check()
        self._task = asyncio.create_task(self._run(accept), name="email-imap")
        log.info("imap: polling the mailbox (port %s, tls=%s)", self._config.port, self._config.tls)

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        if self._leases is not None:
            with contextlib.suppress(Exception):  # it lapses by itself
                await self._leases.release(self._config.lease_name)

    # --- the loop -----------------------------------------------------------------------------------

    async def _run(self, accept: AcceptFn) -> None:
        delay = self._backoff_base
        while True:
            if not await self._acquire():
                await asyncio.sleep(LEASE_SECONDS / 3)
                continue
            opened = self.sessions
            try:
                await self._holding(self._session_loop(accept))
            except LoginRefused as exc:
                delay = self._backoff_max
                log.error("imap: %s (retrying in %.0f s)", exc, delay)
            except ImapError as exc:
                if self.sessions > opened:  # it had worked: a fresh drop is retried soon
                    delay = self._backoff_base
                log.warning("imap: session ended (%s); reconnecting in %.1f s", exc, delay)
            await asyncio.sleep(delay)
            delay = min(self._backoff_max, delay * 2)

    async def _acquire(self) -> bool:
        if self._leases is None:
            return True
        try:
            return await self._leases.acquire(self._config.lease_name, ttl=LEASE_SECONDS)
        except Exception as exc:
            log.warning("imap: the mailbox lease could not be taken (%s)", type(exc).__name__)
            return False

    async def _holding(self, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` while the mailbox lease holds (renewed every third of it); cancel it when lost."""
        if self._leases is None:
            await work
            return
        task = asyncio.create_task(work)
        keeper = asyncio.create_task(self._keep_lease())
        try:
            await asyncio.wait({task, keeper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            keeper.cancel()
            await asyncio.gather(keeper, return_exceptions=True)
            if not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        if task.cancelled():
            log.warning("imap: the mailbox lease was lost; another process polls it now")
            return
        task.result()

    async def _keep_lease(self) -> None:
        assert self._leases is not None
        loop = asyncio.get_running_loop()
        renewed = loop.time()
        while True:
            await asyncio.sleep(LEASE_SECONDS / 3)
            try:
                held = await self._leases.acquire(self._config.lease_name, ttl=LEASE_SECONDS)
            except Exception as exc:  # a database hiccup: fine while the lease lasts
                log.warning("imap: the mailbox lease was not renewed (%s)", type(exc).__name__)
                held = loop.time() - renewed < LEASE_SECONDS * 2 / 3
            else:
                renewed = loop.time()
            if not held:
                return

    async def _session_loop(self, accept: AcceptFn) -> None:
        """One connection: rounds and waits until it fails (``ImapError``) or is cancelled."""
        session = ImapSession(self._config, ssl_context=self._ssl_context)
        self._session = session
        try:
            await session.open()
            self.sessions += 1
            log.info("imap: session %s open (idle=%s)", self.sessions, session.idles)
            while True:
                after = await self._round(session, accept)
                if after is _Next.RETRY:  # even with new mail: a failing commit is not retried at once
                    await self._sleep(session, RETRY_SECONDS)
                elif after is _Next.AGAIN or session.take_new_mail():
                    continue
                elif session.idles:
                    await session.wait_for_mail()
                else:
                    await self._sleep(session, self._config.poll_seconds)
        finally:
            self._session = None
            session.close()

    async def _sleep(self, session: ImapSession, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(session.lost.wait(), seconds)
        if session.lost.is_set():
            raise ImapError("connection lost")

    async def _round(self, session: ImapSession, accept: AcceptFn) -> _Next:
        session.take_new_mail()  # what was announced until now, this SEARCH finds
        unseen = await session.unseen()
        if not unseen:
            return _Next.WAIT
        batch = unseen[:BATCH]
        sizes = await session.sizes(batch)
        for uid in batch:
            if sizes.get(uid, 0) > self._max_bytes:
                log.warning("imap: uid %s is over the size limit; marked seen, not answered", uid)
                if not await session.mark_seen(uid):
                    return _Next.RETRY
                continue
            raw = await session.body(uid)
            if raw is None:
                log.info("imap: uid %s is gone from the mailbox", uid)
                continue
            if len(raw) > self._max_bytes:
                log.warning("imap: uid %s is over the size limit; marked seen, not answered", uid)
                if not await session.mark_seen(uid):
                    return _Next.RETRY
                continue
            outcome = await ingest(functools.partial(self._parse, raw), accept, source=f"imap uid {uid}")
            if outcome is Outcome.COMMIT_FAILED:
                return _Next.RETRY  # left unseen: fetched and committed again next round
            if outcome in (Outcome.UNREADABLE, Outcome.PARSE_FAILED):
                log.warning(
                    "imap: uid %s could not be read (%s); marked seen, not answered", uid, outcome.value
                )
            if not await session.mark_seen(uid):
                return _Next.RETRY
        return _Next.AGAIN if len(unseen) > BATCH else _Next.WAIT
