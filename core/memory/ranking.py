"""How the local backend ranks a customer's memories for a message: hybrid, conversation-aware, per customer.

Given, for every memory of ONE customer in the order they were written, its cosine to the message
(dense, the local MiniLM embedder) and its BM25 score for the message's words (FTS5, 0 when no word
matches):

1. **Query normalisation** (:func:`keyword_terms`): the keyword side searches the message's words,
   lower-cased, without English stop words ("what", "did", "the", ...) and those of the message's own
   language when it is another ("est", "die", ``core.memory.lexemes.stop_words``): they match nearly
   every memory, so they only add noise to BM25 (and cost posting-list reads). Stemming is the indexes'
   (``core.memory.lexemes``: in each text's language), so "painted" finds "painting" and "Rechnungen"
   finds "Rechnung".
2. **Conversations** (:func:`conversations`): consecutive memories written less than
   :data:`CONVERSATION_GAP` apart, on the same channel, belong to one conversation (a customer who moves
   from SMS to email starts another exchange).
3. **Neighbour smoothing** (:func:`smooth`): within a conversation, each signal of a memory gets
   :data:`NEIGHBOUR_WEIGHTS` times the same signal of the memories one and two places away. A customer's
   message often means something only next to the one before or after it (an answer to a question,
   "yes, that one"), so a memory beside a strong match is likely part of the same exchange.
4. **Fusion** (:func:`reciprocal_rank_fusion`): the smoothed dense and keyword rankings are fused by
   reciprocal rank (k = 60, Cormack, Clarke and Buettcher, SIGIR 2009): an exact keyword hit and a
   paraphrase both rank high, without calibrating BM25 against cosine.
5. **Time prior**: for a message that asks when (``time_words.asks_when``: "when did ...", "how long
   ago", "what year"), a memory whose text says when (``time_words.says_when``, flagged when stored) gains
   :data:`TIME_PRIOR` of its fused score: the line that answers "when" is the one with the date or the
   "last week" in it, which often shares few words with the question.
6. **Conversation lift** (:func:`lifted`): every candidate gains :data:`CONVERSATION_LIFT` times the best
   fused score of its conversation: the answer often lies in the exchange where the question's subject
   came up, a few turns from the line that matched best.
7. **Recency** (:func:`recency`): a score is multiplied by a factor that falls from 1 (the customer's
   newest memory) towards ``1 - RECENCY_WEIGHT`` with a half-life of :data:`RECENCY_HALF_LIFE`: between
   memories that match about equally the newer one ranks first (the customer's latest statement is the
   current one), while a clearly better older match still wins.
8. **Floor**: a memory with no (smoothed) keyword match whose smoothed cosine is under
   :data:`MIN_DENSE` (Mem0's own default search threshold) is left out.

The weights were chosen on two LoCoMo conversations (26 and 30) and the measure is reported on all
five in ``shared/`` (``bench/locomo.py``, ``docs/locomo.md``). Everything here is per customer: its cost
follows that customer's memory count, never the size of the store.
"""

from __future__ import annotations

import re
import unicodedata
import zlib
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta

import numpy as np
from numpy.typing import NDArray

from core.memory import lexemes

RRF_K = 60.0
NEIGHBOUR_WEIGHTS = (0.3, 0.1)  # the memories 1 and 2 places away, within a conversation
CONVERSATION_GAP = timedelta(hours=1)
CONVERSATION_LIFT = 0.3  # the share of its conversation's best fused score a candidate gains
TIME_PRIOR = 0.5  # the share of its fused score a memory that says when gains, for a question about time
RECENCY_WEIGHT = 0.05  # the most a memory's age takes off its score (a share)
RECENCY_HALF_LIFE = timedelta(days=30)
MIN_DENSE = 0.1
MAX_QUERY_TERMS = 64

_TERM = re.compile(r"\w+", re.UNICODE)

# English stop words (the classic list), split the way the FTS5 tokenizer splits ("don't" -> don, t).
_STOP_WORDS = """
    a about above after again against all am an and any are aren as at be because been before being below
    between both but by can cannot could couldn d did didn do does doesn doing don down during each few for
    from further had hadn has hasn have haven having he her here hers herself him himself his how i if in
    into is isn it its itself just ll m me more most mustn my myself no nor not now of off on once only or
    other ought our ours ourselves out over own re s same shan she should shouldn so some such t than that
    the their theirs them themselves then there these they this those through to too under until up ve very
    was wasn we were weren what when where which while who whom why will with won would wouldn you your
    yours yourself yourselves
"""
STOP_WORDS = frozenset(_STOP_WORDS.split())


def keyword_terms(query: str) -> lexemes.Keywords:
    """The words a keyword search looks for: lower-cased, de-duplicated, the stop words of English and of
    the message's language dropped, with that language (told from the whole message).

    A message made of stop words only keeps them (there is nothing else to search for).
    """
    query = unicodedata.normalize("NFC", query)
    codes = lexemes.languages(query)
    terms = list(dict.fromkeys(t.lower() for t in _TERM.findall(query)))
    dropped = lexemes.stop_words(codes[0])
    kept = [t for t in terms if t not in STOP_WORDS and t not in dropped]
    return lexemes.Keywords((kept or terms)[:MAX_QUERY_TERMS], codes)


