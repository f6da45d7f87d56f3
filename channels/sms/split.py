"""``split_sms``: a reply in parts at Twilio's 1,600-character limit, at natural boundaries."""

from __future__ import annotations

import re
from typing import Final

SMS_MAX_CHARS: Final = 1600  # Twilio's hard limit on a message body (error 21617)

_SENTENCE_END = re.compile(r"[.!?…。！？][\"'”’)\]]*\s+")


def _units(text: str) -> int:
    """Length as Twilio counts it: UTF-16 code units (an emoji outside the BMP counts twice)."""
    return len(text.encode("utf-16-le")) // 2


def _fit(text: str, limit: int) -> int:
    """The largest ``n`` such that ``text[:n]`` is at most ``limit`` UTF-16 units."""
    if _units(text) <= limit:
        return len(text)
    used = 0
    for index, char in enumerate(text):
        used += 2 if ord(char) > 0xFFFF else 1
        if used > limit:
            return index
    return len(text)


def _cut_point(window: str) -> int:
    """Where to end a part inside ``window``: paragraph, line, sentence, then word; else all of it."""
    floor = len(window) // 2
    for separator in ("\n\n", "\n"):
        at = window.rfind(separator)
        if at >= floor:
            return at + len(separator)
    ends = [m.end() for m in _SENTENCE_END.finditer(window)]
    if ends and ends[-1] >= floor:
        return ends[-1]
    spaces = [m.end() for m in re.finditer(r"\s+", window)]
    if spaces and spaces[-1] > 0:
        return spaces[-1]
    return len(window)


def split_sms(text: str, limit: int = SMS_MAX_CHARS) -> list[str]:
    """Split ``text`` into parts of at most ``limit`` characters (UTF-16 units), at natural boundaries.

    Parts are trimmed; a text with nothing but whitespace gives no parts.
    """
    if limit < 2:
        raise ValueError("limit must be at least 2")
    parts: list[str] = []
    rest = text.strip()
    while rest:
        if _units(rest) <= limit:
            parts.append(rest)
            break
        window = rest[: _fit(rest, limit)]
        cut = _cut_point(window)
        part = rest[:cut].rstrip()
        if not part:  # a run of whitespace at the start cannot happen after strip; be safe anyway
            part, cut = window, len(window)
        parts.append(part)
        rest = rest[cut:].lstrip()
    return parts
