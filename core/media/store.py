"""``FileMediaStore``: files kept once, by the sha256 of their bytes, under ``<data dir>/media``.

The embedded default of the ``core.ports.MediaStore`` port (in scale mode, several processes on several
hosts, the bytes are in PostgreSQL instead: ``core.media.pg_store``, chosen by ``media_store``).

Layout ``media/<first two hex digits>/<sha256>``: folders 0700, files 0600 (``core.store.private_files``),
written to a temporary file in the same folder and renamed into place, so a reader never sees half a file
and a crash leaves at most a stray temporary file. Only a well-formed sha256 (64 lower-case hex digits) is
ever turned into a path: nothing a customer or a platform says can name a file outside the folder.

The disk work runs in a thread (``asyncio.to_thread``): the event loop keeps answering webhooks while a
10 MiB file is written.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import tempfile
from pathlib import Path

from core.store.private_files import FILE_MODE, private_dir

_SHA256 = re.compile(r"[0-9a-f]{64}")


def digest_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class FileMediaStore:
    """Content-addressed files in ``root`` (``<data dir>/media``): a ``core.ports.MediaStore``."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def __repr__(self) -> str:
        return f"FileMediaStore(root={str(self.root)!r})"

    def path(self, sha256: str) -> Path:
        """Where the file of ``sha256`` lives; ``ValueError`` for anything that is not a sha256."""
        if not _SHA256.fullmatch(sha256):
            raise ValueError("not a sha256 digest")
        return self.root / sha256[:2] / sha256

    async def put(self, data: bytes) -> str:
        """Keep ``data`` (once, whatever the number of calls) and return its sha256."""
        sha256 = digest_of(data)
        await asyncio.to_thread(self._write, sha256, data)
        return sha256

    def _write(self, sha256: str, data: bytes) -> None:
        target = self.path(sha256)
        if target.is_file() and target.stat().st_size == len(data):
            return
        private_dir(self.root)
        private_dir(target.parent)
        handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=".incoming-")
        try:
            os.fchmod(handle, FILE_MODE)
            with os.fdopen(handle, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temporary, target)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise

    async def get(self, sha256: str) -> bytes:
        """The bytes of ``sha256``; ``FileNotFoundError`` when they are not here (forgotten, or never)."""
        return await asyncio.to_thread(self.path(sha256).read_bytes)

    async def has(self, sha256: str) -> bool:
        try:
            path = self.path(sha256)
        except ValueError:
            return False
        return await asyncio.to_thread(path.is_file)

    async def delete(self, sha256: str) -> bool:
        """Remove the file of ``sha256``; False when it was not there."""
        path = self.path(sha256)
        try:
            await asyncio.to_thread(path.unlink)
        except FileNotFoundError:
            return False
        return True