def source_code(channel: object) -> int:
    """A memory's source channel as a number (-1 when unknown), for :attr:`WrittenTimes.sources`."""
    return zlib.crc32(channel.encode()) if isinstance(channel, str) and channel else -1


class WrittenTimes(list[datetime | None]):
    """Written times that carry their POSIX timestamps (``stamps``, ``-inf`` where a time is missing), so
    that :func:`conversations` needs no Python loop over them, and, when the store read them, the channel
    each memory came from (``sources``, :func:`source_code`). Made by a store that reads them once and
    keeps them (``core.memory.sqlite_scopes``); neither the list nor the arrays are changed afterwards.
    """

    stamps: NDArray[np.float64]
    sources: NDArray[np.int64] | None

    def __init__(
        self,
        written: Iterable[datetime | None],
        stamps: NDArray[np.float64],
        sources: NDArray[np.int64] | None = None,
    ) -> None:
        super().__init__(written)
        if len(stamps) != len(self) or (sources is not None and len(sources) != len(self)):
            raise ValueError("written times and their timestamps or sources differ in length")
        self.stamps = stamps
        self.sources = sources

    def subset(self, keep: Sequence[int]) -> WrittenTimes:
        """These times (and sources) at the positions ``keep``, in that order."""
        at = np.asarray(keep, dtype=np.int64)
        return WrittenTimes(
            [self[i] for i in keep], self.stamps[at], None if self.sources is None else self.sources[at]
        )


# Timestamps of two datetimes differ from the exact difference by far less than this (a few float64 ulps:
# under 1e-4 s up to the year 9999); pairs this close to the gap are compared as datetimes.
_STAMP_TOLERANCE = 1e-3


def conversations(written: Sequence[datetime | None], gap: timedelta = CONVERSATION_GAP) -> NDArray[np.int64]:
    """A conversation number per memory (in written order): a new one starts after a gap over ``gap``.

    A memory without a time starts a conversation of its own and ends it. :class:`WrittenTimes` are
    split with array operations, the same way (a pair of times within a millisecond of the gap is
    compared exactly, as datetimes), and also where the channel changes when they carry their sources.
    """
    if isinstance(written, WrittenTimes) and len(written) > 1:
        numbers = _conversations_of_stamps(written, gap)
        if written.sources is not None:
            changed = written.sources[1:] != written.sources[:-1]
            numbers[1:] += np.cumsum(changed, dtype=np.int64)
        return numbers
    numbers = np.zeros(len(written), dtype=np.int64)
    current = 0
    for i in range(1, len(written)):
        before, now = written[i - 1], written[i]
        if before is None or now is None or abs(now - before) > gap:
            current += 1
        numbers[i] = current
    return numbers


def _conversations_of_stamps(written: WrittenTimes, gap: timedelta) -> NDArray[np.int64]:
    stamps = written.stamps
    missing = np.isneginf(stamps)
    limit = gap.total_seconds()
    with np.errstate(invalid="ignore"):  # -inf - -inf: both missing, decided by ``missing``
        apart = np.abs(stamps[1:] - stamps[:-1])
    starts = missing[1:] | missing[:-1] | (apart > limit)
    close = np.flatnonzero(~missing[1:] & ~missing[:-1] & (np.abs(apart - limit) <= _STAMP_TOLERANCE))
    for i in close.tolist():
        before, now = written[i], written[i + 1]
        if before is not None and now is not None:
            starts[i] = abs(now - before) > gap
    numbers = np.zeros(len(written), dtype=np.int64)
    numbers[1:] = np.cumsum(starts, dtype=np.int64)
    return numbers


def smooth(
    values: NDArray[np.float32],
    conversation: NDArray[np.int64],
    weights: Sequence[float] = NEIGHBOUR_WEIGHTS,
) -> NDArray[np.float32]:
    """Each value plus ``weights[d - 1]`` times the values ``d`` places before and after it, for
    d = 1, 2, ..., counting only neighbours in the same conversation."""
    out = values.astype(np.float32, copy=True)
    for distance, weight in enumerate(weights, start=1):
        if distance >= len(values) or weight == 0:
            break
        same = conversation[distance:] == conversation[:-distance]
        out[distance:] += np.where(same, weight * values[:-distance], 0.0).astype(np.float32)
        out[:-distance] += np.where(same, weight * values[distance:], 0.0).astype(np.float32)
    return out


def lifted(
    fused: NDArray[np.float64], conversation: NDArray[np.int64], lift: float = CONVERSATION_LIFT
) -> NDArray[np.float64]:
    """Each candidate's score (> 0) plus ``lift`` times the best score of its conversation."""
    if len(fused) == 0 or lift == 0:
        return fused
    best = np.zeros(int(conversation.max()) + 1, dtype=np.float64)
    np.maximum.at(best, conversation, fused)
    return np.where(fused > 0, fused + lift * best[conversation], 0.0)


