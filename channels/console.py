"""The console channel: the local REPL (``threadline chat``) as a channel like any other.

Lines typed at the terminal become ``InboundMessage``s on channel ``console`` and go through the
same inbox, worker, agent and outbox as a platform message; replies are handed to ``on_reply``.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable

from core.messages import Address, Assurance, Delivery, InboundMessage, OutboundMessage

ReplyHandler = Callable[[OutboundMessage], Awaitable[None]]


class ConsoleChannel:
    name = "console"

    def __init__(self, on_reply: ReplyHandler) -> None:
        self._on_reply = on_reply
        self.delivered: asyncio.Queue[OutboundMessage] = asyncio.Queue()

    def message(self, sender: Address, text: str) -> InboundMessage:
        """A typed line as an inbound message with a fresh provider id."""
        return InboundMessage(
            channel=self.name,
            provider_message_id=f"console-{uuid.uuid4().hex}",
            sender=sender,
            text=text,
            # whoever runs the console can type any address: nothing vouches for it
            sender_assurance=Assurance.UNVERIFIED,
            private=True,
        )

    async def send(self, message: OutboundMessage) -> Delivery:
        await self._on_reply(message)
        await self.delivered.put(message)
        return Delivery(provider_message_ids=(message.idempotency_key,))

    async def aclose(self) -> None:
        return None
