"""A Slack reply's text: Slack's control characters escaped, and split at Slack's advised length."""

from __future__ import annotations

MAX_TEXT_CHARS = 4_000
"""Slack truncates past 40,000 characters and advises keeping ``text`` at or below 4,000."""

_ESCAPES = (("&", "&amp;"), ("<", "&lt;"), (">", "&gt;"))


def escape_text(text: str) -> str:
    """Escape Slack's three control characters so a reply cannot form links, mentions or ``<!channel>``."""
    for raw, entity in _ESCAPES:
        text = text.replace(raw, entity)
    return text


def split_text(text: str, limit: int = MAX_TEXT_CHARS) -> list[str]:
    """Split ``text`` into parts of at most ``limit`` characters, none of them blank.

    Cuts at the last paragraph break, else line break, else sentence end, else space in the window
    (when that keeps the part at least half / a quarter full); else a hard cut, moved back so it does
    not break an ``&amp;``-style entity. Deterministic, so a retry skips exactly the parts already sent.
    """
    if limit < 8:
        raise ValueError("limit is too small to split on")
    rest = text.strip()
    parts: list[str] = []
    while len(rest) > limit:
        cut = _cut_point(rest, limit)
        head, rest = rest[:cut].rstrip(), rest[cut:].lstrip()
        if head:
            parts.append(head)
    if rest:
        parts.append(rest)
    return parts


def _cut_point(text: str, limit: int) -> int:
    window = text[: limit + 1]  # a separator right after the limit still counts
    for sep, keep, floor in (("\n\n", 0, limit // 2), ("\n", 0, limit // 2), (". ", 1, limit // 2)):
        at = window.rfind(sep, 0, limit + 1 - keep)
        if at >= floor:
            return at + keep
    at = window.rfind(" ")
    if at >= limit // 4:
        return at
    cut = limit
    amp = text.rfind("&", max(0, cut - 5), cut)
    if amp > 0 and ";" not in text[amp:cut]:
        cut = amp
    return cut
