"""What a memory is, where it came from and which memories a recall keeps: the memory layer's value types.

``Provenance`` (where a memory came from, who said it and when), ``MemoryRecord`` (one memory as recall, list
and export return it) and ``MemoryFilter`` (category, channel, a date window). Frozen and keyword-only,
like the rest of ``core.messages``, which re-exports them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, Literal

from core.memory.attribution import STATEMENT_METADATA

# a channel is named by its adapter; core checks only the shape of the name (identity.normalize knows
# which channels exist and how each one's handles are written)
CHANNEL_NAME = re.compile(r"[a-z][a-z0-9_]{0,31}")

SaidBy = Literal["customer", "support_team"]
MemoryCategory = Literal["profile", "support_history", "special_handling", "operational_state"]
MEMORY_CATEGORIES: tuple[MemoryCategory, ...] = (
    "profile",
    "support_history",
    "special_handling",
    "operational_state",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Provenance:
    """Where a memory came from: the channel, the handle, and our message ids (``inbox:<id>``)."""

    channel: str
    handle: str
    message_ids: tuple[str, ...]
    category: MemoryCategory
    turn_ids: tuple[int, ...] = ()
    # False: from a message nobody vouched for (an email without DMARC pass, the console): recalled only
    # for that same handle, never for the customer's other channels
    sender_vouched: bool = True
    # who said it: the customer, or a person of the support team (an operator's reply during a handoff)
    said_by: SaidBy = "customer"
    # when it was said (the message's time): what the memory is dated by, not when it was written; the two
    # differ for a backfill or a write retried after an outage
    said_at: datetime | None = None

    def as_metadata(self) -> dict[str, Any]:
        """The memory's metadata: where it came from, who said it and when, and that nobody checked it."""
        said_at = {} if self.said_at is None else {"said_at": _utc(self.said_at).isoformat()}
        return {
            **STATEMENT_METADATA,
            **said_at,
            "said_by": self.said_by,
            "sender_vouched": self.sender_vouched,
            "source_channel": self.channel,
            "source_handle": self.handle,
            "message_ids": list(self.message_ids),
            "turn_ids": list(self.turn_ids),
            "category": self.category,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class MemoryRecord:
    """One memory as recall, list and export return it."""

    id: str
    text: str
    score: float | None = None
    channel: str | None = None
    handle: str | None = None
    message_ids: tuple[str, ...] = ()
    turn_ids: tuple[int, ...] = ()
    category: str | None = None
    created_at: datetime | None = None  # when it was written
    said_at: datetime | None = None  # when it was said (``Provenance.said_at``); None when not recorded
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def when(self) -> datetime | None:
        """When the memory was said, else when it was written: what it is dated and filtered by."""
        return self.said_at or self.created_at

    def as_json(self) -> dict[str, Any]:
        """The memory as ``threadline memory --json`` and an export show it: text, provenance, metadata
        (who said it, whether it was verified), and the recall score when it came from a search."""
        return {
            "id": self.id,
            "text": self.text,
            "score": self.score,
            "category": self.category,
            "channel": self.channel,
            "handle": self.handle,
            "message_ids": list(self.message_ids),
            "turn_ids": list(self.turn_ids),
            "created_at": self.created_at.isoformat() if self.created_at else None,
            "said_at": self.said_at.isoformat() if self.said_at else None,
            "metadata": dict(self.metadata),
        }


def _utc(moment: datetime) -> datetime:
    """``moment`` in UTC (a naive one is taken as UTC)."""
    return moment.astimezone(UTC) if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _moment(text: str, name: str) -> datetime:
    """An ISO date (midnight UTC) or date-time (UTC when it has no offset); ``ValueError`` names ``name``."""
    value = text.strip()
    try:
        if len(value) == 10:
            return datetime.combine(date.fromisoformat(value), datetime.min.time(), tzinfo=UTC)
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(
            f"{name}: not an ISO date or date-time (2025-01-31 or 2025-01-31T09:00:00Z): {value[:40]!r}"
        ) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True, kw_only=True)
class MemoryFilter:
    """Which of a customer's memories a recall or a listing keeps (every condition given must hold).

    ``category``: the memory's category (one of ``MEMORY_CATEGORIES``); ``channel``: the channel it came
    from (its ``source_channel``, as ``Provenance.as_metadata`` writes it); ``since`` (inclusive) and
    ``until`` (exclusive): when it was said (``MemoryRecord.when``: ``said_at``, else ``created_at``; a
    memory without either is left out when either is given). Naive times are UTC. ``ValueError`` for an
    unknown category, a malformed channel name or ``since`` not before ``until``.
    """

    category: MemoryCategory | None = None
    channel: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def __post_init__(self) -> None:
        if self.category is not None and self.category not in MEMORY_CATEGORIES:
            raise ValueError(
                f"unknown category {str(self.category)[:40]!r}: use one of {', '.join(MEMORY_CATEGORIES)}"
            )
        if self.channel is not None and not CHANNEL_NAME.fullmatch(self.channel):
            raise ValueError(f"not a channel name: {self.channel[:40]!r}")
        for name in ("since", "until"):
            moment = getattr(self, name)
            if moment is not None and moment.tzinfo is None:
                object.__setattr__(self, name, moment.replace(tzinfo=UTC))
        if self.since is not None and self.until is not None and self.since >= self.until:
            raise ValueError("since must be before until (since is inclusive, until exclusive)")

    @classmethod
    def parse(
        cls,
        *,
        category: str | None = None,
        channel: str | None = None,
        since: str | None = None,
        until: str | None = None,
    ) -> MemoryFilter:
        """A filter from text (a query string, command-line options); empty values mean no condition."""
        chosen = next((c for c in MEMORY_CATEGORIES if c == category), None)
        if category and chosen is None:
            raise ValueError(f"unknown category {category[:40]!r}: use one of {', '.join(MEMORY_CATEGORIES)}")
        return cls(
            category=chosen,
            channel=channel.strip().lower() if channel and channel.strip() else None,
            since=_moment(since, "since") if since and since.strip() else None,
            until=_moment(until, "until") if until and until.strip() else None,
        )

    @property
    def empty(self) -> bool:
        return self.category is None and self.channel is None and self.since is None and self.until is None

    def metadata(self) -> dict[str, str]:
        """The conditions on the memory's metadata, as equalities of its stored payload."""
        found: dict[str, str] = {}
        if self.category is not None:
            found["category"] = self.category
        if self.channel is not None:
            found["source_channel"] = self.channel
        return found

    def admits_time(self, written: datetime | None) -> bool:
        if self.since is None and self.until is None:
            return True
        if written is None:
            return False
        if written.tzinfo is None:
            written = written.replace(tzinfo=UTC)
        return (self.since is None or written >= self.since) and (self.until is None or written < self.until)

    def admits(self, record: MemoryRecord) -> bool:
        """True when ``record`` meets every condition."""
        return (
            (self.category is None or record.category == self.category)
            and (self.channel is None or record.channel == self.channel)
            and self.admits_time(record.when)
        )

    def as_json(self) -> dict[str, str | None]:
        return {
            "category": self.category,
            "channel": self.channel,
            "since": self.since.isoformat() if self.since else None,
            "until": self.until.isoformat() if self.until else None,
        }
