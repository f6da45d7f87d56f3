"""``core.memory.lexemes``: what both memory indexes file a text under, in the text's own language."""

from __future__ import annotations

import re
import threading
from pathlib import Path

import pytest
import Stemmer
from hypothesis import given, settings
from hypothesis import strategies as st

from core.memory import lexemes
from core.memory.vectors import SQLiteVectorStore

# (what a customer said, what they asked later): the two meet only through the stemmer of their language
JOINED_BY_THEIR_LANGUAGE = [
    pytest.param("de", "Zwei Rechnungen vom Mai wurden doppelt abgebucht", "Wo ist die Rechnung?", id="de"),
    pytest.param("fr", "Les commandes sont arrivées abîmées", "Quand arrive-t-il ?", id="fr"),
    pytest.param("es", "Me cobraron dos veces en mayo", "¿Por qué el cobro doble?", id="es"),
    pytest.param("it", "Le bollette di aprile sono sbagliate", "Perché questa bolletta è alta?", id="it"),
    pytest.param("nl", "Twee bestellingen zijn niet geleverd", "Waar blijft mijn bestelling?", id="nl"),
    pytest.param("sv", "Två fakturor har inte kommit fram", "Var är min faktura?", id="sv"),
    pytest.param("ru", "Счета за май неправильные", "Где мой счёт?", id="ru"),
]


def english_only(text: str) -> set[str]:
    return set(Stemmer.Stemmer("english").stemWords(lexemes.words(text)))


@pytest.mark.parametrize(("code", "said", "asked"), JOINED_BY_THEIR_LANGUAGE)
def test_a_memory_and_a_later_question_meet_by_their_languages_stems(
    code: str, said: str, asked: str
) -> None:
    assert lexemes.language(said) == code
    assert set(lexemes.of_text(said)) & set(lexemes.of_query(asked.split()))
    assert not (english_only(said) & english_only(asked))  # English stemming alone would not join them


def test_english_keeps_its_stemming() -> None:
    assert lexemes.of_text("She painted the fences") == ["she", "paint", "the", "fenc"]
    assert set(lexemes.of_query(["painting", "fence"])) >= {"paint", "fenc"}


def test_a_query_looks_for_its_own_languages_stems_and_englishs() -> None:
    found = lexemes.of_query(["Rechnungen", "abgebucht", "worden"])
    assert "rechnung" in found  # German
    assert "rechnungen" in found  # English leaves the word whole: a memory taken as English is found too
    assert lexemes.of_query([]) == [] and lexemes.of_query(["?!"]) == []


def test_a_text_too_short_to_tell_is_taken_as_english() -> None:
    for text in ("ok", "Bye!", ";)", "order 12345", ""):
        assert lexemes.language(text) == "en", text


def test_short_english_lines_the_model_takes_for_another_language_are_english() -> None:
    # LoCoMo turns the model gives to Danish, Irish, Estonian, Serbian or Indonesian, at 0.09-0.21: of the
    # 2,760 turns of the five conversations in shared/ no turn is taken as another language than English
    for text in (
        "Jon: Bye!",
        "Gina: ;)",
        "Nate: See ya!",
        "Joanna: Totally! Bye Nate!",
        "Ah ha ha, JUST DOING IT!",
    ):
        assert lexemes.language(text) == "en", text


def test_accents_are_folded_on_latin_letters_only() -> None:
    assert lexemes.of_text("I had a café crème") == lexemes.of_text("I had a cafe creme")
    assert lexemes.of_text("I had a cafe creme")[-2:] == ["cafe", "creme"]
    assert lexemes.fold("naïve") == "naive" and lexemes.fold("ñandú") == "nandu"
    assert lexemes.fold("हिन्दी") == "हिन्दी"  # Devanagari vowel signs are letters' parts, not accents
    assert lexemes.fold("καλά") == "καλά"


def test_words_keep_their_combining_marks_and_split_at_punctuation() -> None:
    assert lexemes.words("हिन्दी भाषा") == ["हिन्दी", "भाषा"]
    assert lexemes.words("x_y café 3.5 a@b.com O'Brien") == [
        "x",
        "y",
        "café",
        "3",
        "5",
        "a",
        "b",
        "com",
        "o",
        "brien",
    ]


def test_stemmers_are_per_thread_and_agree() -> None:
    text = "Zwei Rechnungen vom Mai wurden doppelt abgebucht, les colis sont arrivés"
    expected = lexemes.of_text(text)
    seen: list[list[str]] = []

    def work() -> None:
        seen.extend(lexemes.of_text(text) for _ in range(200))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(seen) == 800 and all(found == expected for found in seen)


_LEXEME = re.compile(r"\S+")


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_any_text_gives_lexemes_both_indexes_can_store(text: str) -> None:
    found = lexemes.of_text(text)
    assert len(found) == len(lexemes.words(text))
    for lexeme in found:  # one token each: no space, no quote, no FTS5 or tsquery syntax
        assert lexeme and _LEXEME.fullmatch(lexeme) and lexeme == lexeme.lower()
        assert not set(lexeme) & set("'\"*:()&|!<>-^+")
    assert lexemes.of_text(text) == found  # the same every time: a re-index gives the same lexemes


def test_an_index_reads_the_language_model_when_it_opens(tmp_path: Path) -> None:
    lexemes._identifier.cache_clear()
    store = SQLiteVectorStore(tmp_path / "v.sqlite3", collection_name="m", embedding_model_dims=4)
    try:  # no customer's first write or recall waits for it
        assert lexemes._identifier.cache_info().currsize == 1
    finally:
        store.close()


def test_a_word_too_long_in_one_language_only_is_left_out_there_alone() -> None:
    # 2,049 bytes: German stems it to 2,047 (a lexeme PostgreSQL takes), English to 2,048 (none)
    word = "a" * 2046 + "ens"
    german = lexemes.stems([word], "de")[0]
    assert len(german.encode()) == lexemes.MAX_LEXEME_BYTES < len(lexemes.stems([word], "en")[0].encode())
    assert lexemes.of_query(lexemes.Keywords([word, "rechnung"], "de")) == [german, "rechnung"]
