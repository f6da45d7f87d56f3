"""Redaction: sensitive values are replaced by typed placeholders before text reaches memory or a prompt.

``redact(text)`` finds, and replaces with ``[<kind> removed]``:

=================  ==========================================================================================
kind               what counts
=================  ==========================================================================================
``card number``    13-19 digits, optionally grouped by single spaces or dashes the way cards are printed
                   (4-4-4-x, 4-4-4-4-x, 4-6-5, 4-6-4), starting 2-6 (the card networks), Luhn-valid;
                   not after "IMEI", "serial" or "tracking", nor right after an IBAN's "DE89 " head
``bank account``   an IBAN whose ISO 13616 checksum is valid (any case, spaces or dashes), and the digits
                   after "account number", "acct #", "routing number", "sort code" and the like (6+ digits)
``national id``    a US SSN, ``###-##-####`` (or 9 digits after "SSN" / "social security number"), with the
                   never-issued ranges excluded (area 000, 666, 9xx; group 00; serial 0000; known test SSNs)
``password``       the word after "password is", "my pw:", "passcode =", "pin is" (common words such as
                   "wrong" or "expired" after "is" are not passwords and are kept; a password written
                   with spaces loses its first word only)
``one-time code``  4-8 digits after "code is", "code:", "OTP", "verification code", "2FA code", ...
                   (not after "zip", "area", "error", "promo" and other codes that are not secrets)
``secret``         API keys by their published prefixes (``sk-``, ``sk_live_``, ``AKIA``/``ASIA``, ``ghp_``
                   and the other GitHub prefixes, ``github_pat_``, ``xoxb-``/``xoxp-``/..., ``AIza``, JWTs)
                   and a long, high-entropy token after "key", "token", "secret" or "bearer"
=================  ==========================================================================================

Checksums come from python-stdnum (``stdnum.luhn``, ``stdnum.iban``, ``stdnum.us.ssn``), so a number that
merely looks like a card, an IBAN or an SSN is kept: order numbers, phone numbers, dates and prices are
ordinary support text. Where two findings overlap, the one that starts first (then the longer) wins.

Redaction is one-way: the placeholder says what was there, never any part of the value.

Redaction runs in the worker on the event loop (prompts, memory writes, recall queries), so it is bounded:
every pattern runs in linear time (possessive quantifiers, ``*+``, where two optional runs of whitespace
met and backtracked quadratically over a long run of spaces), and a text longer than
``core.textlimits.MAX_TEXT_CHARS`` (32,000 characters) is searched only up to that bound, plus a small
margin, and comes back clipped to it (see ``redact``).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from stdnum import iban, luhn
from stdnum.us import ssn

from core.textlimits import MAX_TEXT_CHARS, clip_text

__all__ = ["KINDS", "Redacted", "placeholder", "redact"]

CARD = "card number"
BANK_ACCOUNT = "bank account"
NATIONAL_ID = "national id"
PASSWORD = "password"  # noqa: S105 (the name of a kind, not a password)
ONE_TIME_CODE = "one-time code"
SECRET = "secret"  # noqa: S105 (the name of a kind, not a secret)
KINDS: tuple[str, ...] = (CARD, BANK_ACCOUNT, NATIONAL_ID, PASSWORD, ONE_TIME_CODE, SECRET)


def placeholder(kind: str) -> str:
    """What replaces a finding of ``kind``: ``[card number removed]``."""
    return f"[{kind} removed]"


@dataclass(frozen=True, slots=True)
class Redacted:
    """The text with every finding replaced, and the kinds found (each once, in order of appearance)."""

    text: str
    kinds: tuple[str, ...] = ()

    @property
    def changed(self) -> bool:
        return bool(self.kinds)


@dataclass(frozen=True, slots=True, order=True)
class _Span:
    start: int
    end: int
    kind: str


# ----- cards -------------------------------------------------------------------------------------

# digits with single space/dash separators, not glued to other digits, letters, "+" (phones) or dashes
_CARD_RE = re.compile(r"(?<![\w+\-])[2-6](?:[ \-]?\d){12,18}(?![\w\-])")


def _card_layout(groups: list[str]) -> bool:
    """Whether digit groups are laid out as cards are printed: 4-4-4-4 and longer or shorter tails (13-19
    digits), 4-6-5 (Amex), 4-6-4 (Diners). A single run of digits is fine too."""
    sizes = [len(g) for g in groups]
    if len(sizes) == 1 or sizes in ([4, 6, 5], [4, 6, 4]):
        return True
    return len(sizes) in (4, 5) and all(n == 4 for n in sizes[:-1]) and 1 <= sizes[-1] <= 4


# the digits of an IBAN whose checksum failed are not a card
_IBAN_HEAD = re.compile(r"\b[A-Za-z]{2}\d{2}[ \-]$")
# device and parcel numbers that are Luhn-checked too (an IMEI: 15 digits, Luhn-valid)
_NOT_A_CARD_BEFORE = re.compile(
    r"\b(?:imei|meid|serial|tracking)(?:\s++(?:number|no\.?|#))?+\s*+(?:is|:|#)?\s*+$", re.IGNORECASE
)


def _cards(text: str) -> Iterator[_Span]:
    for match in _CARD_RE.finditer(text):
        before = text[max(0, match.start() - 40) : match.start()]
        if _NOT_A_CARD_BEFORE.search(before) or _IBAN_HEAD.search(before):
            continue
        groups = re.split(r"[ \-]", match.group())
        if not _card_layout(groups):
            continue
        digits = "".join(groups)
        if 13 <= len(digits) <= 19 and luhn.is_valid(digits):
            yield _Span(match.start(), match.end(), CARD)


# ----- bank accounts -----------------------------------------------------------------------------

# the longest run that could be an IBAN; the valid one is found by trimming from the end
_IBAN_RE = re.compile(r"\b[A-Za-z]{2}\d{2}(?:[ \-]?[A-Za-z0-9]){11,32}")
_ACCOUNT_RE = re.compile(
    r"\b(?:(?:bank\s++)?account|acct|a/c|routing|sort)\.?\s*+"
    r"(?:number|num|no\.?|nr\.?|#|code)\s*+(?:is|was|:|=)?\s*+"
    r"(?P<value>\d(?:[ \-]?\d){5,33})(?![\w\-])",
    re.IGNORECASE,
)


def _ibans(text: str) -> Iterator[_Span]:
    for match in _IBAN_RE.finditer(text):
        candidate = match.group()
        # shrink to the longest prefix that ends on a word boundary and is a valid IBAN
        checksum_ok = _iban_checksum_ends(candidate)
        for end in range(len(candidate), 14, -1):
            if (end < len(candidate) and candidate[end].isalnum()) or not candidate[end - 1].isalnum():
                continue
            if end in checksum_ok and iban.is_valid(candidate[:end]):
                yield _Span(match.start(), match.start() + end, BANK_ACCOUNT)
                break


def _iban_checksum_ends(candidate: str) -> set[int]:
    """The ends of the prefixes of ``candidate`` whose ISO 7064 mod 97-10 checksum is right, found in one
    pass: ``iban.is_valid`` fails on every other prefix, and is only called on these (a run of
    single-character groups has some thirty prefixes to try, and redaction runs on the event loop)."""
    head = int("".join(str(int(char, 36)) for char in candidate[:4]))  # moved to the end: six digits
    remainder = 0
    ends: set[int] = set()
    for index in range(4, len(candidate)):
        char = candidate[index]
        if char in " -":
            continue
        value = int(char, 36)
        remainder = (remainder * (100 if value >= 10 else 10) + value) % 97
        if (remainder * 1_000_000 + head) % 97 == 1:
            ends.add(index + 1)
    return ends


def _accounts(text: str) -> Iterator[_Span]:
    for match in _ACCOUNT_RE.finditer(text):
        yield _Span(match.start("value"), match.end("value"), BANK_ACCOUNT)


# ----- national ids ------------------------------------------------------------------------------

_SSN_RE = re.compile(r"(?<![\w\-])\d{3}-\d{2}-\d{4}(?![\w\-])")
_SSN_PHRASE_RE = re.compile(
    r"\b(?:ssn|social\s++security(?:\s++(?:number|num|no\.?|#))?+)\s*+(?:is|was|:|=|#)?\s*+"
    r"(?P<value>\d{3}[ \-]?\d{2}[ \-]?\d{4})(?![\w\-])",
    re.IGNORECASE,
)


def _ssns(text: str) -> Iterator[_Span]:
    for match in _SSN_RE.finditer(text):
        if ssn.is_valid(match.group()):
            yield _Span(match.start(), match.end(), NATIONAL_ID)
    for match in _SSN_PHRASE_RE.finditer(text):
        if ssn.is_valid(match.group("value").replace(" ", "")):
            yield _Span(match.start("value"), match.end("value"), NATIONAL_ID)


# ----- passwords ---------------------------------------------------------------------------------

_PASSWORD_RE = re.compile(
    r"\b(?P<word>password|passwort|passcode|passphrase|passwd|pwd|pw|pin)"
    r"(?:\s++(?:is|was|would\s++be|will\s++be)\b|\s*+[:=])\s*+"
    r"(?P<quote>[\"'“‘`]?)(?P<value>[^\s\"'”’`\[][^\s\"'”’`]*)",  # "[" starts a placeholder
    re.IGNORECASE,
)
# words that follow "password is" in ordinary support text and are not themselves a password
_WORDS_AFTER_IS = """
    a an the my your this that not no still also being now just too very so already always never wrong
    incorrect invalid correct right ok okay fine good bad weak strong expired locked blocked reset
    changed updated rejected required missing empty blank same different new old forgotten lost broken
    working accepted saved stored case-sensitive sensitive there here what
