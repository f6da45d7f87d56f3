"""``FakeSmtpRelay``: a real aiosmtpd SMTP server on 127.0.0.1 (random port) in a background thread.

It records every transaction that reaches DATA (envelope, raw bytes, parsed message) and can be told
to answer the next N transactions at one stage (``MAIL``, ``RCPT`` or ``DATA``) with a given reply,
e.g. ``relay.fail_next(451)`` or ``relay.fail_next(550, stage="RCPT")``. A failed transaction is
counted in ``attempts`` but not recorded in ``messages``. Usable with ``with`` / ``async with``.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import socket
import threading
from collections import deque
from dataclasses import dataclass
from email.message import EmailMessage
from types import TracebackType
from typing import Literal, Self

from aiosmtpd.smtp import SMTP, Envelope, Session

HOST = "127.0.0.1"
Stage = Literal["MAIL", "RCPT", "DATA"]
_DEFAULT_TEXT = {421: "4.3.2 service shutting down", 451: "4.3.0 try again later", 550: "5.1.1 no such user"}


@dataclass(frozen=True)
class RelayedMessage:
    mail_from: str
    rcpt_tos: tuple[str, ...]
    raw: bytes
    message: EmailMessage


@dataclass(frozen=True)
class _Failure:
    stage: Stage
    reply: str


class FakeSmtpRelay:
    def __init__(self) -> None:
        self.messages: list[RelayedMessage] = []
        self.attempts = 0
        self._failures: deque[_Failure] = deque()
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self.port = 0

    def fail_next(self, code: int, *, count: int = 1, stage: Stage = "DATA", text: str | None = None) -> None:
        """Answer the next ``count`` transactions with ``code`` at ``stage``."""
        reply = f"{code} {text or _DEFAULT_TEXT.get(code, 'forced failure')}"
        with self._lock:
            self._failures.extend(_Failure(stage, reply) for _ in range(count))

    def _take_failure(self, stage: Stage) -> str | None:
        with self._lock:
            if self._failures and self._failures[0].stage == stage:
                return self._failures.popleft().reply
        return None

    # aiosmtpd hooks ----------------------------------------------------------------------------------

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, mail_options: list[str]
    ) -> str:
        with self._lock:
            self.attempts += 1
        failure = self._take_failure("MAIL")
        if failure is not None:
            return failure
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        failure = self._take_failure("RCPT")
        if failure is not None:
            return failure
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        failure = self._take_failure("DATA")
        if failure is not None:
            return failure
        raw = envelope.original_content or b""
        # SMTP carries CRLF; a mailbox stores LF (as an MDA writes it), so bodies read back as they were sent
        parsed = email.message_from_bytes(raw.replace(b"\r\n", b"\n"), policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        with self._lock:
            self.messages.append(
                RelayedMessage(
                    mail_from=envelope.mail_from or "",
                    rcpt_tos=tuple(envelope.rcpt_tos),
                    raw=raw,
                    message=parsed,
                )
            )
        return "250 2.0.0 queued"

    # lifecycle ---------------------------------------------------------------------------------------

    def start(self, timeout: float = 10.0) -> Self:
        if self._thread is not None:
            raise RuntimeError("the relay is already started")
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.bind((HOST, 0))
        sock.listen(16)
        self.port = sock.getsockname()[1]
        self._ready.clear()
        self._thread = threading.Thread(target=self._run, args=(sock,), name="FakeSmtpRelay", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise RuntimeError("the fake SMTP relay did not start")
        return self

    def _run(self, sock: socket.socket) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop

        def factory() -> SMTP:
            return SMTP(self, hostname="relay.test", loop=loop)

        server = loop.run_until_complete(loop.create_server(factory, sock=sock))
        loop.call_soon(self._ready.set)
        try:
            loop.run_forever()
        finally:
            server.close()
            loop.run_until_complete(server.wait_closed())
            loop.close()

    def stop(self, timeout: float = 5.0) -> None:
        loop, thread = self._loop, self._thread
        self._loop = self._thread = None
        if loop is not None:
            loop.call_soon_threadsafe(loop.stop)
        if thread is not None:
            thread.join(timeout)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    async def __aenter__(self) -> Self:
        return await asyncio.to_thread(self.start)

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await asyncio.to_thread(self.stop)
