"""A person's reply to a customer (``Handoffs.reply``): one outbox row, one ``operator`` turn, one memory job.

The reply goes out on the customer's most recent private conversation (or the channel asked for) through
the outbox, under the idempotency key ``operator:<key>``: the same key twice is one message. It is logged
as an ``operator`` turn with the operator's name and written to memory like the customer's words, so the
bot knows after the hand-back what the person said. It may carry files (checked beforehand by
``core.media.outbound.check_outgoing``): they are stored when the reply is accepted (a repeated key stores
nothing), recorded as ``attachments`` rows of the outbox row in the same transaction, sent after the text
by the channel, and named in the turn (``[attached: ...]``). The person owns the conversation from then on
(a waiting handoff is taken; none open: one is opened), all in the one transaction.
"""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import Conflict
from core.media.intake import describe
from core.media.outbound import OutgoingFile, record_outgoing, store_outgoing
from core.memory.policy import queue_memory_write
from core.metrics import Metrics
from core.pipeline.handoff_rows import handoff_event, live_customer, open_handoff_row, own, record_action
from core.ports import MediaStore
from core.settings import MemorySettings
from core.store.db import Database
from core.store.models import InboxRow, OptOut, OutboxRow, Turn, utcnow
from core.store.wakeups import announce

log = logging.getLogger(__name__)

MAX_REPLY_CHARS = 4000
_KEY = re.compile(r"^[A-Za-z0-9_.:-]{8,64}$")


@dataclass(frozen=True, slots=True, kw_only=True)
class OperatorReply:
    outbox_id: int
    customer_id: str
    channel: str
    turn_id: int | None
    duplicate: bool  # the key was used before: nothing new was written


async def reply_target(session: AsyncSession, customer_id: str, channel: str | None) -> InboxRow:
    """The customer's most recent message in a private conversation (on ``channel``, if given) whose
    sender a reply may go to: never a group, never an email whose sender nobody vouched for."""
    query = select(InboxRow).where(
        InboxRow.customer_id == customer_id,
        InboxRow.private.is_(True),
        (InboxRow.reply_policy.is_(None)) | (InboxRow.reply_policy != "acknowledge"),
    )
    if channel is not None:
        query = query.where(InboxRow.channel == channel)
    found = await session.scalar(query.order_by(InboxRow.id.desc()).limit(1))
    if found is None:
        where = f" on {channel}" if channel else ""
        raise Conflict(f"customer {customer_id} has no private conversation{where} to reply in")
    return found


async def send_reply(
    db: Database,
    memory_settings: MemorySettings,
    metrics: Metrics | None,
    customer_id: str,
    *,
    text: str,
    operator: str,
    channel: str | None = None,
    key: str | None = None,
    files: Sequence[OutgoingFile] = (),
    store: MediaStore | None = None,
) -> OperatorReply:
    """Send a person's reply on the customer's channel, once per ``key``; the person owns the
    conversation from now on if nobody did. ``files`` (checked; kept in ``store``) go with it.
    ``NotFound``: no such customer (or forgotten); ``Conflict``: nowhere to reply, or the recipient
    opted out; ``ValueError``: empty (no text and no file) or too long."""
    body = text.strip()
    if not body and not files:
        raise ValueError("the reply is empty")
    if files and store is None:
        raise ValueError("files need the media store")
    if len(body) > MAX_REPLY_CHARS:
        raise ValueError(f"the reply is longer than {MAX_REPLY_CHARS} characters")
    if key is not None and not _KEY.match(key):
        raise ValueError("the idempotency key must be 8 to 64 letters, digits or _ . : -")
    idempotency_key = f"operator:{key or secrets.token_hex(16)}"
    now = utcnow()
    async with db.session() as session:
        earlier = await session.scalar(select(OutboxRow).where(OutboxRow.idempotency_key == idempotency_key))
        if earlier is not None:
            if earlier.customer_id != customer_id:
                raise Conflict("this idempotency key was used for another customer")
            return OperatorReply(
                outbox_id=earlier.id,
                customer_id=customer_id,
                channel=earlier.channel,
                turn_id=None,
                duplicate=True,
            )
        await live_customer(session, customer_id)
        target = await reply_target(session, customer_id, channel)
        if await session.get(OptOut, target.sender) is not None:
            raise Conflict(f"the customer opted out on {target.channel}: nothing can be sent there")
        # kept only now that the reply will be written (content-addressed: a file kept already is
        # not written again); a reply that fails below leaves at most a file nobody points to
        kept = await store_outgoing(store, files) if store is not None and files else []
        outbox = OutboxRow(
            idempotency_key=idempotency_key,
            channel=target.channel,
            recipient=target.sender,
            customer_id=customer_id,
            reply_target=dict(target.reply_target),
            text=body,
            status="pending",
            origin="operator",
        )
        turn = Turn(
            customer_id=customer_id,
            channel=target.channel,
            address=target.sender,
            role="operator",
            operator=operator,
            text="\n".join(part for part in (body, describe(kept)) if part),
            created_at=now,
            vouched=True,
        )
        session.add_all([outbox, turn])
        handoff, opened = own(
            session,
            await open_handoff_row(session, customer_id),
            customer_id=customer_id,
            operator=operator,
            now=now,
            metrics=metrics,
        )
        handoff.answered_at = handoff.answered_at or now
        try:
            await session.flush()
        except IntegrityError as exc:
            raise Conflict("the conversation changed hands just now; reload and try again") from exc
        if opened:  # the operator's reply took the conversation over: a handoff opened here
            await handoff_event(session, "handoff.requested", handoff)
        if kept:
            record_outgoing(
                session,
                outbox_id=outbox.id,
                customer_id=customer_id,
                channel=target.channel,
                files=kept,
            )
        await queue_memory_write(
            session,
            memory_settings,
            customer_id=customer_id,
            channel=target.channel,
            turn_ids=[turn.id],
        )
        await record_action(
            session, operator=operator, action="reply", customer_id=customer_id, subject=str(outbox.id)
        )
        await announce(session, "outbox", "memory")
        result = OperatorReply(
            outbox_id=outbox.id,
            customer_id=customer_id,
            channel=target.channel,
            turn_id=turn.id,
            duplicate=False,
        )
    log.info("operator reply %s to customer %s on %s", result.outbox_id, customer_id, result.channel)
    return result
