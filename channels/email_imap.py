"""Inbound email by IMAP from a mailbox the team already has (``THREADLINE_EMAIL__IMAP_HOST``).

``ImapPoller`` runs in the app's event loop (aioimaplib), beside the SMTP listener and the webhook:

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
   ``imap_poll_seconds``; and again. A new-mail notice (``* N EXISTS``) that came with the answer to
   another command (mail arrived while a SEARCH or STORE ran) is not a push to aioimaplib: every answer is
   read for one, and if there was, another round comes instead of the wait.

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
import re
import ssl
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from ipaddress import ip_address
from typing import Any, TypeVar

import aioimaplib  # type: ignore[import-untyped]
from pydantic import SecretStr

from channels.base import AcceptFn
from channels.email_ingest import Outcome, ingest
from core.errors import ConfigError
from core.messages import InboundMessage
from core.ports import NamedLease
from core.settings import EmailSettings, env_name

log = logging.getLogger(__name__)

# the raw message → the parsed one (``EmailAdapter._parse_imap``); None for noise; BadRequest if unreadable
ParseFn = Callable[[bytes], Awaitable[InboundMessage | None]]
T = TypeVar("T")

IDLE_RENEW_SECONDS = 10 * 60.0
_EXISTS = re.compile(rb"\d+ EXISTS", re.IGNORECASE)
RETRY_SECONDS = 5.0  # after a failed commit or STORE: the next round comes this soon, IDLE or not
BACKOFF_BASE = 1.0
BACKOFF_MAX = 60.0
COMMAND_TIMEOUT = 30.0  # one command's answer (a big FETCH: between two chunks of it)
BATCH = 50  # unseen messages handled per round; more are handled in the next round, at once
LEASE_SECONDS = 60.0

_UID = re.compile(rb"\bUID (\d+)")
_SIZE = re.compile(rb"\bRFC822\.SIZE (\d+)")
_BODY_LITERAL = re.compile(rb"\bBODY\[\] \{(\d+)\}$")
_LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain"})


class ImapError(Exception):
    """The session must end: the connection dropped, or the server answered what we cannot go on from."""


class LoginRefused(ImapError):
    def __init__(self, setting: str, reason: str) -> None:
        super().__init__(reason)
        self.setting = setting


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


class _Session:
    """One logged-in connection. Every command races the connection-lost callback, so a dropped socket
    ends the session at once instead of after a command timeout."""

    def __init__(self, config: ImapConfig, *, ssl_context: ssl.SSLContext | None) -> None:
        self._config = config
        self._ssl_context = ssl_context
        self.lost = asyncio.Event()
        self.client: Any = None
        # an untagged EXISTS that came with another command's answer (mail arrived while it ran):
        # aioimaplib hands it over with that answer, not as a push, so the next wait would miss it
        self.new_mail = False

    def _connection_lost(self, exc: Exception | None) -> None:
        self.lost.set()

    async def call(self, awaitable: Awaitable[T], *, limit: float | None = COMMAND_TIMEOUT) -> T:
        """Await one command's answer, or raise ``ImapError`` when the connection drops or ``limit``
        passes (``limit`` None: as long as the server stays silent, as in IDLE)."""
        task: asyncio.Future[T] = asyncio.ensure_future(awaitable)
        lost = asyncio.ensure_future(self.lost.wait())
        racing: set[asyncio.Future[Any]] = {task, lost}
        try:
            await asyncio.wait(racing, timeout=limit, return_when=asyncio.FIRST_COMPLETED)
        finally:
            lost.cancel()
            if not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        if task.cancelled():
            raise ImapError("connection lost" if self.lost.is_set() else "command timed out")
        try:
            result = task.result()
        except (aioimaplib.AioImapException, OSError, TimeoutError) as exc:
            raise ImapError(type(exc).__name__) from exc
        lines = getattr(result, "lines", None)
        if isinstance(lines, list) and any(
            isinstance(line, bytes) and _EXISTS.fullmatch(line) for line in lines
        ):
            self.new_mail = True
        return result

    def take_new_mail(self) -> bool:
        """Whether an answer since the last call reported new mail (then: another round, not a wait)."""
        seen, self.new_mail = self.new_mail, False
        return seen

    async def open(self) -> None:
        config = self._config
        context = self._ssl_context
        if config.tls and context is None:
            context = ssl.create_default_context()
        self.client = aioimaplib.IMAP4(
            host=config.host,
            port=config.port,
            timeout=COMMAND_TIMEOUT,
            conn_lost_cb=self._connection_lost,
            ssl_context=context if config.tls else None,
        )
        await self.call(self.client.wait_hello_from_server())
        response = await self.call(
            self.client.login(aioimaplib.quoted(config.username), config.password.get_secret_value())
        )
        if response.result != "OK":
            raise LoginRefused(
                env_name("email", "imap_password"),
                f"the IMAP server refused the login ({response.result}): check "
                f"{env_name('email', 'imap_username')} and {env_name('email', 'imap_password')}",
            )
        # capabilities may change once logged in (RFC 3501 §6.2.3: IDLE is often offered only then)
        await self.call(self.client.protocol.capability())
        response = await self.call(self.client.select(aioimaplib.quoted(config.mailbox)))
        if response.result != "OK":
            raise LoginRefused(
                env_name("email", "imap_mailbox"),
                f"the IMAP server refused to open the mailbox ({response.result}): check "
                f"{env_name('email', 'imap_mailbox')}",
            )

    @property
    def idles(self) -> bool:
        return bool(self.client.has_capability("IDLE"))

    async def unseen(self) -> list[int]:
        response = await self.call(self.client.uid_search("UNSEEN", charset=None))
        if response.result != "OK":
            raise ImapError(f"UID SEARCH answered {response.result}")
        uids: set[int] = set()
        for line in response.lines[
            :-1
        ]:  # aioimaplib hands "* SEARCH 1 2" over as b"1 2"; the last: the status
            if not isinstance(line, bytes):
                continue
            words = line.split()
            if words and words[0].upper() == b"SEARCH":
                words = words[1:]
            if all(word.isdigit() for word in words):
                uids.update(int(word) for word in words)
        return sorted(uids)

    async def sizes(self, uids: list[int]) -> dict[int, int]:
        response = await self.call(self.client.uid("fetch", ",".join(map(str, uids)), "(RFC822.SIZE)"))
        if response.result != "OK":
            raise ImapError(f"UID FETCH (RFC822.SIZE) answered {response.result}")
        found: dict[int, int] = {}
        for line in response.lines:
            if not isinstance(line, bytes):
                continue
            uid, size = _UID.search(line), _SIZE.search(line)
            if uid is not None and size is not None:
                found[int(uid.group(1))] = int(size.group(1))
        return found

    async def body(self, uid: int) -> bytes | None:
        """The whole message, peeked (not marked seen); None when the server has no such UID any more."""
        response = await self.call(self.client.uid("fetch", str(uid), "BODY.PEEK[]"))
        if response.result != "OK":
            raise ImapError(f"UID FETCH BODY.PEEK[] answered {response.result}")
        lines = response.lines
        for index, line in enumerate(lines[:-1]):
            if not isinstance(line, bytes) or _BODY_LITERAL.search(line) is None:
                continue
            after = lines[index + 2] if index + 2 < len(lines) else b""
            named = _UID.search(line) or (_UID.search(after) if isinstance(after, bytes) else None)
            if named is not None and int(named.group(1)) != uid:
                continue  # an answer about another message (the server may add one unasked)
            literal = lines[index + 1]
            if isinstance(literal, bytes | bytearray):
                return bytes(literal)
        return None

    async def mark_seen(self, uid: int) -> bool:
        """``\\Seen`` on ``uid``; False (logged) when the server refused: the message stays unseen."""
        response = await self.call(self.client.uid("store", str(uid), "+FLAGS.SILENT", r"(\Seen)"))
        if response.result != "OK":
            log.warning("imap: uid %s not marked seen (%s); it comes again next round", uid, response.result)
            return False
        return True

    async def wait_for_mail(self) -> None:
        """IDLE until the server pushes anything (new mail) or ``IDLE_RENEW_SECONDS`` pass, then DONE."""
        idle = await self.call(self.client.idle_start(timeout=IDLE_RENEW_SECONDS))
        try:
            push = self.client.wait_server_push(timeout=IDLE_RENEW_SECONDS + COMMAND_TIMEOUT)
            await self.call(push, limit=None)
        finally:
            if not self.lost.is_set():
                self.client.idle_done()
        await self.call(idle)

    async def logout(self) -> None:
        if self.client is None or self.lost.is_set():
            return
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.client.logout(), 2.0)

    def close(self) -> None:
        """Drop the socket and every timer aioimaplib still holds (no waiting: ``stop`` is prompt)."""
        client, self.client = self.client, None
        if client is None:
            return
        waiter = getattr(client, "_idle_waiter", None)
        if waiter is not None:
            waiter.cancel()
        protocol = client.protocol
        for task in list(client.tasks) + list(getattr(protocol, "tasks", ())):
            task.cancel()
        transport = getattr(protocol, "transport", None)
        if transport is not None:
            transport.close()
        connecting = getattr(client, "_client_task", None)
        if connecting is not None and not connecting.done():
            connecting.cancel()


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
        self._session: _Session | None = None
        self.sessions = 0  # sessions opened (logged in): a reconnect shows here

    def __repr__(self) -> str:
        return f"ImapPoller({self._config!r}, running={self.running})"

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def check(self) -> None:
        """Log in and open the mailbox once, at start-up: a refused login or mailbox is a ``ConfigError``
        naming the setting. A server that cannot be reached now is only logged: the loop retries."""
        session = _Session(self._config, ssl_context=self._ssl_context)
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
        session = _Session(self._config, ssl_context=self._ssl_context)
        self._session = session
        try:
            await session.open()
            self.sessions += 1
            log.info("imap: session %s open (idle=%s)", self.sessions, session.idles)
            while True:
                after = await self._round(session, accept)
                if after is _Next.AGAIN or session.take_new_mail():
                    continue
                if after is _Next.RETRY:
                    await self._sleep(session, RETRY_SECONDS)
                elif session.idles:
                    await session.wait_for_mail()
                else:
                    await self._sleep(session, self._config.poll_seconds)
        finally:
            self._session = None
            session.close()

    async def _sleep(self, session: _Session, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(session.lost.wait(), seconds)
        if session.lost.is_set():
            raise ImapError("connection lost")

    async def _round(self, session: _Session, accept: AcceptFn) -> _Next:
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
