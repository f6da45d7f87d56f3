"""The bytes nobody holds any more: removed from the media store after their rows are gone.

The store is content-addressed (``core.media.store``): the same file sent by two customers is one file on
disk, held by two ``attachments`` rows. When rows go (``identity.erasure.forget``,
``core.pipeline.retention``) the caller passes the digests they held, after its transaction has committed,
and each file is removed unless something still holds it:

- an ``attachments`` row (another customer's copy, or an operator's file sent back);
- an inbox row still pending whose references name it (``sha256:<digest>``: bytes kept at accept time,
  ``core.media.intake.keep_inline``, that the worker has not taken in yet).

A file that is already gone counts as nothing. A message taking in the same bytes at the very moment they
are removed finds them missing and records its file as lost (``MediaIntake``): never a half file.
"""

from __future__ import annotations

import logging
from collections.abc import Collection

from sqlalchemy import String, cast, or_, select

from core.media.intake import STORED_PREFIX
from core.ports import MediaStore
from core.store.db import Database
from core.store.models import AttachmentRow, InboxRow

log = logging.getLogger(__name__)


async def held(db: Database, digests: Collection[str]) -> set[str]:
    """Those of ``digests`` that a row still holds (see the module docstring)."""
    wanted = sorted({d for d in digests if d})
    if not wanted:
        return set()
    async with db.read() as session:
        found = {
            digest
            for digest in await session.scalars(
                select(AttachmentRow.sha256).where(AttachmentRow.sha256.in_(wanted)).distinct()
            )
            if digest
        }
        rest = [d for d in wanted if d not in found]
        if rest:
            refs = cast(InboxRow.attachments, String)
            for text in await session.scalars(
                select(refs).where(
                    InboxRow.status == "pending", or_(*(refs.contains(STORED_PREFIX + d) for d in rest))
                )
            ):
                found |= {d for d in rest if STORED_PREFIX + d in (text or "")}
    return found


async def remove_unreferenced(db: Database, store: MediaStore | None, digests: Collection[str]) -> int:
    """Remove the files of ``digests`` that nothing holds any more; returns how many were removed."""
    if store is None or not digests:
        return 0
    keep = await held(db, digests)
    removed = 0
    for digest in sorted(set(digests) - keep):
        try:
            removed += await store.delete(digest)
        except ValueError:  # not a digest: never a path
            continue
    if removed:
        log.info("media: %d unreferenced files removed", removed)
    return removed
