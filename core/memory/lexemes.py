"""What both memory indexes file a text under, and what a query looks for: its words stemmed in its language.

A customer who wrote "Meine Rechnungen vom Mai sind falsch" and later asks "Wo ist die Rechnung?" should
be found by the keyword side, as "painted" finds "painting" in English. So both indexes (SQLite's FTS5
and PostgreSQL's ``tsvector``) store lexemes made here, in Python, one way for both:

- **Words**: runs of letters and digits of the NFC text (an email, a URL or a decimal is several words),
  lower-cased.
- **Language** (:func:`language`): ``py3langid`` (the langid.py model, in its wheel) restricted to the
  languages Snowball stems (:data:`STEMMERS`). Below :data:`MIN_CONFIDENCE` (a greeting, "ok thanks",
  an order number) the text is taken as :data:`DEFAULT_LANGUAGE`, English: of the 2,760 turns of the five
  LoCoMo conversations, all English, the 20 the model is unsure of ("Bye!", ";)") are taken as English
  and no turn as another language.
- **Stems**: the Snowball stemmer of that language (``PyStemmer``): "Rechnungen" and "Rechnung" meet at
  "rechnung", "factures" and "facture" at "factur", "painted" and "painting" at "paint".
- **Limits**: a lexeme over 2,047 bytes is no keyword (PostgreSQL's limit; a base64 blob), and a text is
  filed until its distinct lexemes reach 512 KiB (a tsvector holds 1 MB), on both indexes alike.
- **Accents** are folded after stemming (the stemmers read them), on Latin letters only, as FTS5's
  ``remove_diacritics`` and ``unaccent`` did: "cafe" finds "café" (stemmed in one language).

A memory is filed under the stems of its own language (:func:`of_text`, repeats kept: BM25 counts them).
A query looks for the stems of each of its words in its own language, in the others the model finds
likely (:func:`languages`) and in English (:func:`of_query`): a short message is often too short to tell
its language ("pedidos?" is Spanish or Portuguese), and English is the default a memory falls back to.
The language of a message is told from the whole of it, by ``core.memory.ranking.keyword_terms``,
which drops its stop words (:func:`stop_words`) and hands the terms left on with it (:class:`Keywords`):
"revisar pedido", what is left of "¿Pueden revisar pedido otra vez?", is too short to tell Spanish.
Everything is deterministic for a given text, so a re-index gives the same lexemes.
"""

from __future__ import annotations

import re
import threading
import unicodedata
from collections.abc import Iterable, Sequence
from functools import cache

import Stemmer
from py3langid import langid
from stop_words import StopWordError, get_stop_words

MAX_QUERY_WORDS = 64
# PostgreSQL refuses a lexeme of 2,048 bytes or more (to_tsvector dropped such words): a longer "word" (a
# base64 blob, a key pasted in) is no keyword, in either index
MAX_LEXEME_BYTES = 2047
# the distinct lexemes of one text, in bytes, within which it is filed (its later words are not): well
# inside the 1 MB of one tsvector, and the same on SQLite, so BM25 stays equal (a pasted log, a long mail)
MAX_TEXT_LEXEME_BYTES = 512 * 1024
MAX_CANDIDATES = 3  # languages a query's stems are looked for in, besides English (:func:`languages`)
MIN_CANDIDATE = 0.1  # how likely the model must find a language for a query to look for its stems too
# a query the model is unsure of (a word or two: "faturas?" is Portuguese to it at 0.06) looks wider
MAX_UNSURE_CANDIDATES = 6
MIN_UNSURE_CANDIDATE = 0.03
MAX_QUERY_LEXEMES = (MAX_UNSURE_CANDIDATES + 1) * MAX_QUERY_WORDS
DEFAULT_LANGUAGE = "en"
MIN_CONFIDENCE = 0.5
# of the rules here: a change that files a text otherwise bumps it, and with it the SQLite file's upgrade
# (``sqlite_file._LEXEMES_FILED``); PostgreSQL's upgrade is named after it (``lexemes_<VERSION>``)
VERSION = 1

# ISO 639-1 code (py3langid's) -> Snowball algorithm (PyStemmer's): every language both know.
STEMMERS: dict[str, str] = {
    "ar": "arabic",
    "hy": "armenian",
    "eu": "basque",
    "ca": "catalan",
    "cs": "czech",
    "da": "danish",
    "nl": "dutch",
    "en": "english",
    "eo": "esperanto",
    "et": "estonian",
    "fi": "finnish",
    "fr": "french",
    "de": "german",
    "el": "greek",
    "hi": "hindi",
    "hu": "hungarian",
    "id": "indonesian",
    "ga": "irish",
    "it": "italian",
    "lt": "lithuanian",
    "ne": "nepali",
    "no": "norwegian",
    "fa": "persian",
    "pl": "polish",
    "pt": "portuguese",
    "ro": "romanian",
    "ru": "russian",
    "sr": "serbian",
    "es": "spanish",
    "sv": "swedish",
    "ta": "tamil",
    "tr": "turkish",
}


