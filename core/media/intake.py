"""``MediaIntake``: the files of an inbound message, taken in once before it is answered.

At accept time (``keep_inline``, in the webhook's or listener's acknowledgement path) the bytes that came
with the message itself (an email's parts) are written to the store and the message keeps only their
reference (``sha256:<digest>``): the inbox row never holds bytes. A part that fails the check (too
large, a type not allowed) is never written: its reference records the refusal, which intake records.

In the worker (``take_in``), for each file of the inbox row in order (at most ``max_per_message``; the rest
are refused as too many): its bytes come from the store (``sha256:`` references) or from its channel
(``core.ports.MediaFetcher``), are checked (``core.media.check``) and stored, and one ``attachments`` row
records it, stored or refused with the reason (a PDF with its text, ``read_text``: what the agent
reads). ``MediaUnavailable`` (the platform unreachable) is raised to the worker, which tries the turn again
later; ``give_up=True`` (the last attempt) records what still cannot be fetched as refused instead. The
rows are keyed by (inbox row, position): a retried turn, or another process answering the same row after a
takeover, finds them and fetches nothing again.

Logs carry ids, positions, sizes and types only: never a file name, a URL or the bytes.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import replace

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite

from core.agent.redaction import redact
from core.errors import MediaRefused, MediaUnavailable
from core.media.check import UNKNOWN_TYPE, check, safe_name
from core.media.pdf_text import pdf_text
from core.messages import Attachment, InboundMessage, MediaRef
from core.ports import MediaFetcher, MediaStore
from core.settings import AttachmentSettings
from core.store.db import Database
from core.store.models import AttachmentRow, InboxRow

log = logging.getLogger(__name__)

# references ``keep_inline`` writes (a platform's own references are URLs, file ids: never these)
STORED_PREFIX = "sha256:"
REFUSED_PREFIX = "refused:"


def attachment_of(row: AttachmentRow) -> Attachment:
    return Attachment(
        name=row.name,
        media_type=row.media_type,
        size=row.size,
        sha256=row.sha256,
        status="stored" if row.status == "stored" else "refused",
        reason=row.reason,
        text=row.text,
    )


class MediaIntake:
    """Fetch, check, store and record the files of inbound messages."""

    def __init__(
        self,
        db: Database,
        store: MediaStore,
        settings: AttachmentSettings,
        fetchers: Mapping[str, object],
    ) -> None:
        self._db = db
        self.store = store
        self._settings = settings
        self._fetchers = {name: f for name, f in fetchers.items() if isinstance(f, MediaFetcher)}
        dialect = postgresql if db.dialect == "postgresql" else sqlite
        self._insert = dialect.insert(AttachmentRow.__table__).on_conflict_do_nothing(
            index_elements=["inbox_id", "position"]
        )

    # ----- at accept time ---------------------------------------------------------------------------

    async def keep_inline(self, message: InboundMessage) -> InboundMessage:
        """``message`` with the bytes it carries written to the store and replaced by their reference."""
        if not any(ref.data is not None for ref in message.attachments):
            return message
        kept: list[MediaRef] = []
        for ref in message.attachments:
            if ref.data is None:
                kept.append(ref)
                continue
            try:  # checked now: a refused file is never written, even for a moment
                check(ref.data, name=ref.name, settings=self._settings)
            except MediaRefused as exc:
                kept.append(replace(ref, ref=REFUSED_PREFIX + str(exc)[:180], size=len(ref.data), data=None))
                continue
            sha256 = await self.store.put(ref.data)
            kept.append(replace(ref, ref=STORED_PREFIX + sha256, size=len(ref.data), data=None))
        return replace(message, attachments=tuple(kept))

    # ----- in the worker ------------------------------------------------------------------------------

    async def take_in(self, row: InboxRow, *, give_up: bool = False) -> list[Attachment]:
        """The row's files, fetched, checked and recorded (once); in their order in the message."""
        refs = [ref for ref in (MediaRef.from_json(value) for value in row.attachments or []) if ref]
        if not refs:
            return []
        async with self._db.read() as session:
            known = {
                found.position: found
                for found in await session.scalars(
                    select(AttachmentRow).where(AttachmentRow.inbox_id == row.id)
                )
            }
        for position, ref in enumerate(refs):
            if position in known:
                continue
            attachment = await self._one(row, position, ref, give_up=give_up)
            await self._record(row, position, attachment)
        async with self._db.read() as session:
            rows = await session.scalars(
                select(AttachmentRow).where(AttachmentRow.inbox_id == row.id).order_by(AttachmentRow.position)
            )
            return [attachment_of(found) for found in rows]

    async def _one(self, row: InboxRow, position: int, ref: MediaRef, *, give_up: bool) -> Attachment:
        declared = ref.media_type or UNKNOWN_TYPE
        if position >= self._settings.max_per_message:
            return _refused(ref, declared, f"{safe_name(ref.name, declared)} is one file too many")
        try:
            data, name = await self._bytes(row.channel, ref)
            checked = check(data, name=name, settings=self._settings)
            sha256 = await self.store.put(data)
        except MediaRefused as exc:
            log.info(
                "inbox %s file %d refused (%s, declared %s)", row.id, position, type(exc).__name__, declared
            )
            return _refused(ref, declared, str(exc))
        except MediaUnavailable:
            if not give_up:
                raise
            log.warning("inbox %s file %d could not be fetched; recorded as refused", row.id, position)
            return _refused(ref, declared, f"{safe_name(ref.name, declared)} could not be fetched")
        log.info("inbox %s file %d stored (%s, %d bytes)", row.id, position, checked.media_type, len(data))
        return Attachment(
            name=checked.name,
            media_type=checked.media_type,
            size=len(data),
            sha256=sha256,
            text=await read_text(checked.media_type, data),
        )

    async def _bytes(self, channel: str, ref: MediaRef) -> tuple[bytes, str | None]:
        if ref.ref.startswith(REFUSED_PREFIX):  # refused at accept time (``keep_inline``)
            raise MediaRefused(ref.ref.removeprefix(REFUSED_PREFIX))
        if ref.ref.startswith(STORED_PREFIX):
            try:
                return await self.store.get(ref.ref.removeprefix(STORED_PREFIX)), ref.name
            except (FileNotFoundError, ValueError):
                raise MediaRefused(
                    f"{safe_name(ref.name, ref.media_type or UNKNOWN_TYPE)} was lost"
                ) from None
        fetcher = self._fetchers.get(channel)
        if fetcher is None:
            raise MediaRefused(
                f"{safe_name(ref.name, ref.media_type or UNKNOWN_TYPE)} cannot be fetched here"
            )
        fetched = await fetcher.fetch_media(ref, max_bytes=self._settings.max_bytes)
        return fetched.data, ref.name or fetched.name

    async def _record(self, row: InboxRow, position: int, attachment: Attachment) -> None:
        async with self._db.session() as session:
            await session.execute(
                self._insert.values(
                    customer_id=row.customer_id,
                    inbox_id=row.id,
                    position=position,
                    direction="in",
                    channel=row.channel,
                    name=attachment.name[:200],
                    media_type=attachment.media_type[:100],
                    size=attachment.size,
                    sha256=attachment.sha256,
                    status=attachment.status,
                    reason=(attachment.reason or None) and attachment.reason[:200],
                    text=attachment.text,
                    created_at=row.created_at,
                )
            )


