"""What a file is, whether it is allowed, and a name that is safe to keep and show.

- The type is the bytes' own (``filetype``'s magic numbers; UTF-8 text without NUL bytes is
  ``text/plain``), never what the sender or the platform declared: a ``.pdf`` that is a Windows program
  is a Windows program, and refused.
- Allowed: ``THREADLINE_ATTACHMENTS__ALLOWED_TYPES`` (images, PDF and plain text by default) and at most
  ``__MAX_BYTES`` (10 MiB by default).
- The name: the last component of whatever was given (``../../etc/passwd`` and ``C:\\x\\y.txt`` keep
  ``passwd`` and ``y.txt``), without control or bidirectional-override characters, no leading dot,
  at most 100 characters; a file without a usable name is ``file-<sha prefix>.<ext>``. The name is only
  ever shown or sent: the stored file is named by its sha256 (``core.media.store``).

``MediaRefused``'s message is the reason the customer is told, naming the file's safe name, no secret.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

import filetype  # type: ignore[import-untyped]  # no type hints shipped

from core.errors import MediaRefused
from core.media.store import digest_of
from core.settings import AttachmentSettings

MAX_NAME_CHARS = 100
UNKNOWN_TYPE = "application/octet-stream"
_EXTENSIONS = {
    "image/jpeg": "jpg",
    "image/png": "png",
    "image/gif": "gif",
    "image/webp": "webp",
    "image/heic": "heic",
    "application/pdf": "pdf",
    "text/plain": "txt",
}
_TEXT_SNIFF_BYTES = 64 * 1024


def sniff(data: bytes) -> str:
    """The media type of ``data`` by its content (``application/octet-stream`` when unknown)."""
    guessed = filetype.guess_mime(data[:8192]) if data else None
    if isinstance(guessed, str):
        return guessed
    head = data[:_TEXT_SNIFF_BYTES]
    if b"\x00" in head:
        return UNKNOWN_TYPE
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 4:  # not a multi-byte character cut at the sniff window's end
            return UNKNOWN_TYPE
    return "text/plain"


def safe_name(name: str | None, media_type: str, sha256: str | None = None) -> str:
    """A file name without a path or control characters (see the module docstring)."""
    raw = (name or "").replace("\\", "/").rsplit("/", 1)[-1]
    kept = "".join(
        ch
        for ch in unicodedata.normalize("NFC", raw)
        if unicodedata.category(ch)[0] != "C" and ch not in '<>:"|?*'
    )
    kept = kept.strip().lstrip(".").strip()
    if len(kept) > MAX_NAME_CHARS:
        stem, dot, ext = kept.rpartition(".")
        kept = (
            (stem[: MAX_NAME_CHARS - len(ext) - 1] + dot + ext)
            if dot and len(ext) <= 10
            else kept[:MAX_NAME_CHARS]
        )
    if kept:
        return kept
    return f"file-{(sha256 or 'unknown')[:8]}.{_EXTENSIONS.get(media_type, 'bin')}"


@dataclass(frozen=True, slots=True)
class Checked:
    media_type: str
    name: str


def check(data: bytes, *, name: str | None, settings: AttachmentSettings) -> Checked:
    """The file's type and safe name if it may be kept; ``MediaRefused`` (with the reason) if not."""
    media_type = sniff(data)
    # a file sent without a name (an MMS, a Telegram photo) is named by its digest, not "file-unknown"
    shown = safe_name(name, media_type, None if name else digest_of(data))
    if len(data) > settings.max_bytes:
        raise too_large(shown, settings.max_bytes)
    if not data:
        raise MediaRefused(f"{shown} is empty")
    if media_type not in settings.allowed_types:
        raise MediaRefused(f"{shown} is a kind of file we do not accept")
    return Checked(media_type=media_type, name=shown)


def too_large(shown: str, limit: int) -> MediaRefused:
    """The refusal of a file over ``limit`` bytes, named by its safe name ``shown``."""
    return MediaRefused(f"{shown} is larger than {_size(limit)}")


def _size(count: int) -> str:
    if count >= 1024 * 1024:
        return f"{count / (1024 * 1024):g} MB"
    return f"{count / 1024:g} KB"


def shown_size(count: int) -> str:
    """``120 KB``, ``2.4 MB``: a size as the customer and the agent read it."""
    if count >= 1024 * 1024:
        return f"{count / (1024 * 1024):.1f} MB"
    return f"{max(1, round(count / 1024))} KB"
