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

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Double,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
    true,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

# BIGINT primary keys on PostgreSQL, INTEGER on SQLite (so that SQLite's rowid autoincrement works).
Id = BigInteger().with_variant(Integer(), "sqlite")


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores naive values)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


_NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=_NAMING)


class Leased:
    """A claim on a work row (``core.store.leases``): the process that holds it, a fencing token raised on
    every claim, and when the claim lapses unless renewed. Every commit of the work checks owner and token."""

    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_token: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime())


class Customer(Base):
    __tablename__ = "customers"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    display_name: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # set while this customer is merged into another (kept, so that the merge can be undone)
    merged_into: Mapped[str | None] = mapped_column(String(36), index=True)


class Identity(Base):
    __tablename__ = "identities"

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    address: Mapped[str] = mapped_column(String(320), unique=True)
    channel: Mapped[str] = mapped_column(String(16))
    customer_id: Mapped[str] = mapped_column(ForeignKey("customers.id"), index=True)
    assurance: Mapped[str] = mapped_column(String(32))
    # how the current assurance was reached: first_contact, admin, code, telegram_contact, ...
    method: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # when the customer or assurance last changed (None: as first seen)
    updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class IdentityEvent(Base):
    """One entry of the append-only identity ledger. Never updated or deleted."""

    __tablename__ = "identity_ledger"

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    kind: Mapped[str] = mapped_column(String(16))  # create, link, unlink, merge, unmerge
    actor: Mapped[str] = mapped_column(String(128))  # "system", "admin:<name>", "customer:<address>"
    reason: Mapped[str | None] = mapped_column(String(500))
    # create / link / unlink: the address, the customer it now belongs to and the one it left
    address: Mapped[str | None] = mapped_column(String(320), index=True)
    customer_id: Mapped[str | None] = mapped_column(String(36), index=True)
    from_customer_id: Mapped[str | None] = mapped_column(String(36), index=True)
    assurance: Mapped[str | None] = mapped_column(String(32))
    method: Mapped[str | None] = mapped_column(String(64))
    # merge / unmerge: every address that moved, with the assurance it had before
    addresses: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    # unmerge: the merge it undoes
    undoes: Mapped[int | None] = mapped_column(Id)