async def read_text(media_type: str, data: bytes) -> str | None:
    """What the agent reads of a stored file beside its description: a PDF's text (bounded, redacted:
    ``core.media.pdf_text``), or None."""
    if media_type != "application/pdf":
        return None
    text = await pdf_text(data)
    return redact(text).text if text else None


def _refused(ref: MediaRef, declared: str, reason: str) -> Attachment:
    return Attachment(
        name=safe_name(ref.name, declared),
        media_type=declared[:100],
        size=max(0, ref.size or 0),
        status="refused",
        reason=reason,
    )


def describe(attachments: list[Attachment]) -> str:
    """The lines the agent and the conversation log read for a message's files (no bytes, no URL)."""
    from core.media.check import shown_size

    lines = []
    for item in attachments:
        if item.stored:
            lines.append(f"[attached: {item.name} ({item.media_type}, {shown_size(item.size)})]")
        else:
            lines.append(f"[attachment refused: {item.reason}]")
    return "\n".join(lines)


def refusals(attachments: list[Attachment]) -> str:
    """What the customer is told about the files that were not taken ("" when none were refused)."""
    refused = [item.reason for item in attachments if not item.stored and item.reason]
    if not refused:
        return ""
    return (
        "I couldn't take "
        + ("one of your files: " if len(refused) == 1 else "some of your files: ")
        + ("; ".join(refused) + ".")
    )
