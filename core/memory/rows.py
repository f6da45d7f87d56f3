"""The memory index's values (``core.ports.MemoryIndex``): a stored row as Mem0 reads it, one scope's
recall signals, and the reading of a row's ``created_at``.

Plain values, shared by every implementation of the port (the SQLite file of the embedded default, the
PostgreSQL tables of the scale setup) and by ``core.memory.local``, which ranks the signals.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
from numpy.typing import NDArray

# A vector as Mem0 and the embedder hand it over: a list of floats or a numpy row.
Vector = Sequence[float] | NDArray[Any]


@dataclass(frozen=True, slots=True)
class VectorHit:
    """One row as Mem0 reads it: ``id``, ``score`` (higher is closer; None for plain reads), ``payload``."""

    id: str
    score: float | None
    payload: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ScopeSignals:
    """Every row of one scope in the order written, with what recall ranks them by (aligned lists).

    ``dense``: cosine to the query vector; ``keyword``: BM25 (higher is better) for the query's terms,
    0 where no term matches; ``dated``: whether the memory's text says when (``time_words``), None when
    the index did not read it.
    """

    ids: list[str]
    written: list[datetime | None]
    dense: NDArray[np.float32]
    keyword: NDArray[np.float32]
    dated: NDArray[np.bool_] | None = None

    @classmethod
    def empty(cls) -> ScopeSignals:
        return cls(ids=[], written=[], dense=np.zeros(0, np.float32), keyword=np.zeros(0, np.float32))


def written_at(value: Any) -> datetime | None:
    """A row's ``created_at`` (ISO 8601, as Mem0 writes it) as an aware datetime; None when unreadable."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def unit_vector(vector: Vector) -> NDArray[np.float32]:
    """``vector`` as a flat float32 row of length 1 (a zero vector stays zero)."""
    array = np.asarray(vector, dtype=np.float32).reshape(-1)
    norm = float(np.linalg.norm(array))
    return (array / norm).astype(np.float32) if norm > 0 else array


def rows_to_insert(
    count: int, payloads: Sequence[Mapping[str, Any]] | None, ids: Sequence[str] | None
) -> tuple[list[str], list[Mapping[str, Any]]]:
    """The ids and payloads of ``count`` rows Mem0 inserts: ``ids`` default to new UUIDs, ``payloads`` to
    ``{}``; ``ValueError`` when the lengths differ (every ``MemoryIndex.insert`` checks the same way)."""
    row_ids = list(ids) if ids is not None else [str(uuid.uuid4()) for _ in range(count)]
    row_payloads = list(payloads) if payloads is not None else [{} for _ in range(count)]
    if not len(row_ids) == len(row_payloads) == count:
        raise ValueError("vectors, payloads and ids differ in length")
    return row_ids, row_payloads
