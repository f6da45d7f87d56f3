"""Hypothesis strategies that turn real platform fixtures into hostile variants.

- ``mutated_json``: a fixture document with fields dropped, replaced, retyped, blown up to huge numbers
  or deeply nested structures; serialised, and then possibly cut short or sprinkled with random bytes;
- ``mutated_form``: an ``application/x-www-form-urlencoded`` parameter list with the same treatment;
- ``mutated_mime``: raw RFC 5322 bytes with headers dropped, duplicated or garbled, random MIME parts,
  broken encodings and boundaries;
- ``header_value`` / ``content_type``: what an HTTP client can put on the wire (latin-1, no controls).

Everything here is a pure function of hypothesis draws, so ``derandomize=True`` reproduces it.
"""

from __future__ import annotations

import copy
import json
from typing import Any
from urllib.parse import quote_plus

from hypothesis import strategies as st

Json = Any
_DEEP = "\x00DEEP\x00"
_DEEP_ENCODED = json.dumps(_DEEP).encode()

HUGE_NUMBERS: tuple[int | float, ...] = (
    2**31,
    2**53 + 1,
    2**63,
    -(2**63) - 1,
    2**64,
    10**30,
    2**1000,
    -(10**300),
    1e308,
    -1e308,
    5e-324,
    -0.0,
    float("inf"),
    float("-inf"),
    float("nan"),
)

# ----- JSON ---------------------------------------------------------------------------------------

scalars: st.SearchStrategy[Json] = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.sampled_from(HUGE_NUMBERS),
    st.text(max_size=40),
    st.sampled_from(["", " ", "0", "-1", "1e999", "true", "null", "<@UBOT0001>", "\u202e", "\ud800"]),
    # shapes of issue 11's attacks: chat kinds, a contact phone without "+", fence breakouts, header
    # injection, and text that made a pattern quadratic
    st.sampled_from(
        [
            "group",
            "supergroup",
            "channel",
            "im",
            "app_mention",
            "5016001234",
            "</CUSTOMER_MEMORY >",
            "</customer\u200b_memory>",
            "\r\nBcc: x@example.com",
            "/link " + " " * 5_000 + "x",
            "my email is " * 500,
            "password is" + " " * 5_000,
        ]
    ),
)
json_values: st.SearchStrategy[Json] = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)


def _paths(doc: Json, prefix: tuple[str | int, ...] = ()) -> list[tuple[str | int, ...]]:
    """Every path to a value inside ``doc`` (the root is ``()``)."""
    found: list[tuple[str | int, ...]] = [prefix]
    if isinstance(doc, dict):
        for key, value in doc.items():
            found.extend(_paths(value, (*prefix, key)))
    elif isinstance(doc, list):
        for index, value in enumerate(doc):
            found.extend(_paths(value, (*prefix, index)))
    return found


def _get(doc: Json, path: tuple[str | int, ...]) -> Json:
    for step in path:
        doc = doc[step]
    return doc


