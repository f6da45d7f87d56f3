"""Background lanes yield to webhooks being acknowledged, but are never stopped by them."""

from __future__ import annotations

import asyncio

from core.ingress import IngressGate


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
