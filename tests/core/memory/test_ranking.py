"""Recall ranking (``core.memory.ranking``): query terms, conversations, neighbour smoothing, fusion."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from stop_words import get_stop_words

from core.memory import lexemes, ranking
from core.memory.ranking import (
    CONVERSATION_GAP,
    conversations,
    keyword_terms,
    rank,
    reciprocal_rank_fusion,
    smooth,
)

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def minutes(*offsets: float) -> list[datetime | None]:
    return [T0 + timedelta(minutes=m) for m in offsets]


def arr(*values: float) -> np.ndarray:
    return np.array(values, dtype=np.float32)


def test_keyword_terms_drop_stop_words_and_repeats() -> None:
    assert keyword_terms("When did Caroline go to the LGBTQ support group?") == [
        "caroline",
        "go",
        "lgbtq",
        "support",
        "group",
    ]
    assert keyword_terms("Why doesn't the router work? The ROUTER!") == ["router", "work"]
    # nothing but stop words: search for them rather than for nothing
    assert keyword_terms("what is it?") == ["what", "is", "it"]
    assert keyword_terms("   ") == []


def test_keyword_terms_drop_the_stop_words_of_the_messages_language_and_carry_it() -> None:
    spanish = keyword_terms("¿Pueden revisar pedido otra vez?")
    assert spanish == ["revisar", "pedido"] and spanish.language == "es"
    # what is left is too short to tell Spanish: the language told from the whole message stems it
    assert lexemes.language("revisar pedido") != "es"
    assert "ped" in lexemes.of_query(spanish) and spanish.languages == ("es",)  # sure: no other guessed
    assert lexemes.languages("revisar pedido")[0] == "en"  # the terms alone: unsure, several looked for
    german = keyword_terms("Was ist eigentlich mit der Rechnung passiert?")
    assert german == ["eigentlich", "rechnung", "passiert"] and german.language == "de"
    assert keyword_terms("When did Caroline go to the LGBTQ support group?").language == "en"


@pytest.mark.parametrize(
    ("query", "language", "word"),
    [
        ("¿Qué pasa con mi cuenta?", "es", "cuenta"),
        ("J'ai oublié mon mot de passe", "fr", "mot"),
        ("Où en est mon avoir ?", "fr", "avoir"),
        ("Perché è doppio anche questo mese?", "it", "doppio"),
        ("Где моё имя?", "ru", "имя"),
        ("O modem continua desligado?", "pt", "desligado"),
    ],
)
def test_support_words_are_kept_though_the_general_list_drops_them(
    query: str, language: str, word: str
) -> None:
    assert word in get_stop_words(lexemes.STEMMERS[language])  # the general list would drop it
    terms = keyword_terms(query)
    assert terms.language == language and word in terms
    assert word not in lexemes.stop_words(language)
    assert not set(terms) & lexemes.stop_words(language)  # the rest of the list still applies


def test_a_short_message_is_looked_for_in_each_language_it_may_be_in() -> None:
    pedidos = keyword_terms("pedidos?")  # Spanish 0.23, Portuguese 0.20 to the model: unsure
    assert pedidos.language == "en" and {"es", "pt"} <= set(pedidos.languages)
    assert "ped" in lexemes.of_query(pedidos)  # the Spanish stem a Spanish memory is filed under
    assert {"sr", "ru"} <= set(keyword_terms("Счета?").languages)
    # a longer message is one language: nothing else is looked for
    assert keyword_terms("When did Caroline go to the LGBTQ support group?").languages == ("en",)
    assert keyword_terms("Was ist eigentlich mit der Rechnung passiert?").languages == ("de",)


def test_conversations_split_on_a_gap_and_on_a_missing_time() -> None:
    gap = CONVERSATION_GAP.total_seconds() / 60
    written = [*minutes(0, 5, 5 + gap + 1, 5 + gap + 2), None, *minutes(5 + gap + 3)]
    assert conversations(written).tolist() == [0, 0, 1, 1, 2, 3]
    assert conversations([]).tolist() == []


def test_smooth_lends_neighbours_a_share_within_a_conversation_only() -> None:
    conversation = np.array([0, 0, 0, 1, 1], dtype=np.int64)
    out = smooth(arr(0, 1, 0, 0, 0), conversation, weights=(0.3, 0.1))
    assert out.tolist() == pytest.approx([0.3, 1.0, 0.3, 0.0, 0.0])
    out = smooth(arr(1, 0, 0, 0, 0), np.zeros(5, dtype=np.int64), weights=(0.3, 0.1))
    assert out.tolist() == pytest.approx([1.0, 0.3, 0.1, 0.0, 0.0])
    assert smooth(arr(2.0), np.zeros(1, dtype=np.int64)).tolist() == [2.0]


def test_reciprocal_rank_fusion_adds_up_ranks() -> None:
    fused = reciprocal_rank_fusion([[1, 2], [2, 3]], k=60)
    assert fused[2] == pytest.approx(1 / 62 + 1 / 61)
    assert fused[1] == pytest.approx(1 / 61) and fused[3] == pytest.approx(1 / 62)
    assert max(fused, key=lambda i: fused[i]) == 2


def test_an_exact_keyword_hit_and_a_paraphrase_both_rank_above_the_rest() -> None:
    # 0: the exact keyword hit (an order number: no meaning for the embedder); 1: the paraphrase
    # (no word in common, closest in meaning); 2-5: neither
    dense = arr(0.12, 0.71, 0.35, 0.30, 0.28, 0.33)
    keyword = arr(7.5, 0.0, 0.0, 0.0, 0.0, 0.0)
    written = minutes(0, 120, 240, 360, 480, 600)  # six separate conversations: no smoothing
    top = [i for i, _ in rank(dense, keyword, written, limit=6)]
    assert set(top[:2]) == {0, 1}
    # each signal alone misses one of them: the keyword hit is the least similar, the paraphrase has no word
    assert dense[0] == dense.min() and keyword[1] == 0


def test_a_neighbour_of_a_strong_match_rises_in_the_same_conversation_only() -> None:
    # 1 matches strongly; 2 answers it ("yes, that one"), 4 is as weak as 2 but in another conversation
    dense = arr(0.20, 0.80, 0.22, 0.23, 0.22)
    keyword = arr(0.0, 6.0, 0.0, 0.0, 0.0)
    written = minutes(0, 1, 2, 300, 301)
    order = [i for i, _ in rank(dense, keyword, written, limit=5)]
    assert order[0] == 1
    assert order.index(2) < order.index(4) and order.index(0) < order.index(4)


def test_rank_honours_the_limit_and_leaves_out_what_matches_nothing() -> None:
    dense = arr(0.5, 0.4, 0.01, 0.3)
    keyword = arr(0.0, 0.0, 0.0, 0.0)
    written = minutes(0, 120, 240, 360)
    assert [i for i, _ in rank(dense, keyword, written, limit=2)] == [0, 1]
    everything = [i for i, _ in rank(dense, keyword, written, limit=10)]
    assert 2 not in everything  # cosine under the floor, no keyword match
    assert ranking.MIN_DENSE > 0.01
    assert rank(arr(), arr(), [], limit=3) == []
    assert rank(dense, keyword, written, limit=0) == []


def test_ties_go_to_the_newer_memory() -> None:
    dense = arr(0.5, 0.5)
    keyword = arr(0.0, 0.0)
    assert [i for i, _ in rank(dense, keyword, minutes(0, 300), limit=2)] == [1, 0]


def test_between_near_equal_matches_the_newer_wins_and_a_much_better_older_one_still_does() -> None:
    # 0: said months ago, a hair closer on both signals than 1, said today (the customer's current word)
    months = 120 * 24 * 60
    dense = arr(0.61, 0.60, 0.20, 0.21)
    keyword = arr(3.1, 3.0, 0.0, 0.0)
    written = minutes(0, months, months + 300, months + 600)
    assert [i for i, _ in rank(dense, keyword, written, limit=2)] == [1, 0]
    # without the recency prior the older one ranked first: the prior is what decides
    assert ranking.recency(written)[0] < ranking.recency(written)[1]
    assert [i for i, _ in rank(dense, keyword, minutes(0, 300, 600, 900), limit=2)] == [0, 1]
    # a much better older match still wins over a weak new one
    dense = arr(0.80, 0.30, 0.35, 0.34)
    keyword = arr(6.0, 0.0, 0.0, 0.0)
    assert rank(dense, keyword, written, limit=1)[0][0] == 0


def test_recency_is_bounded_and_counts_from_the_newest_memory() -> None:
    factors = ranking.recency([*minutes(0, 60 * 24 * 30), None])
    assert factors[1] == 1.0  # the newest
    assert factors[0] == pytest.approx(1 - ranking.RECENCY_WEIGHT / 2)  # one half-life older
    assert factors[2] == pytest.approx(1 - ranking.RECENCY_WEIGHT)  # no time: the floor
    assert ranking.recency([]).tolist() == []


def test_a_memory_in_the_best_match_s_conversation_is_lifted_over_an_equal_one_elsewhere() -> None:
    # 0 matches; 4 is in its conversation but beyond the neighbours; 6 (newer) is as weak, elsewhere
    dense = arr(0.9, 0.0, 0.0, 0.0, 0.3, 0.0, 0.3)
    keyword = arr(5.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
    written = minutes(0, 1, 2, 3, 4, 300, 301)
    order = [i for i, _ in rank(dense, keyword, written, limit=7)]
    assert order[0] == 0 and order.index(4) < order.index(6)
    fused = np.array([0.5, 0.0, 0.1, 0.2])
    lifted = ranking.lifted(fused, np.array([0, 0, 1, 1], dtype=np.int64), lift=0.5)
    assert lifted.tolist() == pytest.approx([0.75, 0.0, 0.2, 0.3])  # no match stays no match


def test_a_change_of_channel_starts_a_conversation_when_the_sources_are_known() -> None:
    written = minutes(0, 1, 2, 3)
    stamps = np.array([w.timestamp() for w in written if w is not None])
    sources = np.array([ranking.source_code(c) for c in ("sms", "sms", "email", None)], dtype=np.int64)
    assert conversations(ranking.WrittenTimes(written, stamps, sources)).tolist() == [0, 0, 1, 2]
    assert conversations(ranking.WrittenTimes(written, stamps)).tolist() == [0, 0, 0, 0]
    kept = ranking.WrittenTimes(written, stamps, sources).subset([1, 2])
    assert list(kept) == written[1:3] and kept.sources is not None and conversations(kept).tolist() == [0, 1]
    with pytest.raises(ValueError, match="differ in length"):
        ranking.WrittenTimes(written, stamps, sources[:2])


@pytest.mark.parametrize("seed", range(6))
def test_the_best_top_come_first_exactly_as_in_the_whole_order(seed: int) -> None:
    """``ranked(top=k)`` sorts only the best: what it returns is the whole order's start, ties included
    (duplicate texts give equal cosines; equal scores keep the newer first)."""
    rng = np.random.default_rng(seed)
    count = 400
    dense = rng.choice(np.linspace(0.0, 0.6, 25), count).astype(np.float32)  # many exact ties
    keyword = np.where(rng.random(count) < 0.1, rng.choice([1.0, 2.5, 4.0], count), 0.0).astype(np.float32)
    written = minutes(*np.sort(rng.integers(0, 20_000, count)).tolist())
    dated = rng.random(count) < 0.2
    whole, whole_scores = ranking.ranked(dense, keyword, written, dated=dated, asks_when=True)
    assert len(whole) > 60
    for top in (0, 1, 7, 30, 60, len(whole), len(whole) + 5):
        best, scores = ranking.ranked(dense, keyword, written, dated=dated, asks_when=True, top=top)
        assert len(best) >= min(top, len(whole))
        assert best.tolist() == whole[: len(best)].tolist()
        assert scores.tolist() == whole_scores[: len(best)].tolist()
        if len(best) > top:  # only ties with the last of the top are added
            assert set(scores[top:].tolist()) == {float(scores[top - 1])}
