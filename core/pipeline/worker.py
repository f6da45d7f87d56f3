"""The worker: takes committed inbox rows, answers them, and commits the reply to the outbox.

For each pending inbox row, in arrival order per customer (one at a time per customer, different
customers concurrently, at most ``worker.concurrency`` at once):

1. resolve the sender to a customer (stamped on the row, so ordering is per customer);
2. run the agent (recall → prompt → LLM, or offline templates);
3. in ONE transaction: mark the row done (only if still pending), log both turns, write the reply to
   the outbox under the idempotency key ``reply:<inbox id>``, and queue the memory write
   (``core.pipeline.worker_commit``, which holds the worker's transactions).

Before the agent, the chain of interceptions (``core.pipeline.interceptions``: opt-out keywords, the
strangers' acknowledgement, the identity layer's proof codes, claims and attestations) may answer a message
itself: the first that does decides what is committed, in one transaction (``commit_outcome``): the
row's text replaced where a code must not stay, the reply and notices to the outbox, an opt-out recorded
or lifted, and the turns logged and remembered only where the interception keeps the message.

Every message carries the channel's word on its sender (``InboundMessage.sender_assurance``). A message
nobody vouches for (a bare email ``From:``, the console) is answered from that handle's own history only,
and what it says is logged and remembered as unvouched: recalled only for that handle, never for the
customer's other channels (``core.agent.agent``). Strangers are capped (``core.pipeline.strangers``): an
unvouched first contact makes a customer only within the new-customer caps (else the row is stored
``throttled``), and a message whose reply policy is ``acknowledge`` (an email without DMARC pass) never
reaches the agent or the interceptor: it gets one fixed acknowledgement at most. Outside a private
conversation the agent recalls nothing personal.

A crash anywhere before step 3 commits leaves the row pending, and it runs again on restart; after
step 3 the reply exists exactly once. Delivery (``core.pipeline.delivery``) and memory writes
(``core.memory.writer``) are separate lanes over their own tables.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Collection

from sqlalchemy import and_, func, or_, select, update

from core.agent.agent import Agent, AgentTurn, CaseAction
from core.errors import ClaimLost, LLMError, MediaUnavailable
from core.media.intake import MediaIntake, describe, refusals
from core.messages import Address, Assurance, Attachment
from core.metrics import Metrics
from core.pipeline.backoff import next_attempt
from core.pipeline.cases import Cases
from core.pipeline.handoff import FALLBACK_OPENING, Handoffs
from core.pipeline.handoff_requests import HandoffInterception
from core.pipeline.interceptions import Claimed, Outcome, chain
from core.pipeline.lanes import LaneLoop
from core.pipeline.ratings import RatingInterception, Ratings
from core.pipeline.strangers import Strangers
from core.pipeline.worker_commit import assurance_of, commit_outcome, commit_reply
from core.ports import IdentityResolver, Interceptor
from core.settings import MemorySettings, StrangerSettings, WorkerSettings
from core.store.db import Database
from core.store.leases import Claim, Leases
from core.store.models import Identity, InboxRow, utcnow

log = logging.getLogger(__name__)

# the fallback without a handoff service (a worker built bare, in tests): it promises no person
FALLBACK_REPLY = f"{FALLBACK_OPENING}; please write again in a little while."

# senders resolved per pass of the dispatcher: a burst of new senders is resolved in slices, between
# which the lanes yield to webhooks being acknowledged (``core.pipeline.ingress``)
STAMP_BATCH = 64


class InboxWorker:
    def __init__(
        self,
        *,
        db: Database,
        resolver: IdentityResolver,
        agent: Agent,
        channels: Collection[str],
        settings: WorkerSettings,
        memory_settings: MemorySettings,
        metrics: Metrics,
        on_reply: list[LaneLoop] | None = None,
        interceptor: Interceptor | None = None,
        strangers: Strangers | None = None,
        leases: Leases | None = None,
        handoffs: Handoffs | None = None,
        media: MediaIntake | None = None,
    ) -> None:
        self._db = db
        self._handoffs = handoffs
        self._media = media  # the files of a message, taken in before it is answered (``core.media``)
        self._leases = leases or Leases(db, ttl=settings.lease_seconds)
        self._strangers = strangers or Strangers(StrangerSettings())
        self._resolver = resolver
        # support cases (``core.pipeline.cases``): opened and resolved in ``commit_reply``; rated last
        self._cases = Cases(db, metrics=metrics)
        self._ratings = Ratings(db, metrics=metrics)
        self._chain = (
            *chain(interceptor, handoff=HandoffInterception(handoffs) if handoffs else None),
            RatingInterception(self._ratings),
        )
        self._agent = agent
        self._channels = tuple(channels)
        self._settings = settings
        self._memory_settings = memory_settings
        self._metrics = metrics
        self._downstream = on_reply or []
        # the last failure of the LLM, for a front end that tells its user why a reply was the fallback
        self.last_llm_error: LLMError | None = None
        self.lanes = LaneLoop(
            "inbox",
            heads=self._heads,
            handle=self._handle,
            concurrency=settings.concurrency,
            poll_interval=settings.poll_interval,
        )

    async def _stamp_customers(self) -> None:
        """Resolve the sender of every pending row that has no customer yet, oldest first."""
        async with self._db.read() as session:
            rows = list(
                await session.execute(
                    select(InboxRow.id, InboxRow.sender, InboxRow.sender_assurance)
                    .where(
                        InboxRow.status == "pending",
                        InboxRow.customer_id.is_(None),
                        InboxRow.channel.in_(self._channels),
                    )
                    .order_by(InboxRow.id)
                    .limit(STAMP_BATCH)
                )
            )
        for done, (inbox_id, sender, assurance) in enumerate(rows):
            if done and done % 8 == 0:
                await self.lanes.pace()  # let webhooks being acknowledged go first
            address, vouched_by = Address.parse(sender), assurance_of(assurance)
            if vouched_by is Assurance.UNVERIFIED and not await self._may_create(address):
                await self._refuse_stranger(inbox_id)
                continue
            resolution = await self._resolver.resolve(address, assurance=vouched_by)
            async with self._db.session() as session:
                await session.execute(
                    update(InboxRow).where(InboxRow.id == inbox_id).values(customer_id=resolution.customer_id)
                )

    async def _may_create(self, address: Address) -> bool:
        """An unseen unvouched sender makes a customer only within the caps (``core.pipeline.strangers``)."""
        async with self._db.read() as session:
            known = await session.scalar(select(Identity.id).where(Identity.address == str(address)))
            return known is not None or await self._strangers.may_create(session, address)

    async def _refuse_stranger(self, inbox_id: int) -> None:
        async with self._db.session() as session:
            row = await session.get(InboxRow, inbox_id)
            if row is None or row.status != "pending":
                return
            row.status, row.last_error, row.finished_at = "throttled", "new_sender_cap", utcnow()
            channel = row.channel
        self._metrics.inbound_throttled.labels(channel).inc()
        log.warning("inbox %s throttled: the cap on new unverified senders is reached", inbox_id)

    async def _heads(self) -> list[tuple[str, int]]:
        """The oldest pending row of each customer, if it is due."""
        await self._stamp_customers()
        oldest = (
            select(func.min(InboxRow.id))
            .where(
                InboxRow.status == "pending",
                InboxRow.customer_id.is_not(None),
                InboxRow.channel.in_(self._channels),
            )
            .group_by(InboxRow.customer_id)
        )
        now = utcnow()
        # a customer with a row in flight anywhere (any process) waits: one row of a customer at a time,
        # also when a merge has just given it the rows of another customer that were being answered
        busy = select(InboxRow.customer_id).where(
            InboxRow.status == "pending", InboxRow.customer_id.is_not(None), InboxRow.lease_until >= now
        )
        async with self._db.read() as session:
            rows = await session.execute(
                select(InboxRow.customer_id, InboxRow.id, InboxRow.next_attempt_at)
                .where(InboxRow.id.in_(oldest), InboxRow.customer_id.not_in(busy))
                .order_by(InboxRow.id)
            )
            heads = [(str(cid), int(iid)) for cid, iid, due in rows if due is None or due <= now]
        self._metrics.pending.labels("inbox").set(len(heads))
        return heads

    async def _handle(self, inbox_id: int) -> None:
        now = utcnow()
        claim = await self._leases.claim(
            InboxRow,
            inbox_id,
            ready=and_(
                InboxRow.status == "pending",
                InboxRow.customer_id.is_not(None),
                or_(InboxRow.next_attempt_at.is_(None), InboxRow.next_attempt_at <= now),
            ),
        )
        if claim is None:  # answered, not due, or another process is on it
            return
        try:
            await self._leases.run(claim, self._answer)
        except ClaimLost:
            log.info("inbox %s: taken over by another process; left to it", inbox_id)

    async def _answer(self, claim: Claim) -> None:
        inbox_id = claim.row_id
        async with self._db.read() as session:
            row = await session.get(InboxRow, inbox_id)
            if row is None or row.status != "pending" or row.customer_id is None:
                return
            customer_id = row.customer_id
        if row.attempts == 0:
            self._metrics.pickup_seconds.observe(max(0.0, (utcnow() - row.created_at).total_seconds()))
        attachments: list[Attachment] = []
        if row.attachments and self._media is not None:
            last_try = row.attempts + 1 >= self._settings.max_attempts
            try:
                attachments = await self._media.take_in(row, give_up=last_try)
            except MediaUnavailable:
                await self._retry_later(claim, row.attempts + 1, "media_unavailable")
                return
        said = "\n".join(part for part in (row.text, describe(attachments)) if part)
        sender = Address.parse(row.sender)
        claimed = Claimed(
            row=row,
            customer_id=customer_id,
            sender=sender,
            vouched_by=assurance_of(row.sender_assurance),
            fence=claim.fence,
        )
        for link in self._chain:
            outcome = await link(claimed)
            if outcome is not None:
                await self._commit_outcome(claim, row, outcome)
                return
        resolution = await self._resolver.resolve(sender, assurance=claimed.vouched_by)
        # a vouched handle writing on a message its channel does not vouch for is not vouched for
        assurance = resolution.assurance if claimed.vouched else Assurance.UNVERIFIED
        turn = AgentTurn(
            customer_id=resolution.customer_id,
            assurance=assurance,
            sender=row.sender,
            channel=row.channel,
            text=said,
            inbox_id=inbox_id,
            private=row.private is True,
            attachments=tuple(attachments),
            cases=await self._cases.notes(resolution.customer_id) if row.private is True else (),
        )
        started = time.perf_counter()
        handoff: str | None = None  # who asked for a person, when this reply opens a handoff
        note: str | None = None
        recalled: list[str] = []
        actions: tuple[CaseAction, ...] = ()  # what is done about support cases (``core.pipeline.cases``)
        try:
            reply = await self._agent.respond(turn)
            actions = self._cases.decide(turn, reply, vouched=claimed.vouched)
            text, mode = reply.text, ("offline" if reply.offline else "llm")
            recalled = [memory.id for memory in reply.memories]
            if reply.handoff and self._handoffs is not None and claimed.vouched:
                # the LLM's tool: only for a sender its channel vouches for (a forged sender must not
                # silence the bot for the customer it claims to be)
                text, mode, handoff = self._handoffs.acknowledgement(), "handoff", "assistant"
                note = reply.handoff_reason
            elif not text.strip() and not actions:  # a tool call without words, and nothing to do
                text = FALLBACK_REPLY
        except LLMError as exc:
            self._metrics.llm_failures.inc()
            self.last_llm_error = exc
            attempts = row.attempts + 1
            if attempts < self._settings.max_attempts:
                await self._retry_later(claim, attempts, "llm_error")
                return
            log.warning("inbox %s: LLM failed %d times; sending the fallback reply", inbox_id, attempts)
            text, mode = FALLBACK_REPLY, "fallback"
            if self._handoffs is not None:  # the fallback promises a person: the handoff is queued
                text, handoff = self._handoffs.fallback(), "fallback"
        refused = refusals(attachments)
        if refused and handoff is None:  # the customer hears which files were not taken, first
            text = f"{refused}\n\n{text}"
        if await commit_reply(
            self._db,
            claim,
            row,
            resolution.customer_id,
            text,
            memory_settings=self._memory_settings,
            handoffs=self._handoffs,
            support_cases=self._cases,
            metrics=self._metrics,
            handoff=handoff,
            note=note,
            recalled=recalled,
            cases=actions,
            offline=mode == "offline",
            said=said,
        ):
            self._metrics.replies.labels(row.channel, mode).inc()
            self._metrics.turn_seconds.observe(time.perf_counter() - started)
            self._wake_downstream()

    async def _commit_outcome(self, claim: Claim, row: InboxRow, outcome: Outcome) -> None:
        """Write what an interception decided (``core.pipeline.worker_commit``), in one transaction."""
        # an identity interception may have linked the sender elsewhere: the reply belongs to its customer
        customer_id = (await self._resolver.resolve(Address.parse(row.sender))).customer_id
        written, reply = await commit_outcome(
            self._db,
            claim,
            row,
            outcome,
            customer_id=customer_id,
            memory_settings=self._memory_settings,
            ratings=self._ratings,
            strangers=self._strangers,
            handoffs=self._handoffs,
        )
        if not written:
            return
        if reply is not None:
            self._metrics.replies.labels(row.channel, outcome.label).inc()
        log.info(
            "inbox %s handled by the %s interception (%d notices)",
            row.id,
            outcome.label,
            len(outcome.notices),
        )
        if reply is not None or outcome.notices:
            self._wake_downstream()

    def _wake_downstream(self) -> None:
        """Tell the delivery and memory lanes that there is new work (they also poll)."""
        for loop in self._downstream:
            loop.wake()

    async def _retry_later(self, claim: Claim, attempts: int, reason: str) -> None:
        due = next_attempt(
            utcnow(), attempts, base=self._settings.backoff_base, cap=self._settings.backoff_max
        )
        async with self._db.session() as session:
            await session.execute(
                update(InboxRow)
                .where(claim.held(), InboxRow.status == "pending")
                .values(attempts=attempts, next_attempt_at=due, last_error=reason, lease_until=None)
            )
        log.info("inbox %s: attempt %d failed (%s); retrying later", claim.row_id, attempts, reason)