"""
_NOT_A_PASSWORD = frozenset(_WORDS_AFTER_IS.split())


def _passwords(text: str) -> Iterator[_Span]:
    for match in _PASSWORD_RE.finditer(text):
        value = match.group("value").rstrip(".,;:!?)")
        if not value:
            continue
        # after a colon or equals sign anything is the password; after "is" a common word is not
        separated_by_sign = re.search(r"[:=]", text[match.end("word") : match.start("value")]) is not None
        if not separated_by_sign and value.lower() in _NOT_A_PASSWORD:
            continue
        start = match.start("value")
        yield _Span(start, start + len(value), PASSWORD)


# ----- one-time codes ----------------------------------------------------------------------------

_CODE_RE = re.compile(
    r"\b(?:(?P<before>[A-Za-z]+)[ \-])?"
    r"(?:(?P<otp>otp|2fa|mfa|totp)(?:\s++code)?+|code)"
    r"\s*+(?:is|was|:|=|#)?\s*+(?P<value>\d{3}[ \-]\d{3}|\d{4,8})(?![\w\-])",
    re.IGNORECASE,
)
# codes that are not secrets: "zip code 94107", "error code 5001", "promo code 2024"
_ORDINARY_CODES = """
    zip postal post area country dial error status exit reason return http product item sku part model
    promo promotion promotional discount coupon voucher gift referral invite tracking shipping order
    colour color tax bank sort swift branch routing iata airport station room door building class
