"""``ChannelPacer``: Slack's one message a second per channel, kept on our side before each post."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

Sleep = Callable[[float], Awaitable[None]]


class ChannelPacer:
    """About one message per ``interval`` seconds per Slack channel, after a burst of ``burst``.

    A per-channel GCRA: each call reserves the next slot (no await between reading and writing the
    slot, so no lock is needed) and sleeps until it. ``interval=0`` turns pacing off. ``clock`` and
    ``sleep`` are injectable so tests need no wall clock.
    """

    def __init__(
        self,
        interval: float = 1.0,
        *,
        burst: int = 3,
        clock: Callable[[], float] = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        max_channels: int = 4_096,
    ) -> None:
        if interval < 0 or burst < 1:
            raise ValueError("interval must be >= 0 and burst >= 1")
        self.interval = interval
        self.burst = burst
        self._clock = clock
        self._sleep = sleep
        self._max_channels = max_channels
        self._next: dict[str, float] = {}  # channel -> theoretical arrival time of its next message

    def reserve(self, channel: str) -> float:
        """Reserve the channel's next slot; returns how long to wait for it (seconds)."""
        if self.interval == 0:
            return 0.0
        now = self._clock()
        if len(self._next) >= self._max_channels:
            self._next = {ch: t for ch, t in self._next.items() if t > now}
        tat = max(self._next.get(channel, now), now)
        self._next[channel] = tat + self.interval
        return max(0.0, tat - now - (self.burst - 1) * self.interval)

    async def wait(self, channel: str) -> None:
        delay = self.reserve(channel)
        if delay > 0:
            await self._sleep(delay)