class LinkChallenge(Base):
    """A customer's claim that another handle is theirs, waiting for the one-time code to come back."""

    __tablename__ = "link_challenges"

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    customer_id: Mapped[str] = mapped_column(String(36), index=True)
    requester: Mapped[str] = mapped_column(String(320), index=True)
    claimed: Mapped[str] = mapped_column(String(320), index=True)
    # the inbox row that asked: a re-run of that row replaces the code instead of making another challenge
    request_inbox_id: Mapped[int | None] = mapped_column(Id, unique=True)
    code_hash: Mapped[str] = mapped_column(String(64))  # HMAC-SHA256(salt, code), hex
    salt: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(
        String(16), default="pending"
    )  # verified, locked, expired, superseded
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class MemoryMove(Base):
    """Memories (Mem0) to move after an identity change; re-run until done (a move is idempotent).

    ``handles`` lists the source handles whose memories move; empty means every memory of the customer.
    """

    __tablename__ = "memory_moves"

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    event_id: Mapped[int] = mapped_column(Id, index=True)
    from_customer_id: Mapped[str] = mapped_column(String(36))
    to_customer_id: Mapped[str] = mapped_column(String(36))
    handles: Mapped[list[str]] = mapped_column(JSON, default=list)
    # pending → running (claimed by one process at ``claimed_at``) → done; back to pending on failure
    status: Mapped[str] = mapped_column(String(16), default="pending", index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    done_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class InboxRow(Leased, Base):
    __tablename__ = "inbox"
    __table_args__ = (
        UniqueConstraint("channel", "provider_message_id"),
        Index("ix_inbox_status_id", "status", "id"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    channel: Mapped[str] = mapped_column(String(16))
    provider_message_id: Mapped[str] = mapped_column(String(255))
    sender: Mapped[str] = mapped_column(String(320))
    text: Mapped[str] = mapped_column(Text)
    reply_target: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # the files it carried, as ``MediaRef.as_json`` (never bytes): taken in by ``core.media.intake``
    attachments: Mapped[list[Any]] = mapped_column(JSON, default=list)
    extras: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # how far the channel vouches for the sender of this very message (core.messages.Assurance);
    # None (rows from before it was recorded) counts as unverified
    sender_assurance: Mapped[str | None] = mapped_column(String(32))
    # a one-to-one conversation (None counts as not private: no personal memory in the answer)
    private: Mapped[bool | None] = mapped_column(Boolean)
    # "answer" (the agent answers) or "acknowledge" (one fixed acknowledgement at most:
    # core.pipeline.strangers)
    reply_policy: Mapped[str | None] = mapped_column(String(16))
    # an opt-out keyword (core.messages.Control) and a platform-vouched phone (SharedContact.as_json)
    control: Mapped[str | None] = mapped_column(String(16))
    shared_contact: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime())
    customer_id: Mapped[str | None] = mapped_column(String(36), index=True)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_error: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class OutboxRow(Leased, Base):
    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_status_id", "status", "id"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    inbox_id: Mapped[int | None] = mapped_column(ForeignKey("inbox.id"), unique=True)
    idempotency_key: Mapped[str] = mapped_column(String(128), unique=True)
    channel: Mapped[str] = mapped_column(String(16))
    recipient: Mapped[str] = mapped_column(String(320))
    customer_id: Mapped[str | None] = mapped_column(String(36), index=True)
    reply_target: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    text: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    provider_message_ids: Mapped[list[str]] = mapped_column(JSON, default=list)
    parts_sent: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # who wrote it: "bot" (the agent's answer: withheld while a human owns the conversation), "operator",
    # "handoff" (the bot's word that a person will answer), "team" (a notice to the support team);
    # None: the hub's own fixed replies (codes, opt-out help, acknowledgements)
    origin: Mapped[str | None] = mapped_column(String(16))


class Turn(Base):
    __tablename__ = "turns"
    __table_args__ = (Index("ix_turns_customer_id_id", "customer_id", "id"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    customer_id: Mapped[str] = mapped_column(String(36))
    channel: Mapped[str] = mapped_column(String(16))
    address: Mapped[str] = mapped_column(String(320))
    role: Mapped[str] = mapped_column(String(16))  # "customer" or "assistant"
    text: Mapped[str] = mapped_column(Text)
    inbox_id: Mapped[int | None] = mapped_column(ForeignKey("inbox.id"), index=True)
    provider_message_id: Mapped[str | None] = mapped_column(String(255))
    # False: said (or answered) on a message nobody vouched for; recalled only for that same handle
    vouched: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # role "operator": the name of the person who wrote it (``core.pipeline.handoff``)
    operator: Mapped[str | None] = mapped_column(String(64))
    # role "assistant": the ids of the memories recalled for this answer (shown in the console)
    recalled: Mapped[list[str] | None] = mapped_column(JSON)


class MemoryJob(Leased, Base):
    __tablename__ = "memory_jobs"
    __table_args__ = (Index("ix_memory_jobs_status_due_at", "status", "due_at"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    customer_id: Mapped[str] = mapped_column(String(36), index=True)
    # the channel of the turns: a process writes the jobs of the channels it serves (serve and chat
    # may share one data dir)
    channel: Mapped[str] = mapped_column(String(16))
    kind: Mapped[str] = mapped_column(String(16))  # "turn" or "summary"
    # the turn ids this write covers; the write is skipped if memories with these ids already exist
    turn_ids: Mapped[list[int]] = mapped_column(JSON, default=list)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    due_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class NamedLease(Base):
    """A lease on a named round (retention, memory moves): one process at a time runs it."""

    __tablename__ = "leases"

    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    owner: Mapped[str] = mapped_column(String(64))
    token: Mapped[int] = mapped_column(Integer)
    until: Mapped[datetime] = mapped_column(UTCDateTime())


class OutboundPart(Base):
    """One platform message of a reply (a long reply may be split), keyed by the platform's id.

    A status callback may arrive before the send is recorded: the row is then created from the
    callback (``outbox_id`` empty) and completed when the send is recorded.
    """

    __tablename__ = "outbound_parts"
    __table_args__ = (UniqueConstraint("channel", "provider_message_id"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    channel: Mapped[str] = mapped_column(String(16))
    provider_message_id: Mapped[str] = mapped_column(String(255))
    outbox_id: Mapped[int | None] = mapped_column(ForeignKey("outbox.id"), index=True)
    status: Mapped[str] = mapped_column(String(16))
    error_code: Mapped[str | None] = mapped_column(String(32))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class OptOut(Base):
    __tablename__ = "opt_outs"

    address: Mapped[str] = mapped_column(String(320), primary_key=True)
    opted_out_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class RateBucket(Base):
    """A shared rate (``core.store.shared_limits``): the theoretical arrival time of the key's next
    message (GCRA), as epoch seconds of the database's clock. ``key`` is a hash (it may stand for an
    address); ``granted`` is what the last update let through (read back by the flood check). A row whose
    ``tat`` has passed says nothing a missing row would not, and is pruned."""

    __tablename__ = "rate_buckets"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    tat: Mapped[float] = mapped_column(Double(), index=True)
    granted: Mapped[int] = mapped_column(Integer, default=0)


class LimitWindow(Base):
    """A shared cap or single-use mark (``core.store.shared_limits``): the expiry stamps (epoch seconds of
    the database's clock) of the key's uses still counted, and the latest of them. ``key`` is a hash."""

    __tablename__ = "limit_windows"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    stamps: Mapped[list[float]] = mapped_column(JSON, default=list)
    expires_at: Mapped[float] = mapped_column(Double(), index=True)


class Handoff(Base):
    """A conversation handed to a person (``core.pipeline.handoff``). At most one open per customer.

    ``status``: ``waiting`` (asked for, nobody has taken it yet) → ``owned`` (an operator took it) →
    ``closed`` (handed back to the bot). While one is open the bot sends that customer nothing.
    """

    __tablename__ = "handoffs"
    __table_args__ = (
        Index(
            "uq_handoffs_open_customer",
            "customer_id",
            unique=True,
            sqlite_where=text("status != 'closed'"),
            postgresql_where=text("status != 'closed'"),
        ),
        Index("ix_handoffs_status_opened_at", "status", "opened_at"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    customer_id: Mapped[str] = mapped_column(String(36), index=True)
    status: Mapped[str] = mapped_column(String(16), default="waiting")
    # "customer" (asked in words), "assistant" (the LLM's handoff tool), "fallback" (the LLM failed),
    # "operator" (taken over from the console or the admin API)
    requested_by: Mapped[str] = mapped_column(String(16))
    operator: Mapped[str | None] = mapped_column(String(64))  # who owns it now
    note: Mapped[str | None] = mapped_column(String(500))
    channel: Mapped[str | None] = mapped_column(String(16))  # where it was asked for
    inbox_id: Mapped[int | None] = mapped_column(Id)  # the message that asked
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    taken_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    answered_at: Mapped[datetime | None] = mapped_column(UTCDateTime())  # a person's first reply
    escalated_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    closed_by: Mapped[str | None] = mapped_column(String(64))


class Operator(Base):
    """A person who signs in to the console (``threadline operators add NAME --role admin|agent``)."""

    __tablename__ = "operators"

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16))  # "admin" or "agent"
    password_hash: Mapped[str] = mapped_column(String(255))  # argon2id, never shown
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class OperatorSession(Base):
    """A signed-in console session. ``id`` is the SHA-256 of the cookie's token (the token is never
    stored); ``csrf`` is the session's anti-forgery token, sent back with every form."""

    __tablename__ = "operator_sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    operator_id: Mapped[int] = mapped_column(ForeignKey("operators.id", ondelete="CASCADE"), index=True)
    csrf: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)


class OperatorAction(Base):
    """What an operator did (take over, reply, hand back, retry, export, ...): the console's audit log.
    Identity changes are in the identity ledger as well (actor ``operator:<name>``)."""

    __tablename__ = "operator_actions"

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    operator: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(32))
    customer_id: Mapped[str | None] = mapped_column(String(36), index=True)
    subject: Mapped[str | None] = mapped_column(String(64))  # an id the action was about (outbox, merge)


class Case(Base):
    """A customer's support issue (``core.pipeline.cases``): ``open`` until it is ``resolved``.

    Opened by the LLM's ``open_case`` tool (``assistant``), by the offline rules (``rules``) or by a person
    (``operator:<name>``); ``turn_ids`` are the conversation turns it came from (the opening and resolving
    messages and their replies). ``title`` is redacted (``core.agent.redaction``) and short; ``summary``
    is set on resolution and written once to memory (the memory job ``summary_job_id``). ``rating``: the
    customer's 1-5 answer to the satisfaction question asked with the resolution.
    """

    __tablename__ = "cases"

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    customer_id: Mapped[str] = mapped_column(String(36), index=True)
    title: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16), default="open")  # open, resolved
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    opened_by: Mapped[str] = mapped_column(String(80))  # assistant, rules, operator:<name>
    resolved_by: Mapped[str | None] = mapped_column(String(80))
    channel: Mapped[str | None] = mapped_column(String(16))  # where it was opened
    turn_ids: Mapped[list[int]] = mapped_column(JSON, default=list)
    summary: Mapped[str | None] = mapped_column(Text)
    summary_job_id: Mapped[int | None] = mapped_column(Id)
    rating: Mapped[int | None] = mapped_column(Integer)  # 1 (bad) to 5 (great)
    rated_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class AttachmentRow(Base):
    """A file of a message (``core.media``): one row per file a customer sent (``direction`` ``in``, the
    inbox row and its place in the message) or a person sent back (``out``, the outbox row).

    ``status`` ``stored``: the bytes are in the media store under ``sha256`` (content-addressed: the same
    file sent twice is stored once). ``refused``: too large, a type not allowed, or not fetchable from where
    it was said to be; ``reason`` says which, and nothing was stored. ``name`` is the file name made safe
    (``core.media.check.safe_name``); ``media_type`` is what the bytes are (sniffed), not what was declared.
    ``text``: what was read out of it for the agent (a PDF's text), redacted and bounded.
    """

    __tablename__ = "attachments"
    __table_args__ = (UniqueConstraint("inbox_id", "position"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    customer_id: Mapped[str | None] = mapped_column(String(36), index=True)
    inbox_id: Mapped[int | None] = mapped_column(Id, index=True)
    outbox_id: Mapped[int | None] = mapped_column(Id, index=True)
    position: Mapped[int] = mapped_column(Integer, default=0)
    direction: Mapped[str] = mapped_column(String(8), default="in")  # in, out
    channel: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(200))
    media_type: Mapped[str] = mapped_column(String(100))
    size: Mapped[int] = mapped_column(Integer, default=0)
    sha256: Mapped[str | None] = mapped_column(String(64), index=True)
    status: Mapped[str] = mapped_column(String(16))  # stored, refused
    reason: Mapped[str | None] = mapped_column(String(200))
    text: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class EventEndpoint(Base):
    """A business's receiver of the hub's events (``core.events``): where they go and which types.

    ``secret`` (``whsec_...``) signs every delivery (Standard Webhooks); it is shown once, when the endpoint
    is made, and never again (no API answer, log line or repr carries it). It is kept as it is because
    the hub needs it to sign; a deleted endpoint (``deleted_at``) has it emptied. ``include_text``: the
    events carry the message text and the customer's address (personal data) only when this is set.
    """

    __tablename__ = "event_endpoints"

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    url: Mapped[str] = mapped_column(String(2000))
    event_types: Mapped[list[str]] = mapped_column(JSON, default=list)
    secret: Mapped[str] = mapped_column(String(128))
    include_text: Mapped[bool] = mapped_column(Boolean, default=False)
    description: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class EventDelivery(Leased, Base):
    """One event for one endpoint: the durable queue of the event lane and its delivery log at once.

    ``webhook_id`` (``msg_...``) is the ``webhook-id`` header, the same on every attempt (receivers drop
    repeats by it). ``status``: ``pending`` (not tried yet) → ``failed`` (an attempt failed; retried at
    ``next_attempt_at``) → ``sent`` (a 2xx answer) or ``dead`` (``events.max_attempts`` tries failed: an
    admin may retry it); ``cancelled``: its endpoint was deleted first. ``payload`` is the JSON body as
    sent (``{"type", "timestamp", "data"}``); ``customer_id`` is whom it is about (forget removes it).
    """

    __tablename__ = "event_deliveries"
    __table_args__ = (
        Index("ix_event_deliveries_status_next_attempt_at", "status", "next_attempt_at"),
        Index("ix_event_deliveries_endpoint_id_id", "endpoint_id", "id"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    webhook_id: Mapped[str] = mapped_column(String(64), unique=True)
    endpoint_id: Mapped[int] = mapped_column(ForeignKey("event_endpoints.id"))
    event_type: Mapped[str] = mapped_column(String(32))
    customer_id: Mapped[str | None] = mapped_column(String(36), index=True)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class MediaObject(Base):
    """The bytes of one attachment file in scale mode (``core.media.pg_store``): content-addressed, one row
    per sha256 however many ``attachments`` rows hold it. Created on both stores, used on PostgreSQL only
    (embedded, the bytes are files under the data dir: ``core.media.store``)."""

    __tablename__ = "media_objects"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    size: Mapped[int] = mapped_column(Integer)
    data: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
