"""Questions about time, and memories that say when: the two sides of recall's time prior.

A customer asking "when did the outage start?" or "how long ago did I order the router?" is answered by
the memory that says when ("it went down last Tuesday", "I ordered it two weeks ago"), which often shares
few words with the question and is no closer in meaning than the lines around it. ``core.memory.ranking``
gives such memories a share more of their score, for such questions only (``TIME_PRIOR`` there).

- :func:`says_when`: the memory's text holds a time expression (yesterday, last week, two years ago, in
  June, on Friday, 2022, 5/14, since March, Mar 5, ...). Read once per memory, when it is stored
  (``MENTIONS_TIME`` in its payload, :func:`with_time_flag`), never per query.
- :func:`asks_when`: the message asks when, how long, what year / month / day / date, how old.

Both read English here and Spanish, French, German, Portuguese and Italian
(``core.memory.time_words_languages``); the keyword side's stop words and stemmer stay English.

Chosen on LoCoMo conversations 26 and 30 (``docs/locomo.md``); the question side is deliberately narrow
(it asks about time in words), not any message that happens to hold a time word.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from core.memory import time_words_languages as languages
from core.memory.time_words_languages import fold

MENTIONS_TIME = "mentions_time"  # the payload key: True when the memory's text says when

_MONTH_NAMES = r"(?:january|february|march|april|june|july|august|september|october|november|december)"
# Abbreviations are words and names elsewhere (Spanish, Portuguese and Italian "mar" is the sea, "Jan" a
# first name): they say when only as part of a date ("Mar 5", "5 Mar", "Dec 2024", "since Jan").
_MONTH_ABBREVIATIONS = r"(?:jan|feb|mar|apr|jun|jul|aug|sept?|oct|nov|dec)"
_MONTHS = r"(?:" + _MONTH_NAMES + r"|" + _MONTH_ABBREVIATIONS + r")"
_ABBREVIATED_DATE = (
    _MONTH_ABBREVIATIONS
    + r"\.?\s*\d{1,4}(?:st|nd|rd|th)?|\d{1,2}(?:st|nd|rd|th)?\s+"
    + _MONTH_ABBREVIATIONS
    + r"|(?:in|on|since|until|by|early|late|mid|of)\s+"
    + _MONTH_ABBREVIATIONS
)
_WEEKDAYS = r"(?:monday|tuesday|wednesday|thursday|friday|saturday|sunday)"
_UNITS = (
    r"(?:seconds?|minutes?|hours?|days?|nights?|weeks?|weekends?|months?|years?|decades?|summers?|winters?)"
)
_COUNT = (
    r"(?:\d+|a|an|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|a few|few"
    r"|a couple(?: of)?|couple(?: of)?|several|many)"
)
_SAYS_WHEN = re.compile(
    r"\b(?:"
    r"yesterday|today|tonight|tomorrow|recently|lately|earlier|ago|"
    r"(?:last|next|this|past|coming|previous|that)\s+(?:"
    + _WEEKDAYS
    + r"|"
    + _UNITS
    + r"|"
    + _MONTHS
    + r"|morning|afternoon|evening|night|time|spring|fall|autumn)|"
    r"the other (?:day|night|week)|" + _COUNT + r"\s+" + _UNITS + r"\s+(?:ago|back|before|earlier|later)|"
    r"(?:for|in|over)\s+(?:the\s+)?(?:last|past)?\s*" + _COUNT + r"\s+" + _UNITS + r"|"
    r"since\s+\w+|" + _MONTH_NAMES + r"|" + _ABBREVIATED_DATE + r"|" + _WEEKDAYS + r"|"
    r"(?:19|20)\d\d|\d{1,2}/\d{1,2}(?:/\d{2,4})?|"
    r"(?:in|on|at|during|over)\s+the\s+(?:weekend|summer|winter|spring|fall|morning|evening)|"
    r"when I was|as a (?:kid|child|teen)|growing up|back then|years?"
    r")\b",
    re.IGNORECASE,
)
# the month May, not the verb: capitalised, after a word that goes with a date or before a number
_MAY = re.compile(r"\b(?i:in|on|of|since|until|by|early|late|mid|last|next|during)\s+May\b|\bMay\s+\d")
_ASKS_WHEN = re.compile(
    r"^\s*when" + languages.NOT_A_CLAUSE + r"|"  # "When did ...", not "When I called, nobody answered."
    r"\bhow long\b|\bwhat (?:year|month|day|date|time|week|weekend|season)\b|"
    r"\bwhich (?:year|month|day|week)\b|\bin what (?:year|month)\b|\bsince when\b|"
    r"\bhow many (?:years|months|weeks|days)\b|\bhow old\b|\bwhat age\b",
    re.IGNORECASE,
)


def says_when(text: str) -> bool:
    """Whether a memory's text says when something happened (in English or one of
    ``time_words_languages.LANGUAGES``)."""
    return bool(_SAYS_WHEN.search(text) or _MAY.search(text) or languages.says_when(fold(text)))


def asks_when(query: str) -> bool:
    """Whether a message asks when something happened (how long ago, what year, how old, ...), in English
    or one of ``time_words_languages.LANGUAGES``."""
    return bool(_ASKS_WHEN.search(query) or languages.ASKS_WHEN.search(fold(query)))


def with_time_flag(payload: Mapping[str, Any]) -> dict[str, Any]:
    """``payload`` with :data:`MENTIONS_TIME` set from its text (``data``): True when it says when, absent
    otherwise (a payload without text keeps what it had). What both memory indexes store."""
    out = dict(payload)
    text = out.get("data")
    if isinstance(text, str):
        if says_when(text):
            out[MENTIONS_TIME] = True
        else:
            out.pop(MENTIONS_TIME, None)
    return out
