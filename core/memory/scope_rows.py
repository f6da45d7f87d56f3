"""One scope's rows as recall ranks them: ids, written times, channels and unit vectors, oldest first.

Kept between recalls by :class:`~core.memory.sqlite_scopes.ScopeCache` (see there for when and why) and
changed in place of a fresh read: a change costs what changed (new rows appended into room kept after
the vectors; a deleted row's vector left behind in its slot until over a quarter is), never a copy of
every vector. Nothing handed out is ever changed afterwards.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
from numpy.typing import NDArray

from core.memory.ranking import WrittenTimes, source_code
from core.memory.rows import written_at

# rid, id, time (said, else written), vector (float32 bytes), source channel, 1 when its text says when
Row = Sequence[Any]
_FEW = 64  # rows deleted from a kept scope one by one; more are filtered in one pass


class _Buffer:
    """The storage behind the vectors of kept scopes, with room to append. ``used`` rows are written; a
    row once written is never written again, so every view handed out (``array[:n]``, n <= used) stays as
    it was. Only a :class:`ScopeRows` whose ``vectors`` end at ``used`` may append in place (at ``used``);
    any other one appending copies what it needs into a new buffer."""

    __slots__ = ("array", "used")

    def __init__(self, array: NDArray[np.float32], used: int) -> None:
        self.array = array
        self.used = used

    @classmethod
    def holding(cls, matrix: NDArray[np.float32], extra: int) -> _Buffer:
        """A new buffer with ``matrix`` in it and room for ``extra`` rows and a quarter more."""
        rows, dims = matrix.shape
        array = np.empty((rows + extra + max(16, rows // 4), dims), dtype=np.float32)
        array[:rows] = matrix
        return cls(array, rows)


@dataclass(frozen=True, slots=True)
class ScopeRows:
    """One scope's rows, oldest first (by written time, then rowid): what recall ranks. Read-only.

    The vectors live in ``vectors``, one per *slot*; ``slots[i]`` is the slot of row ``i`` (None: row ``i``
    is slot ``i``). A deleted row leaves its slot behind instead of copying the matrix; new rows take new
    slots at the end. Left-behind slots are dropped (the matrix copied once) when they pass a quarter.
    """

    rids: NDArray[np.int64]
    ids: list[str]
    written: list[datetime | None]
    stamps: NDArray[np.float64]  # the sort key: the written time in seconds, -inf when unknown
    sources: NDArray[np.int64]  # the channel each row came from, as :func:`~core.memory.ranking.source_code`
    dated: NDArray[np.bool_]  # whether each row's text says when (``core.memory.time_words``)
    vectors: NDArray[np.float32]  # (slots, dims), C-contiguous, one unit vector per slot
    by_rid: NDArray[np.int64]  # positions in rowid order, for :meth:`positions`
    slots: NDArray[np.int64] | None = None  # the slot of each row; None when row i is slot i
    buffer: _Buffer | None = None  # where ``vectors`` lives when rows may be appended in place

    @classmethod
    def empty(cls, dims: int) -> ScopeRows:
        return cls._ordered(
            np.zeros(0, np.int64),
            [],
            [],
            np.zeros(0, np.float64),
            np.zeros(0, np.int64),
            np.zeros((0, dims), np.float32),
        )

    @classmethod
    def read(cls, rows: Sequence[Row], dims: int) -> ScopeRows:
        """Rows as selected from ``memory_vectors`` (:data:`SCOPE_COLUMNS`), in any order."""
        written = [written_at(r[2]) for r in rows]
        stamps = np.array([w.timestamp() if w is not None else -np.inf for w in written], dtype=np.float64)
        rids = np.array([int(r[0]) for r in rows], dtype=np.int64)
        sources = np.array([source_code(r[4] if len(r) > 4 else None) for r in rows], dtype=np.int64)
        dated = np.array([len(r) > 5 and r[5] == 1 for r in rows], dtype=np.bool_)
        order = np.lexsort((rids, stamps)).tolist()
        matrix = np.frombuffer(b"".join([rows[i][3] for i in order]), dtype=np.float32)
        return cls._ordered(
            rids[order],
            [str(rows[i][1]) for i in order],
            [written[i] for i in order],
            stamps[order],
            sources[order],
            matrix.reshape(len(order), dims),
            dated=dated[order],
        )

    @classmethod
    def _ordered(
        cls,
        rids: NDArray[np.int64],
        ids: list[str],
        written: list[datetime | None],
        stamps: NDArray[np.float64],
        sources: NDArray[np.int64],
        matrix: NDArray[np.float32],
        *,
        dated: NDArray[np.bool_] | None = None,
        by_rid: NDArray[np.int64] | None = None,
        slots: NDArray[np.int64] | None = None,
        buffer: _Buffer | None = None,
    ) -> ScopeRows:
        if dated is None:
            dated = np.zeros(len(rids), dtype=np.bool_)
        if by_rid is None:
            by_rid = np.argsort(rids, kind="stable").astype(np.int64)
        timed = WrittenTimes(written, stamps, sources)  # ranking splits conversations from these
        return cls(
            rids=rids,
            ids=ids,
            written=timed,
            stamps=stamps,
            sources=sources,
            dated=dated,
            vectors=matrix,
            by_rid=by_rid,
            slots=slots,
            buffer=buffer,
        )

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def matrix(self) -> NDArray[np.float32]:
        """The rows' vectors in row order, C-contiguous (a copy when slots were left behind)."""
        return self.vectors if self.slots is None else np.ascontiguousarray(self.vectors[self.slots])

    def cosines(self, unit: NDArray[np.float32]) -> NDArray[np.float32]:
        """Each row's cosine to the unit vector ``unit``: one matrix-vector product over the slots."""
        dense: NDArray[np.float32] = (self.vectors @ unit).astype(np.float32)
        return dense if self.slots is None else dense[self.slots]

    def positions(self, rids: NDArray[np.int64]) -> NDArray[np.int64]:
        """Where each of ``rids`` is in these rows; -1 for a rowid that is not here."""
        if len(self.rids) == 0:
            return np.full(len(rids), -1, dtype=np.int64)
        sorted_rids = self.rids[self.by_rid]
        at = np.searchsorted(sorted_rids, rids).clip(0, len(sorted_rids) - 1)
        found = sorted_rids[at] == rids
        return np.where(found, self.by_rid[at], -1).astype(np.int64)

    def _without(self, drop: NDArray[np.int64]) -> ScopeRows:
        """These rows without the positions ``drop`` (sorted, unique): their slots are left behind."""
        keep = np.ones(len(self), dtype=bool)
        keep[drop] = False
        if len(drop) <= _FEW:  # a few: list copies and memmoves, no Python loop over every row
            ids, written = list(self.ids), list(self.written)
            for position in drop[::-1].tolist():
                del ids[position]
                del written[position]
        else:
            kept = np.flatnonzero(keep).tolist()
            ids, written = [self.ids[i] for i in kept], [self.written[i] for i in kept]
        renumber = np.cumsum(keep, dtype=np.int64) - 1  # old position -> new position, for the kept
        by_rid = renumber[self.by_rid[keep[self.by_rid]]]
        slots = np.flatnonzero(keep) if self.slots is None else self.slots[keep]
        return ScopeRows._ordered(
            self.rids[keep],
            ids,
            written,
            self.stamps[keep],
            self.sources[keep],
            self.vectors,
            dated=self.dated[keep],
            by_rid=by_rid,
            slots=slots.astype(np.int64),
            buffer=self.buffer,
        )

    def _appended(self, added: ScopeRows) -> ScopeRows | None:
        """These rows with ``added`` after them, when those are all newer (the common change: new memories),
        copying only the new rows' vectors; None when they would not go at the end."""
        if len(self) and len(added) and (added.stamps[0], added.rids[0]) <= (self.stamps[-1], self.rids[-1]):
            return None
        count, extra = len(self), len(added)
        vectors, slots, buffer = self.vectors, self.slots, self.buffer
        if slots is not None and len(slots) * 4 < vectors.shape[0] * 3:  # over a quarter left behind
            vectors, slots, buffer = self.matrix, None, None
        used = vectors.shape[0]
        if buffer is None or buffer.used != used or buffer.array.shape[0] < used + extra:
            buffer = _Buffer.holding(vectors, extra)
        buffer.array[used : used + extra] = added.matrix
        buffer.used = used + extra
        if slots is not None:
            slots = np.concatenate([slots, np.arange(used, used + extra, dtype=np.int64)])
        by_rid: NDArray[np.int64] | None = None
        if count and extra and int(added.rids.min()) > int(self.rids.max()):  # the rowid order extends
            by_rid = np.concatenate([self.by_rid, count + added.by_rid])
        return ScopeRows._ordered(
            np.concatenate([self.rids, added.rids]),
            self.ids + added.ids,
            [*self.written, *added.written],
            np.concatenate([self.stamps, added.stamps]),
            np.concatenate([self.sources, added.sources]),
            buffer.array[: used + extra],
            dated=np.concatenate([self.dated, added.dated]),
            by_rid=by_rid,
            slots=slots,
            buffer=buffer,
        )

    def changed(self, gone: NDArray[np.int64], fresh: Sequence[Row]) -> ScopeRows:
        """These rows without the rowids ``gone``, with the rows ``fresh`` (read again), in written order.

        The common changes copy no vectors but the new ones: a deleted row leaves its slot behind, and new
        memories (the newest) are appended. Anything else comes out as :meth:`read` would make it.
        """
        at = self.positions(np.asarray(gone, dtype=np.int64))
        drop = np.unique(at[at >= 0])
        if not fresh and len(drop) == 0:
            return self
        base = self._without(drop) if len(drop) else self
        if not fresh:
            return base
        added = ScopeRows.read(fresh, self.vectors.shape[1])
        appended = base._appended(added)
        if appended is not None:
            return appended
        rids = np.concatenate([base.rids, added.rids])
        stamps = np.concatenate([base.stamps, added.stamps])
        ids, written = base.ids + added.ids, [*base.written, *added.written]
        order = np.lexsort((rids, stamps))
        listed = order.tolist()
        return ScopeRows._ordered(
            rids[order],
            [ids[i] for i in listed],
            [written[i] for i in listed],
            stamps[order],
            np.concatenate([base.sources, added.sources])[order],
            np.ascontiguousarray(np.concatenate([base.matrix, added.matrix])[order]),
            dated=np.concatenate([base.dated, added.dated])[order],
        )
