"""Flood control: a per-sender inbound rate, so that one handle's flood cannot starve the others.

Each sender gets a leaky bucket (aiolimiter's ``AsyncLimiter``): ``burst`` messages at once, refilled at
``per_minute``. A message over its sender's rate is still committed (nothing acknowledged is lost, and
the platform is answered as usual, so it does not retry), but as ``throttled``: the worker never
answers it, so a flood costs no LLM calls and no replies. Opt-out keywords are never throttled. The
buckets live in this process, at most ``max_senders`` of them (least recently seen dropped first).
"""

from __future__ import annotations

from collections import OrderedDict

from aiolimiter import AsyncLimiter


class SenderLimits:
    def __init__(self, *, per_minute: float, burst: int, max_senders: int = 10_000) -> None:
        if per_minute <= 0 or burst < 1:
            raise ValueError("per_minute must be positive and burst at least 1")
        self._burst = burst
        self._period = burst * 60.0 / per_minute  # AsyncLimiter: ``burst`` per this many seconds
        self._max = max_senders
        self._buckets: OrderedDict[str, AsyncLimiter] = OrderedDict()

    def has_room(self, sender: str) -> bool:
        """Whether ``sender`` may have one more message answered now (takes nothing)."""
        return self._bucket(sender).has_capacity()

    async def take(self, sender: str) -> None:
        """Count one message of ``sender`` (a new one: a platform's repeat is not counted)."""
        bucket = self._bucket(sender)
        if bucket.has_capacity():
            await bucket.acquire()  # returns at once: there is capacity

    def _bucket(self, sender: str) -> AsyncLimiter:
        bucket = self._buckets.get(sender)
        if bucket is None:
            bucket = self._buckets[sender] = AsyncLimiter(self._burst, self._period)
            while len(self._buckets) > self._max:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(sender)
        return bucket
