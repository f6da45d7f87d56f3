"""The built-in SMTP listener: aiosmtpd's ``SMTP`` protocol served inside the app's own event loop.

``SmtpListener.start`` uses ``loop.create_server(lambda: SMTP(handler, ...))`` (aiosmtpd's
``UnthreadedController.begin()`` would run a loop of its own). The answers:

- ``RCPT TO`` anything but our own address → ``550`` (we are not a relay);
- a message over the size limit → ``552`` (aiosmtpd, from ``data_size_limit``);
- noise (auto-replies, lists, bounces, loops) → ``250``: accepted, never answered;
- a message that cannot be read (no usable ``From``) → ``550 5.6.0``;
- otherwise ``accept(message)`` commits it and only then is ``250`` sent; if ``accept`` (or the parser)
  fails → ``451 4.3.0`` so the sending MTA retries: nothing acknowledged is lost.

The socket is bound with ``SO_REUSEPORT`` where the system has it (Linux, the BSDs, macOS): several
``threadline serve`` processes on one host (scale mode) each listen on the same ``smtp_listen`` port,
and the kernel spreads the connections among them; a second process no longer dies on "address in use".
Only processes of the same user can join a port this way. Where the option does not exist, a second
listener on the port fails to start, as before: one per host there.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import weakref
from collections.abc import Awaitable, Callable, Sequence

from aiosmtpd.smtp import SMTP, Envelope, Session

from channels.base import AcceptFn
from channels.email_ingest import Outcome, ingest
from core.messages import InboundMessage

log = logging.getLogger(__name__)

# (raw message, envelope sender, envelope recipients, the connecting peer's IP address or None)
ParseFn = Callable[[bytes, str | None, Sequence[str], str | None], Awaitable[InboundMessage | None]]

OK = "250 2.0.0 OK"
TRY_LATER = "451 4.3.0 try again later"
UNREADABLE = "550 5.6.0 message could not be read"
NOT_OURS = "550 5.1.1 recipient not accepted here"

_ANSWERS = {
    Outcome.COMMITTED: OK,
    Outcome.NOISE: OK,
    Outcome.UNREADABLE: UNREADABLE,
    Outcome.PARSE_FAILED: TRY_LATER,  # the sending MTA retries, then gives up and bounces
    Outcome.COMMIT_FAILED: TRY_LATER,
}

# several processes of one host may share the listening port (see the module docstring)
REUSE_PORT = hasattr(socket, "SO_REUSEPORT")


def split_listen(listen: str) -> tuple[str, int]:
    """``"host:port"`` (``"[::1]:2525"`` for IPv6) → ``(host, port)``; ``ValueError`` if malformed."""
    host, sep, port = listen.strip().rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ValueError("the SMTP listen address is written host:port")
    return host.strip("[]") or "0.0.0.0", int(port)  # noqa: S104 - an empty host means every interface


class _Handler:
    """aiosmtpd hooks: RCPT (our address only) and DATA (parse, commit, then answer)."""

    def __init__(self, *, address_key: str, parse: ParseFn, accept: AcceptFn) -> None:
        self._address_key = address_key
        self._parse = parse
        self._accept = accept

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        if address.strip().lower() != self._address_key:
            return NOT_OURS
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""

        def parse() -> Awaitable[InboundMessage | None]:
            return self._parse(raw, envelope.mail_from, list(envelope.rcpt_tos), _peer_ip(session))

        outcome = await ingest(parse, self._accept, source="smtp")  # shared with IMAP (channels.email_ingest)
        return _ANSWERS[outcome]


def _peer_ip(session: Session) -> str | None:
    peer = session.peer
    if isinstance(peer, tuple) and peer and isinstance(peer[0], str):
        return peer[0]
    return None


class SmtpListener:
    """Serves SMTP on ``host:port`` in the running loop until ``stop``."""

    def __init__(self, *, listen: str, address: str, hostname: str, max_bytes: int, parse: ParseFn) -> None:
        self._host, self._port = split_listen(listen)
        self._address_key = address.strip().lower()
        self._hostname = hostname
        self._max_bytes = max_bytes
        self._parse = parse
        self._server: asyncio.Server | None = None
        self._sessions: weakref.WeakSet[SMTP] = weakref.WeakSet()

    @property
    def port(self) -> int | None:
        """The bound port (useful with port 0), or ``None`` when not serving."""
        if self._server is None or not self._server.sockets:
            return None
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def start(self, accept: AcceptFn) -> None:
        if self._server is not None:
            raise RuntimeError("the SMTP listener is already running")
        loop = asyncio.get_running_loop()
        handler = _Handler(address_key=self._address_key, parse=self._parse, accept=accept)

        def factory() -> SMTP:
            session = SMTP(
                handler,
                data_size_limit=self._max_bytes,
                enable_SMTPUTF8=True,
                hostname=self._hostname,
                loop=loop,
            )
            self._sessions.add(session)
            return session

        self._server = await loop.create_server(factory, self._host, self._port, reuse_port=REUSE_PORT)
        log.info("smtp listener serving on port %s", self.port)

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        for session in list(self._sessions):
            if session.transport is not None:
                session.transport.close()
        self._sessions.clear()
        await server.wait_closed()
