"""Files people send back: checked before anything is kept, recorded with their outbox row, read at send.

- ``check_outgoing``: the files of an operator's reply, each checked as a customer's would be
  (``core.media.check``: the sniffed type on the allowlist, at most ``THREADLINE_ATTACHMENTS__MAX_BYTES``,
  a safe name), at most ``__MAX_PER_MESSAGE`` of them and ``__MAX_BYTES`` in all (Twilio takes about 5 MB
  per MMS, most mail relays 10 to 25 MB). A name that is not already safe (a path, control characters,
  a leading dot, over 100 characters) is refused rather than quietly changed: the person sending can
  rename it, and the customer sees the name they chose. The first refusal is ``MediaRefused`` naming the
  file and the problem; nothing is kept for any of them.
- ``record_outgoing``: one ``attachments`` row per file (``direction`` ``out``, the outbox row, its place),
  in the transaction that adds the outbox row: the row and its files commit together or not at all.
- ``files_of``: what the delivery lane reads back to build the ``OutboundMessage``.
- ``StoredFiles``: the ``core.ports.FileSource`` the delivery binds to the adapters: bytes from the media
  store, links signed by ``core.media.links`` (Twilio fetches MMS media by URL).

Logs carry ids, sizes and types only.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import MediaRefused, PermanentDeliveryError
from core.media.check import check, shown_size
from core.media.intake import attachment_of
from core.media.links import MediaLinks
from core.messages import Attachment
from core.ports import MediaStore
from core.settings import AttachmentSettings
from core.store.models import AttachmentRow, utcnow


@dataclass(frozen=True, slots=True, kw_only=True)
class OutgoingFile:
    """A file to send, checked: its safe name, sniffed type and bytes."""

    name: str
    media_type: str
    data: bytes = field(repr=False)


def check_outgoing(
    files: Sequence[tuple[str | None, bytes]], settings: AttachmentSettings
) -> list[OutgoingFile]:
    """``(name, bytes)`` pairs checked for sending (see above); ``MediaRefused`` names the first bad one."""
    if len(files) > settings.max_per_message:
        raise MediaRefused(f"a reply takes at most {settings.max_per_message} files")
    checked: list[OutgoingFile] = []
    total = 0
    for name, data in files:
        found = check(data, name=name, settings=settings)
        if name is not None and found.name != unicodedata.normalize("NFC", name):  # NFD from a Mac is fine
            raise MediaRefused(
                f"the name of {found.name} holds a path, control characters, a leading dot "
                "or more than 100 characters"
            )
        total += len(data)
        if total > settings.max_bytes:
            raise MediaRefused(f"the files together are larger than {shown_size(settings.max_bytes)}")
        checked.append(OutgoingFile(name=found.name, media_type=found.media_type, data=data))
    return checked


async def store_outgoing(store: MediaStore, files: Sequence[OutgoingFile]) -> list[Attachment]:
    """Keep the files (content-addressed: a file kept already is not written again)."""
    kept: list[Attachment] = []
    for file in files:
        sha256 = await store.put(file.data)
        kept.append(
            Attachment(name=file.name, media_type=file.media_type, size=len(file.data), sha256=sha256)
        )
    return kept


def record_outgoing(
    session: AsyncSession,
    *,
    outbox_id: int,
    customer_id: str | None,
    channel: str,
    files: Sequence[Attachment],
) -> None:
    """Add one ``attachments`` row per file of outbox row ``outbox_id`` (committed with the caller's)."""
    now = utcnow()
    session.add_all(
        AttachmentRow(
            customer_id=customer_id,
            outbox_id=outbox_id,
            position=position,
            direction="out",
            channel=channel,
            name=file.name[:200],
            media_type=file.media_type[:100],
            size=file.size,
            sha256=file.sha256,
            status="stored",
            created_at=now,
        )
        for position, file in enumerate(files)
    )


async def files_of(session: AsyncSession, outbox_id: int) -> tuple[Attachment, ...]:
    """The files of outbox row ``outbox_id``, in order (none for most replies)."""
    rows = await session.scalars(
        select(AttachmentRow)
        .where(AttachmentRow.outbox_id == outbox_id, AttachmentRow.direction == "out")
        .order_by(AttachmentRow.position)
    )
    return tuple(attachment_of(row) for row in rows)


class StoredFiles:
    """``core.ports.FileSource`` over the media store and (with SMS) the signed links."""

    def __init__(self, store: MediaStore, links: MediaLinks | None) -> None:
        self._store = store
        self._links = links

    def __repr__(self) -> str:
        return f"StoredFiles({self._store!r}, links={'on' if self._links else 'off'})"

    async def read(self, file: Attachment) -> bytes:
        if not file.stored or file.sha256 is None:
            raise PermanentDeliveryError("a file of the reply was not stored")
        try:
            return await self._store.get(file.sha256)
        except (FileNotFoundError, ValueError):
            raise PermanentDeliveryError("a file of the reply is no longer stored") from None

    def link(self, file: Attachment) -> str:
        if self._links is None:
            raise PermanentDeliveryError("files cannot be linked: no public URL or no signing key")
        # whether the bytes are still kept is the route's to say when the link is fetched
        # (``core.web.media``, 404): the reply's own ``attachments`` rows hold them until they are forgotten
        if not file.stored or file.sha256 is None:
            raise PermanentDeliveryError("a file of the reply was not stored")
        return self._links.url(file.sha256)
