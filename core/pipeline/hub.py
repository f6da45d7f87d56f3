"""The hub: the store, inbox, worker, delivery and memory writer of one process, started and stopped together.

``background`` coroutines (e.g. re-running queued memory moves, retention rounds) run while the hub
runs. Acknowledgements come first: while ``accept`` (or a webhook route, through ``ingress``) is
receiving, the worker, delivery and memory lanes hold back new work (``core.pipeline.ingress``).

Built only by ``core.compose.build_hub`` (the wiring point), which hands in the concrete memory store,
chat model, identity resolver and channel senders.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection, Coroutine, Mapping, Sequence
from typing import Any

from sqlalchemy import func, select, text

from core.agent.agent import Agent
from core.agent.conversation import ConversationLog
from core.memory.writer import MemoryWriter
from core.messages import InboundMessage, StatusUpdate
from core.metrics import Metrics
from core.pipeline.delivery import Delivery
from core.pipeline.delivery_status import record_status
from core.pipeline.flood import SenderLimits
from core.pipeline.inbox import Accepted, Inbox
from core.pipeline.ingress import IngressGate
from core.pipeline.strangers import Strangers
from core.pipeline.worker import InboxWorker
from core.ports import ChatModel, IdentityResolver, InboundServer, Interceptor, MemoryStore, Sender
from core.settings import Settings
from core.store.db import Database
from core.store.models import InboxRow, MemoryJob, OutboxRow, utcnow

log = logging.getLogger(__name__)


class Hub:
    def __init__(
        self,
        *,
        settings: Settings,
        db: Database,
        memory: MemoryStore,
        model: ChatModel | None,
        resolver: IdentityResolver,
        senders: Mapping[str, Sender],
        inbox_channels: Collection[str] | None = None,
        interceptor: Interceptor | None = None,
        background: Sequence[Callable[[], Coroutine[Any, Any, None]]] = (),
    ) -> None:
        self.settings = settings
        self.db = db
        self.memory = memory
        self.model = model
        self.resolver = resolver
        self.metrics = Metrics()
        self.senders = dict(senders)
        self.channels = tuple(inbox_channels if inbox_channels is not None else senders)
        self.conversation = ConversationLog(db)
        self.agent = Agent(
            memory=memory, conversation=self.conversation, model=model, settings=settings.memory
        )
        self.delivery = Delivery(db=db, senders=senders, settings=settings.worker, metrics=self.metrics)
        self.memory_writer = MemoryWriter(
            db=db,
            memory=memory,
            conversation=self.conversation,
            infer=model is not None,
            channels=self.channels,
            settings=settings.worker,
            metrics=self.metrics,
        )
        self.worker = InboxWorker(
            db=db,
            resolver=resolver,
            agent=self.agent,
            channels=self.channels,
            settings=settings.worker,
            memory_settings=settings.memory,
            metrics=self.metrics,
            on_reply=[self.delivery.lanes, self.memory_writer.lanes],
            interceptor=interceptor,
            strangers=Strangers(settings.strangers),
        )
        self._background = tuple(background)
        self._background_tasks: list[asyncio.Task[None]] = []
        self.inbox = Inbox(db, on_accept=self.worker.lanes.wake)
        self.sender_limits = SenderLimits(
            per_minute=settings.worker.sender_rate_per_minute, burst=settings.worker.sender_burst
        )
        self.ingress = IngressGate()
        for loop in (self.worker.lanes, self.delivery.lanes, self.memory_writer.lanes):
            loop.pace = self.ingress.yield_to_ingress
        self.started = False

    async def accept(self, message: InboundMessage) -> Accepted:
        """Commit an inbound message; the caller answers the platform only after this returns.

        A message over its sender's rate (``core.pipeline.flood``) is committed as ``throttled``: never
        answered.
        """
        sender = str(message.sender)
        control = message.control is not None  # opt-out keywords always count
        throttled = not control and not self.sender_limits.has_room(sender)
        with self.ingress.receiving():
            accepted = await self.inbox.accept(message, status="throttled" if throttled else "pending")
        if not accepted.duplicate and not throttled:
            await self.sender_limits.take(sender)
        if accepted.duplicate:
            self.metrics.inbound_duplicates.labels(message.channel).inc()
        elif throttled:
            self.metrics.inbound_throttled.labels(message.channel).inc()
            log.warning("inbox %s throttled: its sender is over the inbound rate", accepted.inbox_id)
        else:
            self.metrics.inbound_accepted.labels(message.channel).inc()
        return accepted

    async def record_status(self, channel: str, update: StatusUpdate) -> None:
        """Apply a platform's delivery report (never moves a status backwards)."""
        await record_status(self.db, channel, update)
        self.metrics.status_updates.labels(channel, update.status).inc()

    async def start(self) -> None:
        for loop in (self.worker.lanes, self.delivery.lanes, self.memory_writer.lanes):
            loop.start()
        for sender in self.senders.values():
            if isinstance(sender, InboundServer):
                await sender.start_inbound(self.accept)
        self._background_tasks = [asyncio.create_task(run()) for run in self._background]
        self.started = True
        log.info("hub started: channels=%s llm=%s", ",".join(self.channels) or "-", self.model is not None)

    async def stop(self) -> None:
        self.started = False
        for task in self._background_tasks:
            task.cancel()
        await asyncio.gather(*self._background_tasks, return_exceptions=True)
        self._background_tasks = []
        for sender in self.senders.values():
            if isinstance(sender, InboundServer):
                await sender.stop_inbound()
        for loop in (self.worker.lanes, self.delivery.lanes, self.memory_writer.lanes):
            await loop.stop()
        await self.inbox.aclose()
        await self.delivery.aclose()
        if self.model is not None:
            await self.model.aclose()
        await self.memory.aclose()
        await self.db.aclose()

    async def ready(self) -> bool:
        try:
            async with self.db.read() as session:
                await session.execute(text("SELECT 1"))
        except Exception as exc:
            log.warning("readiness check failed: %s", type(exc).__name__)
            return False
        return self.started

    async def backlog(self) -> dict[str, int]:
        """Rows still to do for this process: inbox and outbox of its channels, memory jobs due now."""
        async with self.db.session() as session:
            inbox = await session.scalar(
                select(func.count()).where(InboxRow.status == "pending", InboxRow.channel.in_(self.channels))
            )
            outbox = await session.scalar(
                select(func.count()).where(
                    OutboxRow.status == "pending", OutboxRow.channel.in_(self.channels)
                )
            )
            memory = await session.scalar(
                select(func.count()).where(
                    MemoryJob.status == "pending",
                    MemoryJob.channel.in_(self.channels),
                    MemoryJob.due_at <= utcnow(),
                )
            )
        return {"inbox": int(inbox or 0), "outbox": int(outbox or 0), "memory": int(memory or 0)}

    async def wait_idle(self, *, timeout: float = 60.0, interval: float = 0.05) -> dict[str, int]:  # noqa: ASYNC109
        """Wait until the backlog is empty (or ``timeout`` passes); returns what is left."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            left = await self.backlog()
            if not any(left.values()) or asyncio.get_running_loop().time() >= deadline:
                return left
            await asyncio.sleep(interval)
