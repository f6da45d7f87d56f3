"""Retention: conversation logs and memories older than ``retention.days`` are deleted, periodically.

What goes, once older than the cutoff:

- ``turns`` (the conversation log), by when they were said;
- ``inbox`` rows that are finished (answered, throttled, …) and no longer referenced by a reply or a turn;
- ``outbox`` rows (and their ``outbound_parts``) that are no longer pending: sent, failed, dead letters;
- finished ``memory_jobs`` and finished ``link_challenges``;
- closed ``handoffs``, by when they were closed, and the operators' audit log (``operator_actions``), by when
  the action was taken;
- resolved ``cases``, by when they were resolved (``core.pipeline.cases``);
- ``event_deliveries`` that are finished (``sent``, ``dead``, ``cancelled``), by when the event happened
  (``core.events``): the delivery log of the business's webhooks;
- ``attachments`` rows, with their messages (by when the message came; never those of a message still
  pending or a reply still to send), and their bytes in the media store once no row holds them
  (``core.media.unreferenced``: the same file another customer sent more recently stays);
- memories, per customer, by when they were written (``MemoryStore.forget_before``: for the local store
  that includes Mem0's history of them and its raw-message table).

What stays: anything still pending (a message not yet answered, a reply not yet sent: nothing
acknowledged is dropped), an open handoff however old (the bot stays silent until a person hands it back),
an open case however old (the problem is still the customer's), an event delivery still to send (pending,
or failed with a retry due), customers and their handles, the identity ledger (the audit of who is who; a
forgotten customer's entries are already redacted by ``identity.erasure``), and opt-outs (STOP must keep
working). A memory outage skips the memories this round; the next round catches up.

``Retention.run_forever`` is a hub background task when ``retention.days`` is set; ``threadline retention``
runs one round by hand.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, delete, or_, select, text

from core.errors import MemoryUnavailable
from core.media.unreferenced import remove_unreferenced
from core.ports import MediaStore, MemoryStore
from core.settings import RetentionSettings
from core.store.db import Database
from core.store.leases import NamedLeases
from core.store.models import (
    AttachmentRow,
    Case,
    Customer,
    EventDelivery,
    Handoff,
    InboxRow,
    LinkChallenge,
    MemoryJob,
    OperatorAction,
    OutboundPart,
    OutboxRow,
    Turn,
    utcnow,
)

log = logging.getLogger(__name__)

ROUND_LEASE = "retention"
# event deliveries nothing will send again (``pending`` and ``failed`` ones are still to send)
FINISHED_DELIVERIES = ("sent", "dead", "cancelled")


@dataclass(frozen=True, slots=True, kw_only=True)
class RetentionReport:
    """One round: the cutoff, and how many rows or memories each store lost."""

    cutoff: datetime
    removed: dict[str, int] = field(default_factory=dict)
    memory_unavailable: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "cutoff": self.cutoff.isoformat(),
            "removed": dict(self.removed),
            "memory_unavailable": self.memory_unavailable,
        }


class Retention:
    def __init__(
        self,
        *,
        db: Database,
        memory: MemoryStore,
        settings: RetentionSettings,
        media: MediaStore | None = None,
    ) -> None:
        self._db = db
        self._memory = memory
        self._settings = settings
        self._media = media  # the bytes of attachments: removed with the last row that holds them
        self._rounds = NamedLeases(db)

    @property
    def enabled(self) -> bool:
        return self._settings.days is not None

    def cutoff(self, now: datetime | None = None) -> datetime:
        if self._settings.days is None:
            raise ValueError("retention.days is not set")
        return (now or utcnow()) - timedelta(days=self._settings.days)

    async def run_once(self, *, now: datetime | None = None) -> RetentionReport:
        """Delete what is older than the cutoff, everywhere; returns what went."""
        cutoff = self.cutoff(now)
        removed, digests = await self._purge_tables(cutoff)
        removed["attachment_files"] = await remove_unreferenced(self._db, self._media, digests)
        removed["memories"] = 0
        unavailable = False
        async with self._db.read() as session:
            customers = list(await session.scalars(select(Customer.id).order_by(Customer.id)))
        for customer_id in customers:
            try:
                removed["memories"] += await self._memory.forget_before(customer_id, cutoff)
            except MemoryUnavailable:
                unavailable = True
                log.warning("retention: memory unavailable; memories are left for the next round")
                break
        if self._db.dialect == "sqlite" and any(removed.values()):
            async with (
                self._db.engine.connect() as conn
            ):  # deleted rows are zeroed (secure_delete); the WAL too
                await conn.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))
        log.info("retention: removed %s older than %s", removed, cutoff.date().isoformat())
        return RetentionReport(cutoff=cutoff, removed=removed, memory_unavailable=unavailable)

    async def _purge_tables(self, cutoff: datetime) -> tuple[dict[str, int], set[str]]:
        """The rows older than ``cutoff`` deleted; what went, and the digests of the files whose rows went."""
        removed: dict[str, int] = {}
        async with self._db.session() as session:

            async def drop(name: str, statement: Any) -> None:
                result = await session.execute(statement)
                removed[name] = int(result.rowcount or 0)  # type: ignore[attr-defined]

            # files go with their messages: never those of a message still to answer or a reply still to send
            old_files = and_(
                AttachmentRow.created_at < cutoff,
                or_(
                    AttachmentRow.inbox_id.is_(None),
                    AttachmentRow.inbox_id.not_in(select(InboxRow.id).where(InboxRow.status == "pending")),
                ),
                or_(
                    AttachmentRow.outbox_id.is_(None),
                    AttachmentRow.outbox_id.not_in(select(OutboxRow.id).where(OutboxRow.status == "pending")),
                ),
            )
            digests = {d for d in await session.scalars(select(AttachmentRow.sha256).where(old_files)) if d}
            await drop("attachments", delete(AttachmentRow).where(old_files))
            old_outbox = select(OutboxRow.id).where(
                OutboxRow.status != "pending", OutboxRow.created_at < cutoff
            )
            await drop("outbound_parts", delete(OutboundPart).where(OutboundPart.outbox_id.in_(old_outbox)))
            await drop("outbox", delete(OutboxRow).where(OutboxRow.id.in_(old_outbox)))
            await drop("turns", delete(Turn).where(Turn.created_at < cutoff))
            referenced_by_reply = select(OutboxRow.inbox_id).where(OutboxRow.inbox_id.is_not(None))
            referenced_by_turn = select(Turn.inbox_id).where(Turn.inbox_id.is_not(None))
            await drop(
                "inbox",
                delete(InboxRow).where(
                    InboxRow.status != "pending",
                    InboxRow.received_at < cutoff,
                    InboxRow.id.not_in(referenced_by_reply),
                    InboxRow.id.not_in(referenced_by_turn),
                ),
            )
            await drop(
                "memory_jobs",
                delete(MemoryJob).where(MemoryJob.status != "pending", MemoryJob.created_at < cutoff),
            )
            await drop(
                "link_challenges",
                delete(LinkChallenge).where(
                    LinkChallenge.created_at < cutoff,
                    or_(LinkChallenge.status != "pending", LinkChallenge.expires_at < cutoff),
                ),
            )
            await drop(
                "handoffs",
                delete(Handoff).where(Handoff.status == "closed", Handoff.closed_at < cutoff),
            )
            await drop("operator_actions", delete(OperatorAction).where(OperatorAction.at < cutoff))
            await drop("cases", delete(Case).where(Case.status == "resolved", Case.resolved_at < cutoff))
            await drop(
                "event_deliveries",
                delete(EventDelivery).where(
                    EventDelivery.status.in_(FINISHED_DELIVERIES), EventDelivery.created_at < cutoff
                ),
            )
        return removed, digests

    async def run_round(self) -> RetentionReport | None:
        """This interval's round, unless another process sharing the database holds it (None then)."""
        if not await self._rounds.acquire(ROUND_LEASE, ttl=self._settings.interval_seconds * 0.9):
            log.debug("retention: another process runs this round")
            return None
        return await self.run_once()

    async def run_forever(self) -> None:
        """A round now, then one every ``retention.interval_seconds``; a failed round is logged. Across
        processes sharing the database one round runs per interval: the process holding the named lease
        ``retention`` (``core.store.leases.NamedLeases``), which lasts the interval."""
        while True:
            try:
                await self.run_round()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("retention round failed: %s", type(exc).__name__)
            await asyncio.sleep(self._settings.interval_seconds)
