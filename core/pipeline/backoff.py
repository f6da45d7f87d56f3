"""Exponential backoff with full jitter, shared by every retry loop in the hub."""

from __future__ import annotations

import random
from datetime import datetime, timedelta


def backoff_delay(attempt: int, *, base: float, cap: float, at_least: float | None = None) -> float:
    """Seconds to wait before retry number ``attempt`` (1-based): full jitter over ``base * 2**(attempt-1)``.

    ``at_least`` (a platform's Retry-After) is honoured even when it exceeds the cap.
    """
    ceiling = min(cap, base * (2 ** max(0, attempt - 1)))
    delay = random.uniform(ceiling / 2, ceiling)  # noqa: S311 - jitter, not cryptography
    if at_least is not None:
        delay = max(delay, at_least)
    return delay


def next_attempt(
    now: datetime, attempt: int, *, base: float, cap: float, at_least: float | None = None
) -> datetime:
    return now + timedelta(seconds=backoff_delay(attempt, base=base, cap=cap, at_least=at_least))
