"""Facts that replace each other: a newer statement of the same fact supersedes the older one.

A customer's address, phone number, email address and plan have one current value. When a memory states
one of them (``slot_of``: "my new address is ...", "I moved to ...", "switched to the Pro plan"), every
older memory of the same customer stating the same kind of fact is marked superseded in its metadata
(``superseded_by``: the newer memory's id, ``superseded_at``). The older memory stays (history, the
export, the console) but recall leaves it out (``is_superseded``), so the bot never answers with an old
address. "Older" is by when each was said (``said_at``; a memory without one: its own ``created_at``, which
an import keeps from the original): a statement written later that was said before the current one (an
import, a delayed write) is itself marked superseded. Times are compared as instants, not as text (Mem0
writes ``created_at`` in US/Pacific, an import in UTC).

Only the kinds of fact listed in ``SLOTS`` are handled: each is a value a customer has one of at a time.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from core.memory.rows import written_at

# what a memory says, per kind of fact; the first that matches names the memory's slot
SLOTS: dict[str, re.Pattern[str]] = {
    "address": re.compile(
        r"\b(?:(?:my|the|our)\s+(?:new\s+|current\s+|home\s+|shipping\s+|delivery\s+|billing\s+|postal\s+)*"
        r"address\s+(?:is|has\s+changed|changed)|(?:i|we|customer|they|he|she)\s+(?:have\s+|has\s+|just\s+)?"
        r"(?:moved|relocated)\s+to|(?:i|we|customer)\s+(?:now\s+)?lives?\s+(?:at|in)|"
        r"(?:ship|deliver|send)\s+(?:everything\s+|it\s+|orders\s+)?to\s+\d)",
        re.IGNORECASE,
    ),
    "phone": re.compile(
        r"\b(?:(?:my|the|our)\s+(?:new\s+|current\s+|mobile\s+|cell\s+|phone\s+)*(?:phone|mobile|cell)"
        r"(?:\s+number)?\s+(?:is|has\s+changed|changed)|new\s+(?:phone\s+|mobile\s+|cell\s+)?number|"
        r"(?:call|text|reach)\s+me\s+(?:on|at)\s+\+?\d)",
        re.IGNORECASE,
    ),
    "email": re.compile(
        r"\b(?:(?:my|the|our)\s+(?:new\s+|current\s+|work\s+)*e-?mail(?:\s+address)?\s+(?:is|has\s+changed|"
        r"changed)|new\s+e-?mail(?:\s+address)?|e-?mail\s+me\s+at)",
        re.IGNORECASE,
    ),
    "plan": re.compile(
        r"\b(?:(?:switched|changed|upgraded|downgraded|moved|migrated)\s+(?:my\s+\w+\s+|the\s+\w+\s+)?"
        r"(?:plan\s+|subscription\s+|package\s+|tier\s+)?to\b|(?:my|the|our)\s+(?:current\s+|new\s+)?"
        r"(?:plan|subscription|package|tier)\s+is|(?:i|we|customer)\s*(?:'m|am|are|is)\s+(?:now\s+)?on\s+the\s+"
        r"[\w\- ]{1,40}?\s+(?:plan|tier|package|subscription)|(?:signed\s+up|subscribed)\s+(?:for|to)\s+"
        r"(?:the\s+)?[\w\- ]{1,40}?\s+(?:plan|tier|package|subscription))",
        re.IGNORECASE,
    ),
}
# the values themselves, for statements in words the patterns above do not know ("Write to ana@x.example
# from now on"); counted only with a word that makes it the customer's own (``_OWN``)
VALUES: dict[str, re.Pattern[str]] = {
    "email": re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+"),
    "phone": re.compile(r"(?<![\w.])\+?\d[\d ().-]{7,}\d\b"),
    "address": re.compile(r"\b\d{1,5}[A-Za-z]?,?\s+(?:[A-Z][\w'-]*\.?\s+){0,3}[A-Z][\w'-]*,\s*[A-Z][\w'-]+"),
    "plan": re.compile(r"\b(?:the\s+)?[A-Z][\w-]*\s+(?:plan|tier|package|subscription)\b"),
}
_OWN = re.compile(r"\b(?:my|me|our|us|from\s+now\s+on|instead)\b", re.IGNORECASE)
MAX_TEXT = 2000  # a memory is a sentence or two; longer text is not looked at past this


def slot_of(text: str) -> str | None:
    """The kind of one-valued fact ``text`` states (``address``, ``phone``, ``email``, ``plan``), or None:
    by what it says ("I moved to ...") first, else by a value of that kind said as the customer's own."""
    clipped = text[:MAX_TEXT]
    for slot, pattern in SLOTS.items():
        if pattern.search(clipped):
            return slot
    if not _OWN.search(clipped):
        return None
    for slot, pattern in VALUES.items():
        if pattern.search(clipped):
            return slot
    return None


def is_superseded(metadata: Mapping[str, Any]) -> bool:
    """Whether a memory was replaced by a newer statement of the same fact (kept as history only)."""
    return bool(metadata.get("superseded_by"))


def said_at(payload: Mapping[str, Any]) -> float:
    """When a memory was said, as a POSIX timestamp: its ``said_at``, else its ``created_at`` (naive: UTC);
    ``-inf`` when it has neither (or neither reads as a time)."""
    moment = written_at(payload.get("said_at")) or written_at(payload.get("created_at"))
    return moment.timestamp() if moment is not None else float("-inf")


def plan_supersession(
    new: Mapping[str, Mapping[str, Any]], existing: Mapping[str, Mapping[str, Any]]
) -> dict[str, str]:
    """Which memories become superseded, and by which: ``{old id: newer id}``.

    ``new``: the payloads just written (id → payload with ``data`` and ``created_at``); ``existing``: the
    customer's other memories. Within each slot the newest statement (by :func:`said_at`, ties by being
    new) is current and every other one not already superseded is superseded by it.
    """
    by_slot: dict[str, list[tuple[float, str, bool, Mapping[str, Any]]]] = {}
    for fresh, group in ((True, new), (False, existing)):
        for memory_id, payload in group.items():
            slot = slot_of(str(payload.get("data") or ""))
            if slot is None or (not fresh and memory_id in new):
                continue
            by_slot.setdefault(slot, []).append((said_at(payload), memory_id, fresh, payload))
    plan: dict[str, str] = {}
    for stated in by_slot.values():
        if not any(row[2] for row in stated):
            continue  # nothing new in this slot: what stands, stands
        current = max(stated, key=lambda row: (row[0], row[2]))
        for row in stated:
            if row[1] != current[1] and not is_superseded(row[3]):
                plan[row[1]] = current[1]
    return plan
