"""The text of a PDF a customer sent, read for the agent: bounded, and given up on rather than waited for.

A PDF is a program of sorts: a crafted one can hold a million pages, streams that inflate to gigabytes,
reference cycles, or text operators by the million on one page. What is read, and how:

- ``pypdf`` (pure Python; its decompression limits cap what one stream may inflate to), non-strict, in one
  dedicated thread (``_READER``): the event loop keeps answering webhooks, and a PDF that takes long holds
  that one thread, never the default pool the media store and the database driver use;
- the first ``MAX_PAGES`` pages only, and at most ``MAX_CHARS`` characters (whitespace folded);
- a deadline (``DEADLINE_SECONDS``) checked between pages and on every content-stream operator (pypdf's
  ``visitor_operand_before`` hook): past it the reader stops by itself (a thread cannot be killed, so it
  must stop on its own), keeping what it read so far; the caller also stops waiting at the deadline;
- an encrypted PDF is tried with the empty password (what "protected" invoices often use); otherwise,
  like a broken one, it has no text: ``None``. The file is still stored: only the agent reads less.

Nothing here logs the text or the file's name: only why a PDF could not be read (the exception's type).
"""

from __future__ import annotations

import asyncio
import io
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

log = logging.getLogger(__name__)

MAX_PAGES = 20
MAX_CHARS = 4_000
DEADLINE_SECONDS = 10.0

_READER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pdf-text")


class _OutOfTime(Exception):
    """Raised inside pypdf's operator hook when the deadline has passed."""


def _read(data: bytes, deadline: float, max_pages: int, max_chars: int) -> str | None:
    from pypdf import PdfReader  # imported here: only a process that reads a PDF pays for it

    def check_time(*_: Any) -> None:
        if time.monotonic() > deadline:
            raise _OutOfTime

    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
        if reader.is_encrypted and not reader.decrypt(""):
            return None
        parts: list[str] = []
        size = 0
        for index in range(min(max_pages, len(reader.pages))):
            check_time()
            try:
                text = reader.pages[index].extract_text(visitor_operand_before=check_time)
            except _OutOfTime:
                break
            folded = " ".join(text.split())
            if folded:
                parts.append(folded)
                size += len(folded) + 1
            if size >= max_chars:
                break
    except _OutOfTime:
        log.info("pdf text: out of time before the first page")
        return None
    except Exception as exc:  # a broken PDF can fail in any of pypdf's layers; it just has no text
        log.info("pdf text: unreadable (%s)", type(exc).__name__)
        return None
    text = "\n".join(parts).strip()
    if len(text) > max_chars:
        text = text[: max_chars - 1] + "…"
    return text or None


async def pdf_text(
    data: bytes,
    *,
    max_pages: int = MAX_PAGES,
    max_chars: int = MAX_CHARS,
    deadline_seconds: float = DEADLINE_SECONDS,
) -> str | None:
    """The first pages' text of the PDF ``data`` (bounded, see the module docstring), or ``None`` when it
    has none that can be read in time (scanned, encrypted, broken)."""
    deadline = time.monotonic() + deadline_seconds
    loop = asyncio.get_running_loop()
    work = loop.run_in_executor(_READER, _read, data, deadline, max_pages, max_chars)
    try:
        # a little beyond the reader's own deadline: it stops by itself, this is the backstop
        return await asyncio.wait_for(asyncio.shield(work), timeout=deadline_seconds + 1.0)
    except TimeoutError:
        log.warning("pdf text: the reader did not stop at its deadline; the file is kept without text")
        return None
