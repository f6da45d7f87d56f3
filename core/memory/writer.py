"""Memory writes: after a reply is committed, its turns are written to Mem0 with provenance.

Jobs live in ``memory_jobs``, so a write survives a crash and a memory backend outage (it is retried
with backoff). Before writing, the job asks the store whether memories of those turns already exist:
a crash between the write and marking the job done does not write the same turn twice.

Policies: ``every_turn`` writes each customer message with its reply as soon as it is answered;
``summary`` writes one entry per conversation once it has been quiet for ``memory.quiet_seconds``.
With an LLM, Mem0 extracts facts (``infer=True``); offline, the customer's words are stored as they are.

A memory carries the provenance of one handle, so what it is made from is that handle's customer's own
words only (one write per handle): never the bot's replies. A reply draws on the customer's memories and
recent conversation on every handle, so a fact said on SMS and repeated in a reply on Telegram would
otherwise become a memory of the Telegram handle, and leave with it when that handle is unlinked.

What a person of the support team wrote during a handoff (an ``operator`` turn, ``core.pipeline.handoff``) is
the exception: it is what the team told the customer ("your refund is approved"), and the bot must know it
once the conversation is handed back. It is written like the customer's words, redacted the same way, but
as the team's: its content reads ``Our support team told the customer: ...``, its metadata says
``said_by: support_team``, and it is a write of its own (never mixed with the customer's words in one
memory), with the provenance of the handle it was sent to. A person may have quoted what the customer said
on another handle: the memory still goes with the handle the reply went to if that handle is unlinked.

Every text handed to ``MemoryStore.remember`` goes through ``core.agent.redaction.redact`` first: card
numbers, bank accounts, national ids, passwords, one-time codes and secrets never reach Mem0 (nor, with
``infer=True``, the LLM that extracts facts for it). The conversation log (``turns``) keeps the words as
they were; the prompt redacts them again when it shows them.
"""

from __future__ import annotations

import logging
from collections.abc import Collection

from sqlalchemy import and_, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from core.agent.conversation import ConversationLog, LoggedTurn
from core.agent.redaction import redact
from core.errors import MemoryUnavailable
from core.memory.categorize import categorize
from core.messages import Address, ChatMessage, Provenance
from core.metrics import Metrics
from core.pipeline.backoff import next_attempt
from core.pipeline.cases import SUMMARY_JOB, remember_resolution
from core.pipeline.lanes import LaneLoop
from core.ports import MemoryStore
from core.settings import WorkerSettings
from core.store.db import Database
from core.store.leases import Claim, Leases
from core.store.models import IdentityEvent, MemoryJob, MemoryMove, utcnow

log = logging.getLogger(__name__)


OPERATOR = "operator"  # the role of a turn a person of the support team wrote (``core.pipeline.handoff``)
TEAM_SAID = "Our support team told the customer: "  # how such a turn reads in memory


def _provenance(turns: list[LoggedTurn]) -> Provenance:
    said = [t for t in turns if t.role in ("customer", OPERATOR)] or turns
    first = said[0]
    address = Address.parse(first.address)
    return Provenance(
        channel=first.channel,
        handle=str(address),
        message_ids=tuple(dict.fromkeys(f"inbox:{t.inbox_id}" for t in turns if t.inbox_id is not None)),
        category=categorize(" ".join(t.text for t in said)),
        turn_ids=tuple(t.id for t in turns),
        sender_vouched=all(t.vouched for t in turns),
        said_by="support_team" if first.role == OPERATOR else "customer",
        said_at=first.created_at,
    )


def _groups(turns: list[LoggedTurn]) -> list[list[LoggedTurn]]:
    """The turns split by handle, by whether their message was vouched for, and by who wrote them (the
    team's turns apart), in order: a memory never mixes what an unvouched sender said with what the
    customer said on a vouched channel, nor the customer's words with the team's."""
    groups: dict[tuple[str, bool, bool], list[LoggedTurn]] = {}
    for turn in turns:
        groups.setdefault((turn.address, turn.vouched, turn.role == OPERATOR), []).append(turn)
    return list(groups.values())


