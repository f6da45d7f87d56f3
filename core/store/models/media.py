"""Files of messages: one row per attachment, and the bytes themselves in scale mode."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Integer, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from core.store.models.base import Base, Id, UTCDateTime, utcnow


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


class MediaObject(Base):
    """The bytes of one attachment file in scale mode (``core.media.pg_store``): content-addressed, one row
    per sha256 however many ``attachments`` rows hold it. Created on both stores, used on PostgreSQL only
    (embedded, the bytes are files under the data dir: ``core.media.store``)."""

    __tablename__ = "media_objects"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    size: Mapped[int] = mapped_column(Integer)
    data: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
