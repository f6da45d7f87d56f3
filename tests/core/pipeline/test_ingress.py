"""Background lanes yield to webhooks being acknowledged, but are never stopped by them."""

from __future__ import annotations

import asyncio
from pathlib import Path

from core.pipeline.ingress import IngressGate
from core.pipeline.lanes import LaneLoop
from tests.core.harness import make_settings, running_hub


async def test_background_waits_for_the_webhook_in_progress() -> None:
    gate = IngressGate(max_defer=30.0)
    order: list[str] = []

    async def background() -> None:
        await gate.yield_to_ingress()
        order.append("background")

    with gate.receiving():
        task = asyncio.create_task(background())
        for _ in range(20):
            await asyncio.sleep(0)
        order.append("webhook done")
    await task
    assert order == ["webhook done", "background"]
    assert gate.in_flight == 0


async def test_background_moves_on_after_max_defer_under_an_endless_flood() -> None:
    gate = IngressGate(max_defer=0.01)
    with gate.receiving():  # a webhook that never ends
        for _ in range(3):
            await gate.yield_to_ingress()  # returns each time: slowed, not stopped
        assert gate.in_flight == 1


async def test_no_webhook_no_wait() -> None:
    gate = IngressGate(max_defer=30.0)
    await asyncio.wait_for(gate.yield_to_ingress(), timeout=30)  # returns at once; bounded for safety


async def test_the_hubs_lanes_hold_new_work_back_while_a_webhook_is_received() -> None:
    """A lane wired to the gate (as the hub wires the worker, delivery and memory lanes) starts no
    item while a webhook is being received, and starts it as soon as the webhook is done."""
    gate = IngressGate(max_defer=30.0)
    handled: list[int] = []

    async def heads() -> list[tuple[str, int]]:
        return [("customer", 1)] if not handled else []

    async def handle(item: int) -> None:
        handled.append(item)

    lanes = LaneLoop("test", heads=heads, handle=handle, concurrency=1, poll_interval=30.0)
    lanes.pace = gate.yield_to_ingress
    with gate.receiving():
        lanes.start()
        for _ in range(50):
            await asyncio.sleep(0)
        assert handled == []  # held back
    for _ in range(200):
        if handled:
            break
        await asyncio.sleep(0)
    await lanes.stop()
    assert handled == [1]


async def test_the_hub_wires_its_lanes_to_its_gate(tmp_path: Path) -> None:
    async with running_hub(make_settings(tmp_path)) as hub:
        for lanes in (hub.worker.lanes, hub.delivery.lanes, hub.memory_writer.lanes):
            assert lanes.pace == hub.ingress.yield_to_ingress
