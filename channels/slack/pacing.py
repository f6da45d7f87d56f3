"""``ChannelPacer``: Slack's one message a second per channel, kept on our side before each post.

Slack counts per channel, whichever process posts: with several processes each pacing on its own, N of
them would post N messages a second into one channel. So the slots come from ``core.ports.SharedLimits``:
this process's own (``channels.limits.LocalLimits``) until the composition root binds the database's
(``bind``), which every process on the database shares.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from channels.limits import LocalLimits
from core.ports import SharedLimits

Sleep = Callable[[float], Awaitable[None]]


def _key(channel: str) -> str:
    return f"slack:channel:{channel}"


class ChannelPacer:
    """About one message per ``interval`` seconds per Slack channel, after a burst of ``burst``.

    A per-channel GCRA: each call reserves the next slot and sleeps until it. ``interval=0`` turns pacing
    off. ``clock`` and ``sleep`` are injectable so tests need no wall clock (``clock`` is the local
    limits'; bound limits keep their own).
    """

    def __init__(
        self,
        interval: float = 1.0,
        *,
        burst: int = 3,
        clock: Callable[[], float] = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        max_channels: int = 4_096,
        limits: SharedLimits | None = None,
    ) -> None:
        if interval < 0 or burst < 1:
            raise ValueError("interval must be >= 0 and burst >= 1")
        self.interval = interval
        self.burst = burst
        self._sleep = sleep
        self._local = LocalLimits(clock=clock, max_keys=max_channels)
        self._limits: SharedLimits = limits if limits is not None else self._local

    def bind(self, limits: SharedLimits) -> None:
        """Take slots from ``limits`` from now on (the database's: shared by every process)."""
        self._limits = limits

    def reserve(self, channel: str) -> float:
        """Reserve the channel's next slot in this process's own limits; returns how long to wait (s)."""
        return self._local.slot(_key(channel), interval=self.interval, burst=self.burst)

    async def wait(self, channel: str) -> None:
        if self.interval == 0:
            return
        delay = await self._limits.pace(_key(channel), interval=self.interval, burst=self.burst)
        if delay > 0:
            await self._sleep(delay)