def _stamps(written: Sequence[datetime | None]) -> NDArray[np.float64]:
    if isinstance(written, WrittenTimes):
        return written.stamps
    return np.array([w.timestamp() if w is not None else -np.inf for w in written], dtype=np.float64)


def recency(
    written: Sequence[datetime | None],
    weight: float = RECENCY_WEIGHT,
    half_life: timedelta = RECENCY_HALF_LIFE,
) -> NDArray[np.float64]:
    """A factor per memory: ``1 - weight * (1 - 2 ** (-age / half_life))``, where ``age`` is how much
    older it is than the customer's newest memory (1 for the newest; ``1 - weight`` without a time)."""
    stamps = _stamps(written)
    known = ~np.isneginf(stamps)
    if not known.any() or weight == 0:
        return np.where(known, 1.0, 1.0 - weight)
    age = np.where(known, stamps[known].max() - np.where(known, stamps, 0.0), np.inf)
    return 1.0 - weight * (1.0 - np.exp2(-age / half_life.total_seconds()))


def reciprocal_rank_fusion(rankings: Sequence[Sequence[int]], k: float = RRF_K) -> dict[int, float]:
    """RRF: each item scores the sum over rankings of 1 / (k + its 1-based rank there)."""
    fused: dict[int, float] = {}
    for ranking in rankings:
        for position, item in enumerate(ranking, start=1):
            fused[item] = fused.get(item, 0.0) + 1.0 / (k + position)
    return fused


def ranked(
    dense: NDArray[np.float32],
    keyword: NDArray[np.float32],
    written: Sequence[datetime | None],
    *,
    dated: NDArray[np.bool_] | None = None,
    asks_when: bool = False,
    top: int | None = None,
) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    """Every memory that passes the floor, best first (ties: the newer first): their indexes and their
    fused scores, as arrays. With ``top``, only the first ``top`` of that order (at least; memories tied
    with the last are kept), exactly as they come first in the whole order: only they are sorted.

    ``dense``, ``keyword`` and ``written`` are aligned, one entry per memory of one customer in the order
    the memories were written. Array operations only (no Python loop over the memories but
    :func:`conversations`): the same fusion as :func:`reciprocal_rank_fusion` (the same floats summed in
    the same order), then, for a question that ``asks_when``, the memories ``dated`` (their text says
    when) gain :data:`TIME_PRIOR` of it, then :func:`lifted` by the conversation's best and weighted by
    :func:`recency`.
    """
    count = len(dense)
    if dated is not None and len(dated) != count:
        raise ValueError("dated and the signals differ in length")
    if count == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64)
    conversation = conversations(written)
    dense_s = smooth(np.asarray(dense, dtype=np.float32), conversation)
    keyword_s = smooth(np.asarray(keyword, dtype=np.float32), conversation)
    newest_first = np.arange(count, dtype=np.int64)[::-1]
    matched = keyword_s > 0
    # stable sorts over newest-first order: equal scores rank the newer memory first (the keyword side
    # sorts only the memories it matched, the few)
    by_dense = newest_first[np.argsort(-dense_s[newest_first], kind="stable")]
    dense_ranking = by_dense[((dense_s >= MIN_DENSE) | matched)[by_dense]]
    keyword_matched = np.flatnonzero(matched)[::-1]
    keyword_ranking = keyword_matched[np.argsort(-keyword_s[keyword_matched], kind="stable")]
    # reciprocal rank fusion: 0.0 + 1 / (k + dense rank), then + 1 / (k + keyword rank), in float64
    fused = np.zeros(count, dtype=np.float64)
    fused[dense_ranking] += 1.0 / (RRF_K + np.arange(1, len(dense_ranking) + 1, dtype=np.float64))
    fused[keyword_ranking] += 1.0 / (RRF_K + np.arange(1, len(keyword_ranking) + 1, dtype=np.float64))
    if asks_when and dated is not None:
        fused *= 1.0 + TIME_PRIOR * np.asarray(dated, dtype=np.float64)
    fused = lifted(fused, conversation) * recency(written)
    candidates = np.flatnonzero(fused > 0)
    scores = fused[candidates]
    if top is not None and 0 <= top < len(candidates):  # only the best: the top scores and their ties
        if top == 0:
            return candidates[:0], scores[:0]
        least = np.partition(scores, len(scores) - top)[len(scores) - top]
        best = scores >= least
        candidates, scores = candidates[best], scores[best]
    order = np.lexsort((-candidates, -scores))  # the higher score first, then the newer memory
    return candidates[order], scores[order]


def rank(
    dense: NDArray[np.float32],
    keyword: NDArray[np.float32],
    written: Sequence[datetime | None],
    *,
    limit: int,
) -> list[tuple[int, float]]:
    """The best ``limit`` memories as ``(index, fused score)``, best first (ties: the newer first).

    ``dense``, ``keyword`` and ``written`` are aligned, one entry per memory of one customer in the
    order the memories were written (:func:`ranked`, as a list).
    """
    if len(dense) == 0 or limit <= 0:
        return []
    indexes, scores = ranked(dense, keyword, written)
    return list(zip(indexes[:limit].tolist(), scores[:limit].tolist(), strict=True))
