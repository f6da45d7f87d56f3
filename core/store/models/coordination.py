"""What processes share to take turns and keep limits: named leases and the shared rate limits."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Double, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from core.store.models.base import Base, UTCDateTime


class NamedLease(Base):
    """A lease on a named round (retention, memory moves): one process at a time runs it."""

    __tablename__ = "leases"

    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    owner: Mapped[str] = mapped_column(String(64))
    token: Mapped[int] = mapped_column(Integer)
    until: Mapped[datetime] = mapped_column(UTCDateTime())


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
