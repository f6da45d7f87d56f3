"""LaneLoop.stop() returns even when a wake-up lands just before it (a lane finishing as the hub
stops). On Python 3.11, ``asyncio.wait_for`` swallowed that cancellation and stop() waited forever."""

from __future__ import annotations

import asyncio

from core.pipeline.lanes import LaneLoop


async def test_stop_right_after_a_wake_up_returns() -> None:
    async def heads() -> list[tuple[str, int]]:
        return []

    async def handle(item: int) -> None:
        return None

    lanes = LaneLoop("test", heads=heads, handle=handle, concurrency=1, poll_interval=3600.0)
    lanes.start()
    for _ in range(10):  # the dispatcher has run and waits for a wake-up
        await asyncio.sleep(0)
    lanes.wake()
    await asyncio.sleep(0)  # the wake-up is delivered; the dispatcher has not resumed yet
    bound = asyncio.timeout(60)  # a regression fails here instead of hanging the suite
    async with bound:
        await lanes.stop()
    assert not bound.expired(), "stop() only returned because it was cancelled"
    assert not [t for t in asyncio.all_tasks() if t.get_name() == "lanes:test" and not t.done()]
