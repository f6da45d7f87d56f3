"""Keyed lanes: work for one key (a customer) runs one item at a time, in order; keys run concurrently.

A ``LaneLoop`` asks its ``heads`` function for the oldest due item of every key with work waiting,
starts a task for each key that is not already running (up to ``concurrency``), and sleeps until it
is woken or the poll interval passes. State lives in the database, so a restart loses nothing.

An item is never handled twice at once, even when its key changes while it runs (an identity merge
moves a message that is being answered to another customer's lane).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)

Heads = Callable[[], Awaitable[list[tuple[str, int]]]]
Handle = Callable[[int], Awaitable[None]]
Pace = Callable[[], Awaitable[None]]


async def _no_pace() -> None:
    return None


class LaneLoop:
    def __init__(
        self, name: str, *, heads: Heads, handle: Handle, concurrency: int, poll_interval: float
    ) -> None:
        self.name = name
        self._heads = heads
        self._handle = handle
        self._concurrency = concurrency
        self._poll = poll_interval
        self._wake = asyncio.Event()
        self._active: dict[str, asyncio.Task[None]] = {}
        self._in_flight: set[int] = set()
        self._runner: asyncio.Task[None] | None = None
        self._idle = asyncio.Event()
        # awaited before each dispatch and each item: the hub sets it so lanes yield to webhooks
        self.pace: Pace = _no_pace

    def wake(self) -> None:
        self._wake.set()

    @property
    def busy(self) -> int:
        return len(self._active)

    def start(self) -> None:
        if self._runner is None:
            self._runner = asyncio.create_task(self._run(), name=f"lanes:{self.name}")

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        tasks = [runner, *self._active.values()] if runner else list(self._active.values())
        for task in tasks:
            task.cancel()
        # gather, not "suppress CancelledError around await": a cancellation of stop() itself is not
        # swallowed with those of the tasks it stops
        await asyncio.gather(*tasks, return_exceptions=True)
        self._active.clear()
        self._in_flight.clear()

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            try:
                await self.pace()
                await self._dispatch()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a database hiccup must not kill the loop
                log.warning("%s dispatcher failed (%s); retrying", self.name, type(exc).__name__)
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for swallows a cancellation that
            # arrives as the wake-up does (a lane finishing just before stop()), and stop() hung
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._poll):
                    await self._wake.wait()

    async def _dispatch(self) -> None:
        for key, item in await self._heads():
            if len(self._active) >= self._concurrency:
                return
            if key in self._active or item in self._in_flight:
                continue
            self._in_flight.add(item)
            self._active[key] = asyncio.create_task(self._lane(key, item), name=f"{self.name}:{item}")

    async def _lane(self, key: str, item: int) -> None:
        try:
            await self.pace()
            await self._handle(item)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # type only: exception texts of drivers and SDKs can carry message content
            log.error("%s item %s failed with %s", self.name, item, type(exc).__name__)
        finally:
            self._active.pop(key, None)
            self._in_flight.discard(item)
            self._wake.set()
