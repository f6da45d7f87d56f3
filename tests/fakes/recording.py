"""A recording channel: a ``Sender`` that keeps every reply, and can be told to fail.

It stands in for a platform adapter where a test is about the pipeline, not the platform
(errbot's test backend; Rasa's collecting output channel).
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass

from core.errors import DeliveryError
from core.messages import Delivery, OutboundMessage


@dataclass
class Sent:
    message: OutboundMessage
    attempt: int


class RecordingSender:
    def __init__(self, name: str) -> None:
        self.name = name
        self.sent: list[OutboundMessage] = []
        self.attempts: list[OutboundMessage] = []
        self.failures: deque[DeliveryError] = deque()
        self.changed = asyncio.Event()

    def fail_next(self, *errors: DeliveryError) -> None:
        self.failures.extend(errors)

    async def send(self, message: OutboundMessage) -> Delivery:
        self.attempts.append(message)
        self.changed.set()
        if self.failures:
            raise self.failures.popleft()
        self.sent.append(message)
        return Delivery(provider_message_ids=(f"{self.name}-{len(self.sent)}",))

    async def wait_for(self, count: int, timeout: float = 30.0) -> list[OutboundMessage]:
        async def _wait() -> None:
            while len(self.sent) < count:
                self.changed.clear()
                await self.changed.wait()

        await asyncio.wait_for(_wait(), timeout)
        return list(self.sent)

    def texts_to(self, recipient: str) -> list[str]:
        return [m.text for m in self.sent if str(m.recipient) == recipient]

    async def aclose(self) -> None:
        return None
