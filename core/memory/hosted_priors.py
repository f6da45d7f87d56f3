"""The local ranking's priors over hosted Mem0's search results (``core.memory.platform``).

The hosted service ranks by its own scores; recall on this machine (``core.memory.ranking``) also prefers,
between near-equal matches, the newer one (recency) and, for a question that asks when, a memory whose
text says when (the time prior). :func:`with_priors` applies both to the results the service returned:

- time prior: for a message that asks when (``time_words.asks_when``), a result whose text says when
  (``time_words.says_when``) gains :data:`~core.memory.ranking.TIME_PRIOR` of its score;
- recency: each score is multiplied by ``ranking.recency`` of its time (when it was said, else written),
  its age counted from the newest result (the service shows no more of the customer's memories);

then the results are sorted by the new score, ties keeping the service's order. Results without a
score (an older server) keep the service's order. The scores are the service's, so the priors act within
what the service found; they never bring back a memory it did not return.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from core.memory.ranking import TIME_PRIOR, recency
from core.memory.time_words import asks_when, says_when
from core.memory.values import MemoryRecord


def with_priors(records: Sequence[MemoryRecord], query: str) -> list[MemoryRecord]:
    """``records`` (the service's answer, best first) re-ordered by its scores with the local priors."""
    if len(records) < 2 or any(r.score is None for r in records):
        return list(records)
    scores = np.array([float(r.score or 0.0) for r in records], dtype=np.float64)
    if asks_when(query):
        dated = np.array([says_when(r.text) for r in records], dtype=np.bool_)
        scores = scores + TIME_PRIOR * scores * dated
    scores = scores * recency([r.when for r in records])
    order = np.argsort(-scores, kind="stable")
    return [records[i] for i in order.tolist()]