def _marks() -> str:
    """A character class of the combining marks of the Basic Multilingual Plane, as ranges."""
    ranges: list[tuple[int, int]] = []
    for point in range(0x0300, 0x10000):
        if unicodedata.category(chr(point)).startswith("M"):
            if ranges and ranges[-1][1] == point - 1:
                ranges[-1] = (ranges[-1][0], point)
            else:
                ranges.append((point, point))
    return "".join(f"\\u{a:04x}-\\u{b:04x}" for a, b in ranges)


# a word: a letter or digit, then letters, digits and combining marks (the vowel signs of Hindi, Tamil)
_WORD = re.compile(f"[^\\W_](?:[^\\W_]|[{_marks()}])*", re.UNICODE)
_LATIN_END = 0x024F  # Latin-1, Extended-A and -B
_lock = threading.Lock()
_local = threading.local()


def words(text: str) -> list[str]:
    """The words of ``text`` as both indexes cut them: runs of letters and digits (NFC), lower-cased."""
    return [w.lower() for w in _WORD.findall(unicodedata.normalize("NFC", text))]


@cache
def _identifier() -> langid.LanguageIdentifier:
    with _lock:
        identifier = langid.LanguageIdentifier.from_model_file(langid.MODEL_FILE, norm_probs=True)
        identifier.set_languages(sorted(set(STEMMERS) & set(identifier.nb_classes)))
        return identifier


def load() -> None:
    """Read the language model now (about 0.6 s, once per process): an index does when it opens, so that
    no customer's first write or recall waits for it."""
    _identifier()


def language(text: str) -> str:
    """The language of ``text`` among :data:`STEMMERS`; :data:`DEFAULT_LANGUAGE` when the model is unsure."""
    if not _WORD.search(text):
        return DEFAULT_LANGUAGE
    found, confidence = _identifier().classify(text)
    return str(found) if confidence >= MIN_CONFIDENCE and found in STEMMERS else DEFAULT_LANGUAGE


def languages(text: str) -> tuple[str, ...]:
    """The languages a query's stems are looked for in: :func:`language`'s, then the others the model
    finds at least :data:`MIN_CANDIDATE` likely among its :data:`MAX_CANDIDATES` first. A short message is
    too short to tell: "pedidos?" is Spanish or Portuguese to the model (0.23 and 0.20), "Счета?" Serbian
    or Russian (0.51 and 0.49), "bollette?" Hungarian, Danish or Italian; the customer's memory was filed
    in one of them. A longer message is one language (LoCoMo's questions: English, about 0.98).

    When the model is unsure (its first under :data:`MIN_CONFIDENCE`), the net is wider: its
    :data:`MAX_UNSURE_CANDIDATES` first at :data:`MIN_UNSURE_CANDIDATE` or more. A single word spreads
    the model thin: "faturas?" is Romanian 0.074, Italian 0.073, ... Portuguese 0.055 to it. Chosen on 80
    support nouns in eight languages (Portuguese, Swedish, Danish, Polish, Czech, Turkish, Romanian,
    Hungarian; none of ``bench/multilingual_recall.py``'s): the model is unsure of 48 of them, and the
    stem their own language gives is among the query's for 43 with the narrow net, 47 with this one (2.2
    distinct stems a word against 1.7; every language: 48, 3.0)."""
    if not _WORD.search(text):
        return (DEFAULT_LANGUAGE,)
    ranked = [(str(code), float(p)) for code, p in _identifier().rank(text) if code in STEMMERS]
    best, confidence = ranked[0] if ranked else (DEFAULT_LANGUAGE, 0.0)
    if confidence >= MIN_CONFIDENCE:
        first, top, floor = best, MAX_CANDIDATES, MIN_CANDIDATE
    else:
        first, top, floor = DEFAULT_LANGUAGE, MAX_UNSURE_CANDIDATES, MIN_UNSURE_CANDIDATE
    likely = [code for code, p in ranked[:top] if p >= floor]
    return tuple(dict.fromkeys((first, *likely)))


def _stemmer(code: str) -> Stemmer.Stemmer:
    """This thread's stemmer of ``code`` (a PyStemmer stemmer must not be shared between threads)."""
    stemmers: dict[str, Stemmer.Stemmer] | None = getattr(_local, "stemmers", None)
    if stemmers is None:
        stemmers = _local.stemmers = {}
    stemmer = stemmers.get(code)
    if stemmer is None:
        stemmer = stemmers[code] = Stemmer.Stemmer(STEMMERS[code])
    return stemmer


def fold(lexeme: str) -> str:
    """``lexeme`` without the accents of its Latin letters ("café" -> "cafe"; Greek and Devanagari kept)."""
    if lexeme.isascii():
        return lexeme
    kept: list[str] = []
    base = ""
    for char in unicodedata.normalize("NFKD", lexeme):
        if unicodedata.combining(char):
            if not base or ord(base) > _LATIN_END:
                kept.append(char)
            continue
        base = char
        kept.append(char)
    return unicodedata.normalize("NFC", "".join(kept)).lower()  # "ᴬ" unfolds to "A"


