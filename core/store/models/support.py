"""The people side: handoffs to a person, the console's operators (sessions, audit log) and support cases."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, ForeignKey, Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from core.store.models.base import Base, Id, UTCDateTime, utcnow


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
    customer's 1-5 answer to the satisfaction question asked with the resolution (``rating_asked_at``).
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
    # when the customer was asked for the rating: with the bot's resolution reply, or a person's resolution
    # that told the customer; None: never asked (a digit then rates nothing)
    rating_asked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
