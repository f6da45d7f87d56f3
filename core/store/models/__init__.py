"""The tables: our own source of truth (Mem0 is only the recall layer).

- ``customers`` / ``identities``: who is behind each normalised address, and how well we know it.
- ``identity_ledger``: append-only record of every identity change (create, link, unlink, merge,
  unmerge) with actor, reason and time; replaying it rebuilds ``identities`` (``identity.ledger``).
- ``link_challenges``: self-service proofs of ownership in flight (one-time codes, stored hashed).
- ``memory_moves``: memories and turns to move between customers after an identity change (durable,
  re-run until done).
- ``inbox``: every accepted inbound message, unique per (channel, provider message id).
- ``outbox``: every reply, unique per idempotency key; one reply per inbox row.
- ``turns``: the conversation log across channels, per customer.
- ``memory_jobs``: memory writes waiting to happen (per turn, or a summary when a conversation goes quiet).
- ``outbound_parts``: each platform message a reply went out as, with the platform's delivery status.
- ``opt_outs``: addresses that asked for no more messages (SMS STOP); nothing is sent to them.
- ``leases``: named rounds (retention) that one process at a time runs; the work tables carry their
  own lease columns (``Leased``).
- ``handoffs``: conversations handed to a person (waiting, owned, closed), at most one open per customer.
- ``operators`` / ``operator_sessions`` / ``operator_actions``: the console's people (passwords hashed with
  argon2id), their signed-in sessions (token hashes and CSRF tokens) and what each of them did.
- ``cases``: customers' support issues (open, resolved), with the turns they came from.
- ``media_objects``: the bytes of attachments in scale mode (``core.media.pg_store``), one row per sha256.
- ``event_endpoints`` / ``event_deliveries``: the business's signed event webhooks (``core.events``): the
  receivers, and every event for each of them (the queue and the delivery log).
"""

from core.store.models.base import Base, Id, Leased, UTCDateTime, utcnow
from core.store.models.conversation import InboxRow, MemoryJob, OptOut, OutboundPart, OutboxRow, Turn
from core.store.models.coordination import LimitWindow, NamedLease, RateBucket
from core.store.models.events import EventDelivery, EventEndpoint
from core.store.models.identity import Customer, Identity, IdentityEvent, LinkChallenge, MemoryMove
from core.store.models.media import AttachmentRow, MediaObject
from core.store.models.support import Case, Handoff, Operator, OperatorAction, OperatorSession

__all__ = [
    "AttachmentRow",
    "Base",
    "Case",
    "Customer",
    "EventDelivery",
    "EventEndpoint",
    "Handoff",
    "Id",
    "Identity",
    "IdentityEvent",
    "InboxRow",
    "Leased",
    "LimitWindow",
    "LinkChallenge",
    "MediaObject",
    "MemoryJob",
    "MemoryMove",
    "NamedLease",
    "Operator",
    "OperatorAction",
    "OperatorSession",
    "OptOut",
    "OutboundPart",
    "OutboxRow",
    "RateBucket",
    "Turn",
    "UTCDateTime",
    "utcnow",
]
