"""Delivery: sends outbox rows through their channel, per customer in order, with retries and backoff.

A transient failure (5xx, timeout, 429) is retried with exponential backoff, honouring the platform's
``retry_after``; a permanent one (blocked, opted out, unknown chat) marks the row failed at once.
After ``worker.max_attempts`` the row is failed too. Nothing is sent to an address that opted out.
The parts of a split reply that went out before a failure are recorded, and a retry skips them.
Only channels this process has a sender for are delivered here. A row is claimed before it is sent
(``core.store.leases``): across processes one sends it, and a process killed mid-send loses the row
after ``worker.lease_seconds`` to another, which sends the parts not recorded as sent (the documented
window for a repeat: a send that happened but was not recorded before the kill). A one-time message
(a link code, ``reply_target["one_time"]``) has its text replaced once it is sent or has failed for good.
An answer of the agent (``origin`` ``bot``) still here when a person took the conversation over
(``core.pipeline.handoff``) is not sent: it is finished ``withheld``.

Files: a row's ``attachments`` rows (``direction`` ``out``; an operator's reply) go out as the message's
``files``, one part each after the text's parts. The adapters that can send files get the hub's
``core.ports.FileSource`` (``bind_files``) when the delivery is built: bytes from the media store, signed
links for Twilio. A row with files for a channel that cannot send them fails at once (``no_files``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping

from sqlalchemy import and_, func, or_, select, tuple_, update
from sqlalchemy.exc import OperationalError

from core.errors import PermanentDeliveryError, TransientDeliveryError
from core.events import record_event
from core.media.outbound import files_of
from core.messages import Address, OutboundMessage, buttons_from
from core.metrics import Metrics
from core.pipeline.backoff import next_attempt
from core.pipeline.delivery_status import settle_outbox, upsert_part
from core.pipeline.handoff_rows import open_handoff_row
from core.pipeline.lanes import LaneLoop
from core.ports import FileSource, Sender, UsesFileSource
from core.settings import WorkerSettings
from core.store.db import Database
from core.store.leases import Claim, Leases
from core.store.models import OptOut, OutboxRow, utcnow

log = logging.getLogger(__name__)

# recording a send that happened: retried on a busy database for about a minute and a half
RECORD_RETRIES = 12
RECORD_BACKOFF_BASE = 0.05
RECORD_BACKOFF_MAX = 10.0

ONE_TIME_SCRUBBED = "[one-time message: text removed after delivery]"


def _scrub(row: OutboxRow) -> None:
    if row.reply_target.get("one_time"):
        row.text = ONE_TIME_SCRUBBED


class Delivery:
    def __init__(
        self,
        *,
        db: Database,
        senders: Mapping[str, Sender],
        settings: WorkerSettings,
        metrics: Metrics,
        leases: Leases | None = None,
        files: FileSource | None = None,
    ) -> None:
        self._db = db
        self._leases = leases or Leases(db, ttl=settings.lease_seconds)
        self._senders = dict(senders)
        if files is not None:
            for sender in self._senders.values():
                if isinstance(sender, UsesFileSource):
                    sender.bind_files(files)
        self._settings = settings
        self._metrics = metrics
        self.lanes = LaneLoop(
            "outbox",
            heads=self._heads,
            handle=self._handle,
            concurrency=settings.concurrency,
            poll_interval=settings.poll_interval,
        )

    async def _heads(self) -> list[tuple[str, int]]:
        if not self._senders:
            return []
        oldest = (
            select(func.min(OutboxRow.id))
            .where(OutboxRow.status == "pending", OutboxRow.channel.in_(list(self._senders)))
            .group_by(OutboxRow.customer_id, OutboxRow.recipient)
        )
        now = utcnow()
        # a lane with a row in flight anywhere waits (also a row a merge brought in while it was sent)
        busy = select(OutboxRow.customer_id, OutboxRow.recipient).where(
            OutboxRow.status == "pending", OutboxRow.customer_id.is_not(None), OutboxRow.lease_until >= now
        )
        async with self._db.read() as session:
            rows = await session.execute(
                select(
                    OutboxRow.customer_id,
                    OutboxRow.recipient,
                    OutboxRow.id,
                    OutboxRow.next_attempt_at,
                    OutboxRow.lease_until,
                )
                .where(
                    OutboxRow.id.in_(oldest),
                    or_(
                        OutboxRow.customer_id.is_(None),
                        tuple_(OutboxRow.customer_id, OutboxRow.recipient).not_in(busy),
                    ),
                )
                .order_by(OutboxRow.id)
            )
            heads = [
                (f"{cid or recipient}", int(oid))
                for cid, recipient, oid, due, leased in rows
                if (due is None or due <= now) and (leased is None or leased < now)
            ]
        self._metrics.pending.labels("outbox").set(len(heads))
        return heads

    async def _handle(self, outbox_id: int) -> None:
        now = utcnow()
        claim = await self._leases.claim(
            OutboxRow,
            outbox_id,
            ready=and_(
                OutboxRow.status == "pending",
                or_(OutboxRow.next_attempt_at.is_(None), OutboxRow.next_attempt_at <= now),
            ),
        )
        if claim is None:  # sent, not due, or another process is on it
            return
        await self._leases.run(claim, self._deliver)

    async def _deliver(self, claim: Claim) -> None:
        outbox_id = claim.row_id
        async with self._db.read() as session:
            row = await session.get(OutboxRow, outbox_id)
            files = await files_of(session, outbox_id) if row is not None else ()
        if row is None or row.status != "pending":
            return
        sender = self._senders[row.channel]
        attempts = row.attempts + 1
        if await self._opted_out(row.recipient):
            await self._finish(claim, attempts, status="failed", error="opted_out")
            self._metrics.deliveries.labels(row.channel, "opted_out").inc()
            log.info("outbox %s not sent: the recipient opted out", outbox_id)
            return
        if row.origin == "bot" and row.customer_id is not None and await self._handed_off(row.customer_id):
            # answered by the agent before a person took the conversation over: the bot says nothing more
            await self._finish(claim, row.attempts, status="withheld", error="handoff")
            self._metrics.deliveries.labels(row.channel, "withheld").inc()
            log.info("outbox %s withheld: a person owns the conversation", outbox_id)
            return
        if files and not isinstance(sender, UsesFileSource):
            await self._finish(
                claim, attempts, status="failed", error="permanent: the channel sends no files"
            )
            self._metrics.deliveries.labels(row.channel, "no_files").inc()
            log.warning("outbox %s failed: %s cannot send files", outbox_id, row.channel)
            return
        message = OutboundMessage(
            channel=row.channel,
            recipient=Address.parse(row.recipient),
            text=row.text,
            idempotency_key=row.idempotency_key,
            reply_target=dict(row.reply_target),
            parts_sent=row.parts_sent,
            buttons=buttons_from(row.reply_target),
            files=files,
        )
        try:
            delivery = await sender.send(message)
        except PermanentDeliveryError as exc:
            await self._record_parts(row, exc.sent_ids)
            await self._finish(claim, attempts, status="failed", error=f"permanent: {exc}")
            self._metrics.deliveries.labels(row.channel, "permanent_failure").inc()
            log.warning("outbox %s failed permanently on %s", outbox_id, row.channel)
            return
        except TransientDeliveryError as exc:
            await self._record_parts(row, exc.sent_ids)
            await self._retry(claim, row, attempts, retry_after=exc.retry_after, error=type(exc).__name__)
            return
        except Exception as exc:  # an SDK error we did not map: treat as transient, bounded by max_attempts
            await self._retry(claim, row, attempts, retry_after=None, error=type(exc).__name__)
            return
        await self._record_sent(row, delivery.provider_message_ids, attempts)
        self._metrics.deliveries.labels(row.channel, "sent").inc()
        log.info("outbox %s sent on %s", outbox_id, row.channel)

    async def _record_sent(self, row: OutboxRow, ids: tuple[str, ...], attempts: int) -> None:
        """Record a send that happened. It cannot be undone, so a failing write (a busy database) is
        retried here until it commits: left pending, the row would be sent a second time. Not fenced by
        the claim, unlike a retry or a failure: a send that happened is a fact whoever holds the row."""
        for retry in range(RECORD_RETRIES):
            try:
                await self._record_parts(row, ids, done=True, attempts=attempts)
                return
            except OperationalError as exc:
                wait = min(RECORD_BACKOFF_MAX, RECORD_BACKOFF_BASE * 2**retry)
                log.warning(
                    "outbox %s sent but not recorded (%s); retrying in %.1fs",
                    row.id,
                    type(exc).__name__,
                    wait,
                )
                await asyncio.sleep(wait)
        await self._record_parts(row, ids, done=True, attempts=attempts)  # the last try raises

    async def _handed_off(self, customer_id: str) -> bool:
        async with self._db.read() as session:
            return await open_handoff_row(session, customer_id) is not None

    async def _opted_out(self, recipient: str) -> bool:
        async with self._db.read() as session:
            return await session.get(OptOut, recipient) is not None

    async def _record_parts(
        self, row: OutboxRow, ids: tuple[str, ...], *, done: bool = False, attempts: int | None = None
    ) -> None:
        """Remember the platform ids of the parts that went out (so a retry skips them)."""
        if not ids and not done:
            return
        async with self._db.session() as session:
            current = await session.get(OutboxRow, row.id)
            if current is None:
                return
            # a status report may have recorded some of these already
            # (core.pipeline.delivery_status._reconcile)
            current.provider_message_ids = [
                *current.provider_message_ids,
                *(i for i in ids if i not in current.provider_message_ids),
            ]
            current.parts_sent = max(current.parts_sent, row.parts_sent + len(ids))
            if done:
                current.status = "sent"
                current.lease_until = None
                current.sent_at = utcnow()
                current.last_error = None
                _scrub(current)
                if attempts is not None:
                    current.attempts = attempts
            for provider_id in ids:
                await upsert_part(
                    session, channel=row.channel, provider_message_id=provider_id, outbox_id=row.id
                )
            if done:
                await settle_outbox(session, row.id)
                await record_event(
                    session,
                    "reply.sent",
                    {
                        "outbox_id": current.id,
                        "inbox_id": current.inbox_id,
                        "customer_id": current.customer_id,
                        "channel": current.channel,
                        "origin": current.origin,
                        "parts": current.parts_sent,
                        "sent_at": current.sent_at,
                    },
                    personal={
                        "text": current.text,
                        "recipient": current.recipient,
                    },  # a one-time text is gone
                )
        row.parts_sent += len(ids)

    async def _retry(
        self, claim: Claim, row: OutboxRow, attempts: int, *, retry_after: float | None, error: str
    ) -> None:
        self._metrics.deliveries.labels(row.channel, "retry").inc()
        if attempts >= self._settings.max_attempts:
            await self._finish(claim, attempts, status="failed", error=f"gave up: {error}")
            log.warning("outbox %s failed after %d attempts on %s", row.id, attempts, row.channel)
            return
        due = next_attempt(
            utcnow(),
            attempts,
            base=self._settings.backoff_base,
            cap=self._settings.backoff_max,
            at_least=retry_after,
        )
        async with self._db.session() as session:
            await session.execute(
                update(OutboxRow)
                .where(claim.held(), OutboxRow.status == "pending")
                .values(attempts=attempts, next_attempt_at=due, last_error=error, lease_until=None)
            )
        log.info("outbox %s attempt %d failed (%s); retrying later", row.id, attempts, error)

    async def _finish(self, claim: Claim, attempts: int, *, status: str, error: str) -> None:
        async with self._db.session() as session:
            row = await session.get(OutboxRow, claim.row_id, with_for_update=True)
            if row is None or not claim.holds(row) or row.status != "pending":
                return  # another process took the row over after this claim lapsed: its word stands
            row.status, row.attempts, row.last_error, row.next_attempt_at = (
                status,
                attempts,
                error[:200],
                None,
            )
            _scrub(row)

    async def aclose(self) -> None:
        for sender in self._senders.values():
            await sender.aclose()