"""
_NOT_A_SECRET_CODE = frozenset(_ORDINARY_CODES.split())


def _codes(text: str) -> Iterator[_Span]:
    for match in _CODE_RE.finditer(text):
        before = (match.group("before") or "").lower()
        if match.group("otp") is None and before in _NOT_A_SECRET_CODE:
            continue
        yield _Span(match.start("value"), match.end("value"), ONE_TIME_CODE)


# ----- secrets -----------------------------------------------------------------------------------

_SECRET_PREFIX_RE = re.compile(
    r"(?<![\w\-])(?:"
    r"sk-[A-Za-z0-9_\-]{20,}+"  # OpenAI, Anthropic (sk-proj-..., sk-ant-...)
    r"|[sr]k_(?:live|test)_[A-Za-z0-9]{16,}+"  # Stripe secret and restricted keys
    r"|(?:AKIA|ASIA)[A-Z0-9]{16}"  # AWS access key ids
    r"|gh[pousr]_[A-Za-z0-9]{30,}+"  # GitHub tokens
    r"|github_pat_[A-Za-z0-9_]{30,}+"
    r"|xox[abposr]-[A-Za-z0-9\-]{10,}+"  # Slack tokens
    r"|AIza[A-Za-z0-9_\-]{35}"  # Google API keys
    r"|eyJ[A-Za-z0-9_\-]{8,}+\.eyJ[A-Za-z0-9_\-]{8,}+\.[A-Za-z0-9_\-]{8,}+"  # JWTs
    r")(?![\w\-])"
)
_SECRET_PHRASE_RE = re.compile(
    r"\b(?:api[ _\-]?key|access[ _\-]?key|secret[ _\-]?key|private[ _\-]?key|key|token|secret|bearer)"
    r"\s*+(?:is|was|:|=)?\s*+[\"'`]?(?P<value>[A-Za-z0-9_\-+/.=]{20,})",
    re.IGNORECASE,
)
MIN_TOKEN_ENTROPY = 3.5  # bits per character; English words score lower, random base64/hex higher


def _entropy(value: str) -> float:
    counts = Counter(value)
    return -sum(n / len(value) * math.log2(n / len(value)) for n in counts.values())


def _looks_random(value: str) -> bool:
    has_digit = any(c.isdigit() for c in value)
    has_letter = any(c.isalpha() for c in value)
    return has_digit and has_letter and _entropy(value) >= MIN_TOKEN_ENTROPY


def _secrets(text: str) -> Iterator[_Span]:
    for match in _SECRET_PREFIX_RE.finditer(text):
        yield _Span(match.start(), match.end(), SECRET)
    for match in _SECRET_PHRASE_RE.finditer(text):
        value = match.group("value").rstrip(".")
        if _looks_random(value):
            start = match.start("value")
            yield _Span(start, start + len(value), SECRET)


# ----- redact ------------------------------------------------------------------------------------

_DETECTORS: tuple[Callable[[str], Iterator[_Span]], ...] = (
    _secrets,
    _ibans,
    _cards,
    _ssns,
    _accounts,
    _passwords,
    _codes,
)


# how far past the bound a long text is still searched, so that a value the final cut passes through is
# found whole (and replaced) before the cut: more than any finding and the context before it
_CLIP_MARGIN = 1_000


def redact(text: str) -> Redacted:
    """``text`` with every sensitive value replaced by ``[<kind> removed]``, and the kinds found.

    A text longer than ``MAX_TEXT_CHARS`` comes back clipped to that many characters (``clip_text``):
    it is searched a little past the bound and clipped after redaction, so no value is cut in half and
    left behind.

    >>> redact("card 4111 1111 1111 1111, order 4411")
    Redacted(text='card [card number removed], order 4411', kinds=('card number',))
    """
    if len(text) > MAX_TEXT_CHARS:
        found = _redact(text[: MAX_TEXT_CHARS + _CLIP_MARGIN])
        return Redacted(clip_text(found.text), found.kinds)
    return _redact(text)


def _redact(text: str) -> Redacted:
    spans = sorted((span for detect in _DETECTORS for span in detect(text)), key=lambda s: (s.start, -s.end))
    if not spans:
        return Redacted(text)
    parts: list[str] = []
    kinds: list[str] = []
    position = 0
    for span in spans:
        if span.start < position:  # overlaps one already replaced, which started first or is longer
            continue
        parts.append(text[position : span.start])
        parts.append(placeholder(span.kind))
        if span.kind not in kinds:
            kinds.append(span.kind)
        position = span.end
    parts.append(text[position:])
    return Redacted("".join(parts), tuple(kinds))
