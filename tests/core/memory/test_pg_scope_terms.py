"""The keyword side of a kept PostgreSQL scope (``core.memory.pg_scope_terms``), without a database: a
scope changed row by row scores exactly as one built from its final rows, and a bad term row is refused."""

from __future__ import annotations

import random

import numpy as np
import pytest

from core.memory.pg_scope_terms import ScopeTerms, TermRow
from core.memory.scope_rows import ScopeRows

LEXEMES = ["bill", "refund", "router", "invoic", "wifi", "deliveri", "fenc", "paint"]


def term_row(rid: int, rng: random.Random) -> TermRow:
    lexemes = sorted(rng.sample(LEXEMES, rng.randint(1, 4)), key=str.encode)
    return (rid, rng.randint(len(lexemes), 12), lexemes, [rng.randint(1, 3) for _ in lexemes])


def scope_of(rids: list[int]) -> ScopeRows:
    """ScopeRows holding ``rids`` (only their rids matter to the scores)."""
    rows = [(rid, f"m{rid}", "2026-01-05T09:00:00+00:00", np.ones(4, "<f4").tobytes()) for rid in rids]
    return ScopeRows.read(rows, 4)


def test_a_scope_changed_row_by_row_scores_as_one_built_from_its_rows() -> None:
    rng = random.Random(7)
    held: dict[int, TermRow] = {rid: term_row(rid, rng) for rid in range(1, 41)}
    terms = ScopeTerms.of(list(held.values()))
    next_rid = 41
    for _ in range(200):
        step = rng.random()
        if step < 0.4 and held:  # a row leaves
            gone = rng.choice(sorted(held))
            del held[gone]
            terms.remove([gone])
        elif step < 0.7 and held:  # a row held is read again, changed (its rid added without a remove)
            again = rng.choice(sorted(held))
            held[again] = term_row(again, rng)
            terms.add([held[again]])
        else:  # new rows
            fresh = [term_row(next_rid + i, rng) for i in range(rng.randint(1, 3))]
            next_rid += len(fresh)
            held.update((int(r[0]), r) for r in fresh)
            terms.add(fresh)
        rebuilt = ScopeTerms.of(list(held.values()))
        assert len(terms) == len(rebuilt) == len(held)
        assert terms.total_words == rebuilt.total_words == sum(int(r[1]) for r in held.values())
        rows = scope_of(sorted(held))
        query = rng.sample(LEXEMES, rng.randint(1, 3))
        assert np.array_equal(terms.scores(rows, query), rebuilt.scores(rows, query))


def test_a_term_row_whose_counts_do_not_match_its_lexemes_is_refused() -> None:
    with pytest.raises(ValueError, match="shorter"):
        ScopeTerms.of([(1, 3, ["bill", "refund"], [1])])


def test_a_scope_scores_only_its_rows_holding_a_lexeme_of_the_query() -> None:
    terms = ScopeTerms.of(
        [(1, 2, ["bill", "refund"], [1, 1]), (2, 2, ["router"], [2]), (3, 1, ["wifi"], [1])]
    )
    scores = terms.scores(scope_of([1, 2, 3]), ["refund", "wifi", "nowher"])
    assert scores[0] > 0 and scores[1] == 0 and scores[2] > 0
    assert not terms.scores(scope_of([1, 2, 3]), ["nowher"]).any()
