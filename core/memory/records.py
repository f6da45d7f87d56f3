"""Mem0 memory items (open source and hosted answer alike) as our ``MemoryRecord``, provenance included."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import UTC, date, datetime
from typing import Any

from core.memory.time_words import MENTIONS_TIME
from core.messages import ChatMessage, MemoryRecord


def _datetime(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def _ints(value: Any) -> tuple[int, ...]:
    if not isinstance(value, list):
        return ()
    return tuple(int(v) for v in value if isinstance(v, int) and not isinstance(v, bool))


def _strs(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list):
        return ()
    return tuple(str(v) for v in value)


def _optional_str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def to_record(item: Mapping[str, Any]) -> MemoryRecord:
    """One Mem0 item (``id``, ``memory``, ``score``, ``created_at``, ``metadata``) as a ``MemoryRecord``."""
    metadata = item.get("metadata")
    meta: dict[str, Any] = dict(metadata) if isinstance(metadata, Mapping) else {}
    meta.pop(MENTIONS_TIME, None)  # the index's own flag (``time_words``), not the memory's metadata
    score = item.get("score")
    return MemoryRecord(
        id=str(item.get("id", "")),
        text=str(item.get("memory") or ""),
        score=float(score) if isinstance(score, int | float) and not isinstance(score, bool) else None,
        channel=_optional_str(meta.get("source_channel")),
        handle=_optional_str(meta.get("source_handle")),
        message_ids=_strs(meta.get("message_ids")),
        turn_ids=_ints(meta.get("turn_ids")),
        category=_optional_str(meta.get("category")),
        created_at=_datetime(item.get("created_at")),
        said_at=_datetime(meta.get("said_at")),
        metadata=meta,
    )


# What Mem0 keeps at the top of a stored payload; everything else in it is the memory's metadata.
_PAYLOAD_CORE = frozenset(
    {
        "id",
        "data",
        "hash",
        "created_at",
        "updated_at",
        "text_lemmatized",
        "user_id",
        "agent_id",
        "run_id",
        "actor_id",
        "role",
        "attributed_to",
        "expiration_date",
        MENTIONS_TIME,  # derived from the text by the index (``time_words``), not the memory's metadata
    }
)


PAYLOAD_KEYS = _PAYLOAD_CORE  # for importers: metadata keys a memory's own metadata must never set


def from_payload(memory_id: str, payload: Mapping[str, Any], score: float | None = None) -> MemoryRecord:
    """A row of our vector store (a Mem0 payload) as a ``MemoryRecord``, as Mem0's own search shapes it."""
    item: dict[str, Any] = {
        "id": memory_id,
        "memory": payload.get("data") or "",
        "score": score,
        "created_at": payload.get("created_at"),
        "metadata": {k: v for k, v in payload.items() if k not in _PAYLOAD_CORE},
    }
    return to_record(item)


def expired(payload: Mapping[str, Any], *, today: date | None = None) -> bool:
    """True when the memory carries an ``expiration_date`` (ISO date) before today (UTC), as Mem0 reads it."""
    value = payload.get("expiration_date")
    if not value:
        return False
    try:
        return date.fromisoformat(str(value)) < (today or datetime.now(UTC).date())
    except ValueError:
        return False


def belongs_to(item: Mapping[str, Any], customer_id: str) -> bool:
    """False when the item says it is someone else's (defence in depth behind the backend's own filter)."""
    owner = item.get("user_id")
    return owner is None or str(owner) == customer_id


def wanted_handles(handles: Collection[str] | None) -> frozenset[str] | None:
    """``move``'s handle selection as a set (None: every handle). A bare string is refused, not split."""
    if handles is None:
        return None
    if isinstance(handles, str):
        raise TypeError("handles must be a collection of handles, not one string")
    return frozenset(str(h) for h in handles)


def as_mem0_messages(messages: list[ChatMessage], *, user_only: bool = False) -> list[dict[str, str]]:
    """Our chat messages as Mem0 dicts (``role``, ``content``); ``user_only`` keeps the user's lines only."""
    return [
        {"role": m.role, "content": m.content}
        for m in messages
        if m.content.strip() and (m.role == "user" or (not user_only and m.role == "assistant"))
    ]


def newest_first(records: list[MemoryRecord]) -> list[MemoryRecord]:
    """Sorted by ``created_at`` descending; undated records last, in their given order."""
    dated = [r for r in records if r.created_at is not None]
    undated = [r for r in records if r.created_at is None]
    dated.sort(key=lambda r: r.created_at.timestamp() if r.created_at else 0.0, reverse=True)
    return dated + undated


def results_of(response: Any) -> list[Mapping[str, Any]]:
    """The memory items of a Mem0 answer: ``{"results": [...]}``, a bare list, or a paginated page."""
    items = response.get("results", []) if isinstance(response, Mapping) else response
    if not isinstance(items, list):
        return []
    return [item for item in items if isinstance(item, Mapping)]