def stems(tokens: Sequence[str], code: str) -> list[str]:
    """``tokens`` (lower-case words) stemmed in the language ``code`` and folded, in order, one each."""
    stemmed = _stemmer(code).stemWords(list(tokens))
    return [fold(stem or token) for stem, token in zip(stemmed, tokens, strict=True)]


def _fits(lexeme: str) -> bool:
    return len(lexeme.encode()) <= MAX_LEXEME_BYTES


def _within_budget(found: list[str]) -> list[str]:
    """``found`` up to where its distinct lexemes reach :data:`MAX_TEXT_LEXEME_BYTES`."""
    if 4 * sum(map(len, found)) + len(found) <= MAX_TEXT_LEXEME_BYTES:  # any text of a usual size
        return found
    seen: set[str] = set()
    spent = 0
    for at, lexeme in enumerate(found):
        if lexeme not in seen:
            spent += len(lexeme.encode()) + 1
            if spent > MAX_TEXT_LEXEME_BYTES:
                return found[:at]
            seen.add(lexeme)
    return found


def of_text(text: str) -> list[str]:
    """The lexemes a memory's ``text`` is filed under: each word's stem in the text's language, in order
    (within :data:`MAX_LEXEME_BYTES` each and :data:`MAX_TEXT_LEXEME_BYTES` in all)."""
    tokens = words(text)
    return _within_budget([lex for lex in stems(tokens, language(text)) if _fits(lex)]) if tokens else []


def index_text(text: str) -> str:
    """:func:`of_text` as one space-separated string: what both indexes store for ``text``."""
    return " ".join(of_text(text))


# Words ``stop-words``' general lists drop that name what a support conversation is about: the account
# ("cuenta"), a credit note ("avoir"), the password ("mot de passe"), a name, the status ("état"), the last
# one, a double charge ("doppio"), the time, a value or total, a modem on or off ("desligado"). The lists
# are made for texts where such words carry no topic; here they are the topic, so they stay keywords.
# Left out: words more often part of an idiom than a topic ("de nuevo", "alla fine", "en lugar de", "au
# sujet de") or an auxiliary ("he estado", "è stato"): they would match every line that says them.
SUPPORT_WORDS: dict[str, frozenset[str]] = {
    code: frozenset(unicodedata.normalize("NFC", word) for word in listed.split())
    for code, listed in {
        "es": "cuenta tiempo trabajo valor último última últimos últimas ultimo total uso hoy ayer",
        "pt": "tempo trabalho valor último horas ligado desligado nome",
        "it": "lavoro ultimo doppio comprare persone nome",
        "fr": "avoir valeur début pièce essai état nom mot",
        "ru": "время времени жизнь процентов тысяч миллионов год года году день имя лет человек",
    }.items()
}


@cache
def stop_words(code: str) -> frozenset[str]:
    """The stop words of the language ``code`` (``stop-words``' list, less :data:`SUPPORT_WORDS`; none
    where it has none), for a query's keywords: "est" or "die" match nearly every line of a French or
    German customer and only add noise, as "what" and "the" do in English. None for English:
    ``core.memory.ranking``'s are English's."""
    if code == DEFAULT_LANGUAGE:
        return frozenset()
    try:
        listed = get_stop_words(STEMMERS[code])
    except StopWordError:
        return frozenset()
    kept = SUPPORT_WORDS.get(code, frozenset())
    return frozenset(
        word for word in (unicodedata.normalize("NFC", w).lower() for w in listed) if word not in kept
    )


class Keywords(list[str]):
    """A message's keyword terms (``core.memory.ranking.keyword_terms``) with the languages told from the
    whole message (:func:`languages`, the first: :func:`language`'s): its stop words gone, the terms left
    are often too few to tell it ("revisar pedido")."""

    languages: tuple[str, ...]

    def __init__(self, terms: Iterable[str], languages: str | Sequence[str]) -> None:
        super().__init__(terms)
        self.languages = (languages,) if isinstance(languages, str) else tuple(languages)

    @property
    def language(self) -> str:
        return self.languages[0] if self.languages else DEFAULT_LANGUAGE


def of_query(terms: Sequence[str]) -> list[str]:
    """The lexemes a query of ``terms`` looks for (any of them): each word's stem in each of the query's
    languages (a :class:`Keywords`' own, else told from the terms) and in English, de-duplicated, at most
    :data:`MAX_QUERY_LEXEMES`."""
    tokens = list(dict.fromkeys(w for term in terms for w in words(term)))[:MAX_QUERY_WORDS]
    if not tokens:
        return []
    found = terms.languages if isinstance(terms, Keywords) else languages(" ".join(tokens))
    codes = dict.fromkeys((*found, DEFAULT_LANGUAGE))
    per_language = [stems(tokens, code) for code in codes]
    ordered = (stem for row in zip(*per_language, strict=True) for stem in row if _fits(stem))
    return list(dict.fromkeys(ordered))[:MAX_QUERY_LEXEMES]