def _messages(turns: list[LoggedTurn]) -> tuple[list[ChatMessage], tuple[str, ...]]:
    """What Mem0 gets of the turns: the customer's words and what the team told them (never a bot reply,
    which may repeat what other handles said), sensitive values replaced by placeholders; and the kinds
    replaced."""
    messages: list[ChatMessage] = []
    kinds: dict[str, None] = {}
    for turn in turns:
        if turn.role not in ("customer", OPERATOR):
            continue
        clean = redact(turn.text)
        kinds.update(dict.fromkeys(clean.kinds))
        content = TEAM_SAID + clean.text if turn.role == OPERATOR else clean.text
        messages.append(ChatMessage(role="user", content=content))
    return messages, tuple(kinds)


class MemoryWriter:
    def __init__(
        self,
        *,
        db: Database,
        memory: MemoryStore,
        conversation: ConversationLog,
        infer: bool,
        channels: Collection[str],
        settings: WorkerSettings,
        metrics: Metrics,
        leases: Leases | None = None,
    ) -> None:
        self._db = db
        self._leases = leases or Leases(db, ttl=settings.lease_seconds)
        self._memory = memory
        self._conversation = conversation
        self._infer = infer
        self._channels = tuple(channels)
        self._settings = settings
        self._metrics = metrics
        self.lanes = LaneLoop(
            "memory",
            heads=self._heads,
            handle=self._handle,
            concurrency=settings.concurrency,
            poll_interval=settings.poll_interval,
        )

    async def _heads(self) -> list[tuple[str, int]]:
        now = utcnow()
        oldest = (
            select(func.min(MemoryJob.id))
            .where(MemoryJob.status == "pending", MemoryJob.channel.in_(self._channels))
            .group_by(MemoryJob.customer_id)
        )
        async with self._db.read() as session:
            rows = await session.execute(
                select(MemoryJob.customer_id, MemoryJob.id, MemoryJob.due_at, MemoryJob.lease_until)
                .where(MemoryJob.id.in_(oldest))
                .order_by(MemoryJob.id)
            )
            heads = [
                (str(cid), int(jid))
                for cid, jid, due, leased in rows
                if due <= now and (leased is None or leased < now)
            ]
        self._metrics.pending.labels("memory").set(len(heads))
        return heads

    async def flush_summaries(self) -> None:
        """Make every pending summary due now (the conversation is over: e.g. the chat REPL quit)."""
        async with self._db.session() as session:
            await session.execute(
                update(MemoryJob)
                .where(
                    MemoryJob.status == "pending",
                    MemoryJob.kind == "summary",
                    MemoryJob.channel.in_(self._channels),
                )
                .values(due_at=utcnow())
            )
        self.lanes.wake()

    async def _handle(self, job_id: int) -> None:
        claim = await self._leases.claim(
            MemoryJob, job_id, ready=and_(MemoryJob.status == "pending", MemoryJob.due_at <= utcnow())
        )
        if claim is None:  # done, not due, or another process is on it
            return
        await self._leases.run(claim, self._write)

    async def _write(self, claim: Claim) -> None:
        job_id = claim.row_id
        async with self._db.read() as session:
            job = await session.get(MemoryJob, job_id)
        if job is None or job.status != "pending":
            return
        turns = await self._conversation.by_ids(job.customer_id, list(job.turn_ids))
        written: list[str] = []  # the handles whose memories this run wrote
        try:
            outcome = "nothing_to_write" if not turns else "already_written"
            if job.kind == SUMMARY_JOB:  # a resolved case's summary memory (``core.pipeline.cases``)
                outcome = await remember_resolution(self._db, self._memory, job_id)
            for group in _groups(turns):  # each group is one write: a re-run skips the ones done
                if await self._memory.covers_turns(job.customer_id, [t.id for t in group]):
                    continue
                await self._write_group(job.customer_id, group)
                written.append(group[0].address)
                outcome = "written"
        except MemoryUnavailable:
            await self._retry(claim, job)
            return
        async with self._db.session() as session:
            owner = await session.scalar(select(MemoryJob.customer_id).where(MemoryJob.id == job_id))
            if owner is not None and owner != job.customer_id:
                # the handle left (unlink, unmerge) while this job ran, and the identity change moved the
                # job: what it wrote landed with the customer the handle left, after that change's memory
                # move ran. Move it too; a job that wrote nothing runs again for its new customer.
                if not written:
                    log.info("memory job %s: its customer changed while it ran; runs again", job_id)
                    return
                await self._follow(session, job.customer_id, owner, written)
            done = await session.execute(
                update(MemoryJob)
                .where(claim.held(), MemoryJob.status == "pending")
                .values(status="done", last_error=None, lease_until=None)
            )
            if done.rowcount != 1:  # type: ignore[attr-defined]
                # taken over after this claim lapsed: the other run finds these memories and skips them
                log.warning("memory job %s: its claim lapsed while it ran; left to the new holder", job_id)
                return
        self._metrics.memory_writes.labels(outcome).inc()
        log.info("memory job %s for customer %s: %s", job_id, job.customer_id, outcome)

    @staticmethod
    async def _follow(session: AsyncSession, source: str, target: str, handles: list[str]) -> None:
        """Queue the memory move of ``handles`` from ``source`` to ``target`` (run by the identity layer's
        move runner, in order after the identity change that moved the job)."""
        event_id = await session.scalar(
            select(func.max(IdentityEvent.id)).where(IdentityEvent.address.in_(handles))
        )
        session.add(
            MemoryMove(
                event_id=int(event_id or 0),
                from_customer_id=source,
                to_customer_id=target,
                handles=sorted(set(handles)),
                status="pending",
            )
        )
        log.info("memory written for %s while its handle moved to %s: move queued", source, target)

    async def _write_group(self, customer_id: str, turns: list[LoggedTurn]) -> None:
        messages, kinds = _messages(turns)
        if kinds:  # the kinds only, never a value
            log.info("memory for customer %s: removed %s", customer_id, ", ".join(kinds))
        if not messages:
            return  # no words of the customer or the team (only bot replies): nothing to remember
        if self._infer:
            written = await self._memory.remember(
                customer_id, messages, provenance=_provenance(turns), infer=True
            )
        else:
            # offline: the words stored as they are (one entry per group)
            words = "\n".join(m.content for m in messages)
            if not words:
                return
            written = await self._memory.remember(
                customer_id,
                [ChatMessage(role="user", content=words)],
                provenance=_provenance(turns),
                infer=False,
            )
        # a newer address, phone or plan replaces the older statement (``core.memory.supersession``); the
        # write stands even if this fails (the old statement is then recalled beside the new, both dated)
        try:
            await self._memory.supersede(customer_id, written)
        except MemoryUnavailable:
            log.warning(
                "memory for customer %s: older statements not marked (backend unavailable)", customer_id
            )

    async def _retry(self, claim: Claim, job: MemoryJob) -> None:
        attempts = job.attempts + 1
        self._metrics.memory_writes.labels("retry").inc()
        due = next_attempt(
            utcnow(), attempts, base=self._settings.backoff_base, cap=self._settings.backoff_max
        )
        async with self._db.session() as session:
            await session.execute(
                update(MemoryJob)
                .where(claim.held(), MemoryJob.status == "pending")
                .values(attempts=attempts, due_at=due, last_error="memory_unavailable", lease_until=None)
            )
        log.warning("memory job %s: backend unavailable (attempt %d); queued", job.id, attempts)
