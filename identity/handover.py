"""Our own rows following an identity change: a whole customer moved, or some handles leaving one.

``move_all`` (a merge): every row of the source customer now belongs to the target (its support cases
too, open and resolved, ``core.pipeline.cases``, and its files, ``attachments``); nothing is split, so
nothing is mixed. Its handoffs (``core.pipeline.handoff``) go too; a customer has at most one open handoff
(a partial unique index), so when both have one open the source's is closed first (``closed_by``
``merge``) and the target's stays. The operators' audit log (``operator_actions``) keeps the customer id
each action was taken on: it is the record of what was done, and is erased with the family.

``hand_over`` (an unlink, the undo of a merge, a link of a handle away from a customer that had others):
the leaving handles take what their own words said and nothing the customer they leave derived from its
other handles:

- their messages (customer turns, inbox rows), the files of those messages (``attachments``) and their
  link requests go with them (a file of a reply follows its outbox row);
- a reply (bot or operator) is written from the whole customer: its memories and its recent conversation
  on every handle. A reply written while the customer held both leaving and staying handles
  (``identity.tenure``) may quote either side, so it is withheld, on both sides: its text is removed and
  no model is shown it again (``core.agent.conversation.WITHHELD``); the emptied row stays in its own
  handle's conversation (the leaving handle's go with it). Its outbox row (the record of what was sent,
  and of a delivery still to make) keeps the text and stays with the customer it was written for; it goes
  when either side is forgotten (``identity.erasure``). Replies written while the leaving handles were on
  their own (before they came, or while the customer had no other handle) go with them as they are;
- memory jobs follow their turns: a job whose turns are split is split, and withheld replies leave the
  jobs (a running job that moves is handled by ``core.memory.writer``).

Handoffs and support cases stay with the customer they are on, in an unlink or an unmerge alike: a handoff
is about the conversation as the team saw it, not about one handle, so after an unmerge the handoffs the
source brought stay (as history, or open) with the customer it was merged into. An open one keeps the bot
silent for that customer until it is handed back; the customer that split off starts with none.

Mem0 memories are moved by the identity layer's memory moves (``identity.moves``), by provenance handle.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from core.agent.conversation import WITHHELD
from core.store.models import (
    AttachmentRow,
    Case,
    Handoff,
    InboxRow,
    LinkChallenge,
    MemoryJob,
    OutboxRow,
    Turn,
    utcnow,
)
from identity.tenure import Tenure

log = logging.getLogger(__name__)


async def move_all(session: AsyncSession, source: str, target: str) -> None:
    """Every row of ``source`` now belongs to ``target`` (a merge)."""
    await _move_handoffs(session, source, target)
    for model in (Turn, InboxRow, OutboxRow, LinkChallenge, MemoryJob, Case, AttachmentRow):
        column: Any = model.customer_id
        await session.execute(update(model).where(column == source).values(customer_id=target))


async def _move_handoffs(session: AsyncSession, source: str, target: str) -> None:
    """The handoffs of ``source`` go to ``target``; if both have one open, the source's is closed first."""
    still_open = Handoff.status != "closed"  # the partial unique index's condition
    if await session.scalar(select(Handoff.id).where(Handoff.customer_id == target, still_open)) is not None:
        closed = await session.execute(
            update(Handoff)
            .where(Handoff.customer_id == source, still_open)
            .values(status="closed", closed_at=utcnow(), closed_by="merge")
        )
        if closed.rowcount:  # type: ignore[attr-defined]
            log.info("merge of %s into %s: its open handoff closed (the target's stays)", source, target)
    await session.execute(update(Handoff).where(Handoff.customer_id == source).values(customer_id=target))


async def hand_over(session: AsyncSession, source: str, target: str, leaving: Collection[str]) -> None:
    """The rows of the handles ``leaving`` (still held by ``source``) go to ``target``, without what
    ``source`` wrote from its other handles (module docstring). Call before the identities change."""
    side = sorted(set(leaving))
    if not side:
        return
    replies = (
        await session.execute(
            select(Turn.id, Turn.address, Turn.created_at).where(
                Turn.customer_id == source, Turn.role.not_in(("customer", WITHHELD))
            )
        )
    ).all()
    sent = (
        await session.execute(
            select(OutboxRow.id, OutboxRow.recipient, OutboxRow.created_at).where(
                OutboxRow.customer_id == source, OutboxRow.recipient.in_(side)
            )
        )
    ).all()
    tenure = await Tenure.load(
        session, {*side, *(address for _, address, _ in replies)}, holders=[source, target]
    )

    def mixed(address: str, when: Any) -> bool:
        return tenure.mixed(address, when, holder=source, side=side)

    withheld_ids = [turn_id for turn_id, address, when in replies if mixed(address, when)]
    going_sent = [row_id for row_id, recipient, when in sent if not mixed(recipient, when)]

    if withheld_ids:
        await session.execute(update(Turn).where(Turn.id.in_(withheld_ids)).values(role=WITHHELD, text=""))
    await session.execute(  # the handles' messages, their replies (the mixed ones now empty)
        update(Turn).where(Turn.customer_id == source, Turn.address.in_(side)).values(customer_id=target)
    )
    if going_sent:
        await session.execute(
            update(OutboxRow).where(OutboxRow.id.in_(going_sent)).values(customer_id=target)
        )
    await session.execute(
        update(InboxRow)
        .where(InboxRow.customer_id == source, InboxRow.sender.in_(side))
        .values(customer_id=target)
    )
    await session.execute(
        update(LinkChallenge)
        .where(LinkChallenge.customer_id == source, LinkChallenge.requester.in_(side))
        .values(customer_id=target)
    )
    await session.execute(  # files follow the message or the reply they came with
        update(AttachmentRow)
        .where(
            AttachmentRow.customer_id == source,
            or_(
                AttachmentRow.inbox_id.in_(select(InboxRow.id).where(InboxRow.customer_id == target)),
                AttachmentRow.outbox_id.in_(select(OutboxRow.id).where(OutboxRow.customer_id == target)),
            ),
        )
        .values(customer_id=target)
    )
    await _split_jobs(session, source, target, set(withheld_ids))
    log.info(
        "handles left customer %s for %s: %d replies withheld, %d outbox rows went along",
        source,
        target,
        len(withheld_ids),
        len(going_sent),
    )


async def _split_jobs(session: AsyncSession, source: str, target: str, withheld: set[int]) -> None:
    """Memory jobs of ``source`` follow their turns: to ``target``, split, or without withheld turns."""
    jobs = list(await session.scalars(select(MemoryJob).where(MemoryJob.customer_id == source)))
    wanted = {turn_id for job in jobs for turn_id in job.turn_ids}
    if not wanted:
        return
    gone = set(await session.scalars(select(Turn.id).where(Turn.customer_id == target, Turn.id.in_(wanted))))
    for job in jobs:
        ids = [turn_id for turn_id in job.turn_ids if turn_id not in withheld]
        going = [turn_id for turn_id in ids if turn_id in gone]
        staying = [turn_id for turn_id in ids if turn_id not in gone]
        if not going:
            if len(staying) != len(job.turn_ids):
                job.turn_ids = staying
        elif not staying:
            job.customer_id, job.turn_ids = target, going
        elif job.status == "pending":
            job.turn_ids = staying
            session.add(
                MemoryJob(
                    customer_id=target,
                    channel=job.channel,
                    kind=job.kind,
                    turn_ids=going,
                    status="pending",
                    due_at=job.due_at,
                )
            )
