"""``LocalLimits``: the ``core.ports.SharedLimits`` of one process, kept in memory.

Every adapter that paces or caps (Slack's channel pacing, Telegram's send rate, the email reply cap, the
email webhook's single-use tokens, the Slack attestation mark) starts with one of these, so an adapter
built alone (tests, ``threadline setup``) works as it always did. The composition root then binds the
database's limits (``core.store.shared_limits.DatabaseLimits``) where several processes share one
database, so that N processes together let through once what one process would.

The arithmetic is the one ``DatabaseLimits`` runs in SQL: ``pace`` is a GCRA (each key keeps the
theoretical arrival time of its next message), ``reserve`` a sliding window of expiry stamps per key.
At most ``max_keys`` keys of each kind are kept: idle ones (nothing left to remember) go first, then the
oldest.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class LocalLimits:
    """``SharedLimits`` for one process (see the module docstring); ``clock`` is injectable for tests."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic, max_keys: int = 100_000) -> None:
        self._clock = clock
        self._max_keys = max_keys
        self._tat: dict[str, float] = {}  # key -> theoretical arrival time of its next message
        self._uses: dict[str, list[float]] = {}  # key -> expiry stamps of the uses still counted

    def slot(self, key: str, *, interval: float, burst: int) -> float:
        """``pace`` without awaiting: reserve the next slot, return the seconds to wait for it."""
        if interval <= 0:
            return 0.0
        now = self._clock()
        if key not in self._tat and len(self._tat) >= self._max_keys:
            self._tat = {k: t for k, t in self._tat.items() if t > now}  # an idle key is a fresh one
            while len(self._tat) >= self._max_keys:
                del self._tat[next(iter(self._tat))]
        tat = max(self._tat.get(key, now), now)
        self._tat[key] = tat + interval
        return max(0.0, tat - now - (burst - 1) * interval)

    async def pace(self, key: str, *, interval: float, burst: int) -> float:
        return self.slot(key, interval=interval, burst=burst)

    async def reserve(self, key: str, *, limit: int, window: float) -> float | None:
        now = self._clock()
        uses = [stamp for stamp in self._uses.get(key, ()) if stamp > now]
        if len(uses) >= limit:
            self._uses[key] = uses
            return None
        if key not in self._uses and len(self._uses) >= self._max_keys:
            self._uses = {k: s for k, s in self._uses.items() if s and max(s) > now}
            while len(self._uses) >= self._max_keys:
                del self._uses[next(iter(self._uses))]
        stamp = now + window
        uses.append(stamp)
        self._uses[key] = uses
        return stamp

    async def release(self, key: str, ticket: float) -> None:
        uses = self._uses.get(key)
        if uses is not None and ticket in uses:
            uses.remove(ticket)
            if not uses:
                del self._uses[key]
