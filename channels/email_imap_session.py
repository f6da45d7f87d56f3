"""One logged-in IMAP connection of the poller (``channels.email_imap.ImapPoller``), over aioimaplib.

``ImapSession`` opens the connection (TLS unless the host is loopback and the setting says so), logs in,
selects the mailbox, and speaks the few commands a round needs: ``UID SEARCH UNSEEN``, ``RFC822.SIZE``,
``BODY.PEEK[]`` (marks nothing seen), ``+FLAGS.SILENT (\\Seen)`` and ``IDLE``. Every command races the
connection-lost callback and a timeout, so a dropped socket ends the session at once (``ImapError``); a
refused ``LOGIN`` or ``SELECT`` is ``LoginRefused``, naming the setting to check. Logs carry UIDs only.

New mail: a server announces it once (``* N EXISTS``, RFC 3501 §7.3.1), pushed during IDLE or with the
answer to whatever command runs when it lands. aioimaplib hands the first to the IDLE queue and drops the
second when that command is one it runs asynchronously (SEARCH, FETCH, STORE: "ignored untagged
response"); so ``_Protocol`` reads every ``EXISTS`` line (and ``EXPUNGE``, one message fewer) itself,
whichever command it came with, and ``MailboxCount`` sets its ``mail`` event when the count is another
than the one known (a server that repeats an unchanged count with every answer announces nothing). A
round clears it before its SEARCH; what is set after that asks for another round, and IDLE waits on it
(``wait_for_mail``), so an announcement is never waited past.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import ssl
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

import aioimaplib  # type: ignore[import-untyped]

from core.settings import env_name

if TYPE_CHECKING:
    from channels.email_imap import ImapConfig

log = logging.getLogger(__name__)

T = TypeVar("T")

IDLE_RENEW_SECONDS = 10 * 60.0
COMMAND_TIMEOUT = 30.0  # one command's answer (a big FETCH: between two chunks of it)
_COUNT = re.compile(rb"\* (\d+) (EXISTS|EXPUNGE)\s*", re.IGNORECASE)
_UID = re.compile(rb"\bUID (\d+)")
_SIZE = re.compile(rb"\bRFC822\.SIZE (\d+)")
_BODY_LITERAL = re.compile(rb"\bBODY\[\] \{(\d+)\}$")


class ImapError(Exception):
    """The session must end: the connection dropped, or the server answered what we cannot go on from."""


class LoginRefused(ImapError):
    def __init__(self, setting: str, reason: str) -> None:
        super().__init__(reason)
        self.setting = setting


class MailboxCount:
    """The mailbox's message count as the server last told it (``* N EXISTS``, one less per ``* N
    EXPUNGE``); ``mail`` is set when an EXISTS names another count than the one known. A server may repeat
    an unchanged count with any answer: that is no new mail (else every round would ask for another)."""

    def __init__(self) -> None:
        self.known: int | None = None
        self.mail = asyncio.Event()

    def heard(self, count: int, *, expunged: bool) -> None:
        if expunged:
            if self.known:
                self.known -= 1
            return
        if count != self.known:
            self.known = count
            self.mail.set()


class _Protocol(aioimaplib.IMAP4ClientProtocol):  # type: ignore[misc]
    """aioimaplib's protocol, telling ``count`` of every ``* N EXISTS`` and ``* N EXPUNGE`` line it reads."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        conn_lost_cb: Callable[[Exception | None], None],
        count: MailboxCount,
    ) -> None:
        super().__init__(loop, conn_lost_cb)
        self._count = count

    def _untagged_response(self, line: bytes) -> Any:
        said = _COUNT.fullmatch(line)
        if said is not None:
            self._count.heard(int(said.group(1)), expunged=said.group(2).upper() == b"EXPUNGE")
        return super()._untagged_response(line)


class _Client(aioimaplib.IMAP4):  # type: ignore[misc]
    """``aioimaplib.IMAP4`` on ``_Protocol`` (its ``create_client``, with that one class changed)."""

    def __init__(self, *, count: MailboxCount, **kwargs: Any) -> None:
        self._count = count  # before super().__init__: it calls create_client
        super().__init__(**kwargs)

    def create_client(
        self,
        host: str,
        port: int,
        loop: asyncio.AbstractEventLoop | None,
        conn_lost_cb: Callable[[Exception | None], None] | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        local_loop = loop if loop is not None else asyncio.get_running_loop()
        self.protocol = _Protocol(local_loop, conn_lost_cb or (lambda exc: None), self._count)
        self._client_task = local_loop.create_task(
            local_loop.create_connection(lambda: self.protocol, host, port, ssl=ssl_context)
        )


class ImapSession:
    """One logged-in connection. Every command races the connection-lost callback, so a dropped socket
    ends the session at once instead of after a command timeout."""

    def __init__(self, config: ImapConfig, *, ssl_context: ssl.SSLContext | None) -> None:
        self._config = config
        self._ssl_context = ssl_context
        self.lost = asyncio.Event()
        self.client: Any = None
        self.count = MailboxCount()  # its ``mail``: new mail announced since the last ``take_new_mail``

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
        return result

    def take_new_mail(self) -> bool:
        """Whether new mail was announced since the last call (then: another round, not a wait)."""
        announced = self.count.mail.is_set()
        self.count.mail.clear()
        return announced

    async def open(self) -> None:
        config = self._config
        context = self._ssl_context
        if config.tls and context is None:
            context = ssl.create_default_context()
        self.client = _Client(
            count=self.count,
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
        """IDLE until new mail is announced (at once if it already was) or ``IDLE_RENEW_SECONDS`` pass,
        then DONE. Other pushes (flags, expunges, keep-alives) wake nothing: nothing new to read."""
        idle = await self.call(self.client.idle_start(timeout=IDLE_RENEW_SECONDS))
        try:
            await self.call(self._announced(IDLE_RENEW_SECONDS), limit=None)
        finally:
            if not self.lost.is_set():
                self.client.idle_done()
        await self.call(idle)
        queue = self.client.protocol.idle_queue  # aioimaplib's copy of the pushes: read by nobody
        while not queue.empty():
            queue.get_nowait()

    async def _announced(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.count.mail.wait(), seconds)

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
