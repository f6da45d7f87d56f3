"""Webhooks first: background work in the process yields to acknowledgements in progress.

A platform waits on our acknowledgement (Slack gives 3 s, Twilio 15 s, and all of them retry a slow
answer), while answering a message can wait a little. The worker, delivery and memory lanes share the
event loop and the cores with the webhook routes, so while any webhook is being received
(``receiving``), a lane that is about to start new work (``yield_to_ingress``) waits until no webhook is
in progress or for at most ``max_defer`` seconds. Only one lane step is let through per ``max_defer``
while webhooks keep coming, so background work still moves under a flood (it is slowed, never stopped),
and at once again when the flood ends. Work already started is not interrupted.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

DEFAULT_MAX_DEFER = 0.05  # seconds


class IngressGate:
    def __init__(self, *, max_defer: float = DEFAULT_MAX_DEFER) -> None:
        self._max_defer = max_defer
        self._in_flight = 0
        self._quiet = asyncio.Event()
        self._quiet.set()
        self._turnstile = asyncio.Lock()

    @property
    def in_flight(self) -> int:
        return self._in_flight

    @contextlib.contextmanager
    def receiving(self) -> Iterator[None]:
        """Around the handling of one inbound webhook (or SMTP message)."""
        self._in_flight += 1
        self._quiet.clear()
        try:
            yield
        finally:
            self._in_flight -= 1
            if self._in_flight == 0:
                self._quiet.set()

    async def yield_to_ingress(self) -> None:
        """Return at once when no webhook is in progress; otherwise wait for quiet, at most ``max_defer``,
        one waiter at a time."""
        if self._in_flight == 0:
            return
        async with self._turnstile:
            if self._in_flight == 0:
                return
            with contextlib.suppress(TimeoutError):  # asyncio.timeout: never swallows a cancellation
                async with asyncio.timeout(self._max_defer):
                    await self._quiet.wait()
