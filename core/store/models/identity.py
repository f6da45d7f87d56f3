"""Who is who: customers, their addresses, the identity ledger, proofs in flight and the memory moves
that follow an identity change."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from core.store.models.base import Base, Id, UTCDateTime, utcnow


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
