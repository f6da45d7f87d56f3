"""The messages themselves: the inbox, the outbox and its platform parts, the conversation log, the memory
jobs that follow it, and the opt-outs."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Index, Integer, String, Text, UniqueConstraint, true
from sqlalchemy.orm import Mapped, mapped_column

from core.store.models.base import Base, Id, Leased, UTCDateTime, utcnow


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
