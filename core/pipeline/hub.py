"""The hub: the store, inbox, worker, delivery and memory writer of one process, started and stopped together.

Its ``role`` says which of them run here (``threadline serve --role``): many processes on many hosts may
share one PostgreSQL, some taking messages in (``web``), some working them off (``worker``), claiming
rows with leases (``core.store.leases``) and woken by ``NOTIFY`` (``core.store.wakeups``).

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
from typing import Any, Literal

from sqlalchemy import func, select, text

from core.agent.agent import Agent
from core.agent.conversation import ConversationLog
from core.events.sender import EventSender
from core.media.intake import MediaIntake
from core.media.links import links_for
from core.media.outbound import StoredFiles
from core.media.pg_store import media_store
from core.memory.writer import MemoryWriter
from core.messages import InboundMessage, StatusUpdate
from core.metrics import Metrics
from core.pipeline.delivery import Delivery
from core.pipeline.delivery_status import record_status
from core.pipeline.flood import SenderLimits
from core.pipeline.handoff import Handoffs
from core.pipeline.inbox import Accepted, Inbox
from core.pipeline.ingress import IngressGate
from core.pipeline.strangers import Strangers
from core.pipeline.worker import InboxWorker
from core.ports import ChatModel, IdentityResolver, InboundServer, Interceptor, MemoryStore, Sender
from core.settings import Settings
from core.store.db import Database
from core.store.leases import Leases
from core.store.models import InboxRow, MemoryJob, OutboxRow, utcnow
from core.store.wakeups import WakeupListener

# what a process runs: ``web`` takes messages in (webhooks, the SMTP listener) and commits them;
# ``worker`` answers, delivers and remembers (the lanes, background rounds); ``all`` both
Role = Literal["all", "web", "worker"]
ROLES: tuple[Role, ...] = ("all", "web", "worker")

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
        role: Role = "all",
        handoffs: Handoffs | None = None,
    ) -> None:
        if role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}")
        self.role: Role = role
        self.settings = settings
        self.db = db
        self.memory = memory
        self.model = model
        self.resolver = resolver
        self.metrics = Metrics()
        self.handoffs = handoffs
        if handoffs is not None:
            handoffs.metrics = self.metrics
        self.senders = dict(senders)
        self.channels = tuple(inbox_channels if inbox_channels is not None else senders)
        self.conversation = ConversationLog(db)
        # the files of messages (``core.media``): content-addressed under the data dir, or in PostgreSQL
        # in scale mode (every process sees them: ``core.media.pg_store``)
        kept_media = media_store(db, settings.data_dir)
        self.agent = Agent(
            memory=memory,
            conversation=self.conversation,
            model=model,
            settings=settings.memory,
            images=kept_media if settings.llm.vision else None,  # a model that sees is shown photos
        )
        self.leases = Leases(db, ttl=settings.worker.lease_seconds)
        self.media = MediaIntake(db, kept_media, settings.attachments, senders)
        self.delivery = Delivery(
            db=db,
            senders=senders,
            settings=settings.worker,
            metrics=self.metrics,
            leases=self.leases,
            files=StoredFiles(self.media.store, links_for(settings)),  # files people send back
        )
        self.memory_writer = MemoryWriter(
            db=db,
            memory=memory,
            conversation=self.conversation,
            infer=model is not None,
            channels=self.channels,
            settings=settings.worker,
            metrics=self.metrics,
            leases=self.leases,
        )
        # the business's event webhooks (``core.events``): signed, retried, claimed with the same leases
        self.events = EventSender(
            db=db,
            settings=settings.events,
            poll_interval=settings.worker.poll_interval,
            metrics=self.metrics,
            leases=self.leases,
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
            leases=self.leases,
            handoffs=handoffs,
            media=self.media,
        )
        self._background = tuple(background)
        self._background_tasks: list[asyncio.Task[None]] = []
        self._listener: WakeupListener | None = None
        # flood buckets are rows of the store, decided in the inbox's own transaction (every process
        # shares them: core.pipeline.flood)
        self.sender_limits = SenderLimits(
            per_minute=settings.worker.sender_rate_per_minute, burst=settings.worker.sender_burst
        )
        self.inbox = Inbox(db, on_accept=self.worker.lanes.wake, limits=self.sender_limits)
        self.ingress = IngressGate()
        for loop in (self.worker.lanes, self.delivery.lanes, self.memory_writer.lanes, self.events.lanes):
            loop.pace = self.ingress.yield_to_ingress
        self.started = False

    async def accept(self, message: InboundMessage) -> Accepted:
        """Commit an inbound message; the caller answers the platform only after this returns.

        A message over its sender's rate (``core.pipeline.flood``, shared by every process on the store) is
        committed as ``throttled``: never answered. Opt-out keywords are never throttled.
        """
        with self.ingress.receiving():
            message = await self.media.keep_inline(message)  # bytes that came with it: to the store
            accepted = await self.inbox.accept(message)
        if accepted.duplicate:
            self.metrics.inbound_duplicates.labels(message.channel).inc()
        elif accepted.throttled:
            self.metrics.inbound_throttled.labels(message.channel).inc()
            log.warning("inbox %s throttled: its sender is over the inbound rate", accepted.inbox_id)
        else:
            self.metrics.inbound_accepted.labels(message.channel).inc()
        return accepted

    async def record_status(self, channel: str, update: StatusUpdate) -> None:
        """Apply a platform's delivery report (never moves a status backwards)."""
        await record_status(self.db, channel, update)
        self.metrics.status_updates.labels(channel, update.status).inc()

    @property
    def runs_lanes(self) -> bool:
        """Whether this process answers, delivers and remembers (roles ``all`` and ``worker``)."""
        return self.role != "web"

    @property
    def receives(self) -> bool:
        """Whether this process takes messages in: webhooks, inbound servers (roles ``all`` and ``web``)."""
        return self.role != "worker"

    def _wake_lane(self, lane: str) -> None:
        {
            "inbox": self.worker.lanes,
            "outbox": self.delivery.lanes,
            "memory": self.memory_writer.lanes,
            "events": self.events.lanes,
        }[lane].wake()

    async def start(self) -> None:
        if self.runs_lanes:
            for loop in (self.worker.lanes, self.delivery.lanes, self.memory_writer.lanes, self.events.lanes):
                loop.start()
            if self.db.dialect == "postgresql":  # work committed by other processes wakes the lanes
                url = self.db.engine.url.render_as_string(hide_password=False)
                self._listener = WakeupListener(url, self._wake_lane)
                self._listener.start()
            self._background_tasks = [asyncio.create_task(run()) for run in self._background]
        if self.receives:
            for sender in self.senders.values():
                if isinstance(sender, InboundServer):
                    await sender.start_inbound(self.accept)
        self.started = True
        log.info(
            "hub started: role=%s channels=%s llm=%s",
            self.role,
            ",".join(self.channels) or "-",
            self.model is not None,
        )

    async def stop(self) -> None:
        self.started = False
        for task in self._background_tasks:
            task.cancel()
        await asyncio.gather(*self._background_tasks, return_exceptions=True)
        self._background_tasks = []
        if self._listener is not None:
            await self._listener.stop()
            self._listener = None
        if self.receives:
            for sender in self.senders.values():
                if isinstance(sender, InboundServer):
                    await sender.stop_inbound()
        for loop in (self.worker.lanes, self.delivery.lanes, self.memory_writer.lanes, self.events.lanes):
            await loop.stop()
        await self.inbox.aclose()
        await self.delivery.aclose()
        await self.events.aclose()
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