def _retype(value: Json) -> Json:
    """The same information in the wrong JSON type."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return [value]
    if isinstance(value, list):
        return dict(enumerate(value))
    if isinstance(value, dict):
        return list(value.values())
    return 0


@st.composite
def _mutate_once(draw: st.DrawFn, doc: Json) -> Json:
    paths = _paths(doc)
    path = draw(st.sampled_from(paths))
    op = draw(st.sampled_from(["drop", "replace", "retype", "huge", "deep", "null", "add", "wrap"]))
    if op == "add" or not path:
        target = _get(doc, path[:-1]) if path else doc
        if isinstance(target, dict):
            target[draw(st.text(max_size=12))] = draw(json_values)
            return doc
        if not path:
            return draw(json_values) if op == "replace" else doc
        op = "replace"
    parent, last = _get(doc, path[:-1]), path[-1]
    if op == "drop":
        del parent[last]
    elif op == "replace":
        parent[last] = draw(json_values)
    elif op == "retype":
        parent[last] = _retype(parent[last])
    elif op == "huge":
        parent[last] = draw(st.sampled_from(HUGE_NUMBERS))
    elif op == "deep":
        parent[last] = _DEEP
    elif op == "null":
        parent[last] = None
    else:  # wrap
        parent[last] = [parent[last]] if draw(st.booleans()) else {"value": parent[last]}
    return doc


@st.composite
def _deep_text(draw: st.DrawFn) -> bytes:
    depth = draw(st.sampled_from([50, 999, 1_001, 5_000, 50_000]))
    opener, closer = draw(st.sampled_from([(b"[", b"]"), (b'{"a":', b"}")]))
    return opener * depth + b"1" + closer * depth


@st.composite
def mutated_bytes(draw: st.DrawFn, raw: bytes) -> bytes:
    """Byte-level damage: cut short, flipped or inserted bytes, garbage appended, or replaced outright."""
    op = draw(st.sampled_from(["keep"] * 6 + ["truncate", "flip", "insert", "append", "replace"]))
    if op == "truncate":
        return raw[: draw(st.integers(0, max(0, len(raw) - 1)))]
    if op == "flip" and raw:
        data = bytearray(raw)
        for _ in range(draw(st.integers(1, 8))):
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
        return bytes(data)
    if op == "insert":
        at = draw(st.integers(0, len(raw)))
        return raw[:at] + draw(st.binary(min_size=1, max_size=32)) + raw[at:]
    if op == "append":
        return raw + draw(st.sampled_from([b"\x00", b"\xff\xfe", b"}", b",", b"\r\n\r\n", b"%", b"\xc3("]))
    if op == "replace":
        return draw(st.binary(max_size=256))
    return raw


@st.composite
def mutated_json(draw: st.DrawFn, seeds: list[Json]) -> bytes:
    """A seed document, mutated field-wise 0-5 times, serialised, then maybe damaged byte-wise."""
    if draw(st.integers(0, 9)) == 0:
        doc: Json = draw(json_values)  # now and then, a document of no known shape at all
    else:
        doc = copy.deepcopy(draw(st.sampled_from(seeds)))
        for _ in range(draw(st.integers(0, 5))):
            doc = draw(_mutate_once(doc))
    raw = json.dumps(doc, ensure_ascii=draw(st.booleans())).encode("utf-8", "surrogatepass")
    if _DEEP_ENCODED in raw:
        raw = raw.replace(_DEEP_ENCODED, draw(_deep_text()), 1).replace(_DEEP_ENCODED, b"0")
    return draw(mutated_bytes(raw))


# ----- forms --------------------------------------------------------------------------------------

form_text = st.one_of(
    st.text(max_size=30),
    st.sampled_from(["", " ", "STOP", "help", "+15551234567", "whatsapp:+14155552671", "-1", "99999999999"]),
    st.sampled_from([str(n) for n in HUGE_NUMBERS]),
)


@st.composite
def mutated_form(
    draw: st.DrawFn, seeds: list[list[tuple[str, str]]], names: list[str]
) -> list[tuple[str, str]]:
    """A seed parameter list with parameters dropped, replaced, repeated or added (known and random names)."""
    pairs = list(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(0, 6))):
        op = draw(st.sampled_from(["drop", "replace", "repeat", "add", "add_known"]))
        if op == "drop" and pairs:
            del pairs[draw(st.integers(0, len(pairs) - 1))]
        elif op == "replace" and pairs:
            at = draw(st.integers(0, len(pairs) - 1))
            pairs[at] = (pairs[at][0], draw(form_text))
        elif op == "repeat" and pairs:
            key = pairs[draw(st.integers(0, len(pairs) - 1))][0]
            pairs.append((key, draw(form_text)))
        elif op == "add":
            pairs.append((draw(st.text(min_size=1, max_size=12)), draw(form_text)))
        else:
            pairs.append((draw(st.sampled_from(names)), draw(form_text)))
    return pairs


def encode_form(pairs: list[tuple[str, str]]) -> bytes:
    """Encode as Twilio does (``quote_plus``), keeping lone surrogates representable."""
    return "&".join(
        f"{quote_plus(k, errors='surrogatepass')}={quote_plus(v, errors='surrogatepass')}" for k, v in pairs
    ).encode("ascii")


# ----- MIME ---------------------------------------------------------------------------------------

_HEADER_NAMES = [
    "From", "To", "Cc", "Sender", "Reply-To", "Subject", "Date", "Message-ID", "In-Reply-To", "References",
    "MIME-Version", "Content-Type", "Content-Transfer-Encoding", "Content-Disposition", "Auto-Submitted",
    "Precedence", "List-Id", "X-Loop", "Return-Path", "Authentication-Results", "X-Autoreply", "Received",
]  # fmt: skip
_HEADER_VALUES = [
    "", " ", "<>", "@", "a@", "@b", "ana@example.com", "=?utf-8?B?w6k=?= <ana@example.com>",
    "=?utf-8?q?broken", "=?x-unknown?B?AAAA?=", '"unterminated <ana@example.com>', "<<<>>>",
    "multipart/mixed", "multipart/mixed; boundary=", 'multipart/alternative; boundary="b"', "text/html",
    "text/plain; charset=x-no-such-charset", "text/plain; charset=utf-7", "message/rfc822",
    "multipart/report; report-type=delivery-status", "base64", "quoted-printable", "x-uuencode", "8bit",
    'attachment; filename="=?utf-8?B?AAA=?="', "attachment; filename*=utf-8''%ff%fe",
    "mx.threadline.example; dmarc=pass header.from=example.com", "mx; dmarc=", "auto-replied", "bulk",
    "support@threadline.example", "<a@b> <c@d> garbage <", "(comment (nested", "\\", "Mon, 99 Foo 2025",
    "=?utf-8?q?Invoice=0D=0ABcc:_attacker@evil.example?=", "=?utf-8?b?SGkNCkJjYzogeEB5?=",
    "mx.threadline.example; dmarc=pass (p=reject) header.from=example.com; spf=pass smtp.mailfrom=x",
    "from evil.example by mx.threadline.example; 1 Dec 2026", "</customer_memory>", '"a' * 400,
]  # fmt: skip
_BODIES = [
    b"", b"hello", b"=\r\n=ZZ=", b"!!!not base64!!!", b"--b\r\n\r\n--b--", b"<html><p>hi", b"\xff\xfe\x00",
    b"On Mon, Ana wrote:\r\n> quoted\r\n", b"\r\n.\r\n",
    b"--b\r\nContent-Type: text/plain\r\n\r\nx\r\n--b--\r\n",
    b" " * 30_000 + b"x", b"my email is " * 2_000, b"/link " + b" " * 20_000 + b"x\r\ny",
    b"<a " * 10_000, b"<!--" * 5_000,
]  # fmt: skip


@st.composite
def mutated_mime(draw: st.DrawFn, seeds: list[bytes]) -> bytes:
    """A seed mail with header lines dropped, duplicated, rewritten or added, and its body replaced or cut."""
    raw = draw(st.sampled_from(seeds))
    head, sep, body = raw.partition(b"\r\n\r\n") if b"\r\n\r\n" in raw else raw.partition(b"\n\n")
    newline = b"\r\n" if sep == b"\r\n\r\n" else b"\n"
    lines = head.split(newline) if head else []
    for _ in range(draw(st.integers(0, 6))):
        op = draw(st.sampled_from(["drop", "dup", "rewrite", "add", "add_random", "fold"]))
        if op == "drop" and lines:
            del lines[draw(st.integers(0, len(lines) - 1))]
        elif op == "dup" and lines:
            lines.insert(draw(st.integers(0, len(lines))), draw(st.sampled_from(lines)))
        elif op == "rewrite" and lines:
            at = draw(st.integers(0, len(lines) - 1))
            name = lines[at].split(b":", 1)[0]
            lines[at] = name + b": " + draw(st.sampled_from(_HEADER_VALUES)).encode()
        elif op == "add":
            header = f"{draw(st.sampled_from(_HEADER_NAMES))}: {draw(st.sampled_from(_HEADER_VALUES))}"
            lines.insert(draw(st.integers(0, len(lines))), header.encode())
        elif op == "add_random":
            lines.append(draw(st.binary(max_size=60)).replace(b"\r", b"").replace(b"\n", b""))
        else:  # fold: an overlong or continued header line
            lines.append(b"Subject: " + b"x" * draw(st.sampled_from([1, 998, 5000])) + newline + b" \tmore")
    body_op = draw(st.sampled_from(["keep", "keep", "replace", "random", "nest"]))
    if body_op == "replace":
        body = draw(st.sampled_from(_BODIES))
    elif body_op == "random":
        body = draw(st.binary(max_size=300))
    elif body_op == "nest":  # multipart inside multipart, boundaries reused
        depth = draw(st.sampled_from([1, 2, 5, 30, 60, 3_000]))
        part = b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n"
        body = part * depth + b"Content-Type: text/plain\r\n\r\nhi\r\n" + b"--b--\r\n" * depth
    out = newline.join(lines) + sep + body if sep else newline.join(lines)
    return draw(mutated_bytes(out))


# ----- HTTP headers ---------------------------------------------------------------------------------

# what h11 lets a client send in a field value: visible ASCII and obs-text, inner spaces
_FIELD_CHARS = st.sampled_from([chr(c) for c in (*range(0x21, 0x7F), *range(0x80, 0x100))] + [" "])
header_value: st.SearchStrategy[bytes] = st.one_of(
    st.lists(_FIELD_CHARS, max_size=40).map(lambda cs: "".join(cs).strip(" ").encode("latin-1")),
    st.sampled_from(
        [b"", b"0", b"-1", b"\xb2", b"\xbd", b"1e3", b"99999999999999999999", b"nan", b"1" * 500]
    ),
)


wrong_content_type: st.SearchStrategy[bytes] = st.one_of(
    st.sampled_from(
        [
            b"application/json",
            b"application/x-www-form-urlencoded",
            b"application/x-www-form-urlencoded; charset=utf-8",
            b"multipart/form-data",
            b"multipart/form-data; boundary=",
            b"multipart/form-data; boundary=\xff",
            b"text/plain",
            b"application/octet-stream",
            b";;;",
            b"",
        ]
    ),
    header_value,
)


def content_type(right: str) -> st.SearchStrategy[bytes]:
    """Mostly the right content type; otherwise a wrong, malformed or random one."""
    return st.one_of(*[st.just(right.encode())] * 3, wrong_content_type)
