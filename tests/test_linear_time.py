"""No message, however shaped, costs more than linear time: each pattern-running function on its worst input.

Each case is a function that runs regular expressions (or a parser) over message text, and an input
built to make a backtracking pattern blow up: long runs of whitespace between the parts of a phrase,
``@`` or ``.`` runs inside an address, unclosed tags, blank lines. The function is timed on that input
at size ``n`` and ``8n``; linear code takes about 8 times as long on the larger one, quadratic code about
64 times. The cost is the least CPU time of the thread over a few runs (``time.thread_time``: time spent
waiting for the CPU on a busy machine is not counted, and the least of several runs drops the rest of the
noise), and only the ratio is checked, never an absolute time.

Every case took quadratic time (ratio 33 to 64) before the patterns were rewritten and the text bounded,
except those marked "(guard)": these neighbours of a fixed case were linear already and are kept so that
they stay so.

``n`` is chosen so that ``8n`` stays under the bounds the code applies (``core.textlimits.MAX_TEXT_CHARS``,
the proof module's command and claim bounds): what is measured is the patterns, not the clipping (the
reply splitter's input is shortened before its patterns run, so its ratios fall well under 8). The last
tests check the clipping itself: a 10 MiB email body gives a message whose text is bounded.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from channels.email_parse import HeaderTrust, ParseContext, parse_email
from channels.email_text import html_to_text, newest_reply
from channels.slack import _strip_mentions
from channels.sms import split_sms
from core.agent.redaction import redact
from core.textlimits import MAX_TEXT_CHARS, SHORTENED, clip_text
from identity.normalize import normalize_address
from identity.proof import _CODE, _claim_in

RUNS = 5
MAX_RATIO = 20.0  # linear: about 8; quadratic: about 64
MIN_SAMPLE = 0.002  # seconds: a smaller run is repeated until one sample takes at least this long
OURS = "support@threadline.example"


def _sample(function: Callable[[str], object], value: str, repeat: int) -> float:
    start = time.thread_time()
    for _ in range(repeat):
        function(value)
    return time.thread_time() - start


def cost(
    function: Callable[[str], object], value: str, *, repeat: int, give_up: float | None = None
) -> float:
    """The least thread CPU time of ``RUNS`` runs (each ``repeat`` calls); stops early past ``give_up``."""
    best = float("inf")
    for _ in range(RUNS):
        best = min(best, _sample(function, value, repeat))
        if give_up is not None and best > give_up:
            break  # clearly super-linear: no need to wait for the other runs
    return best


def growth(function: Callable[[str], object], make: Callable[[int], str], n: int) -> float:
    """How much longer ``function`` takes on ``make(8 * n)`` than on ``make(n)``."""
    small_input, large_input = make(n), make(8 * n)
    function(small_input)  # warm up: compiled patterns, imports, caches
    once = _sample(function, small_input, 1)
    repeat = max(1, min(1000, int(MIN_SAMPLE / max(once, 1e-7)) + 1))
    small = cost(function, small_input, repeat=repeat)
    large = cost(function, large_input, repeat=repeat, give_up=small * MAX_RATIO * 5)
    return large / small


def mail(body: str, *, content_type: str = "text/plain; charset=utf-8", headers: str = "") -> bytes:
    return (
        f"From: Ana <ana@example.com>\r\nTo: {OURS}\r\nSubject: help\r\nMessage-ID: <m1@example.com>\r\n"
        f"{headers}MIME-Version: 1.0\r\nContent-Type: {content_type}\r\n\r\n{body}\r\n"
    ).encode()


def parsed_text(raw: bytes) -> str:
    message = parse_email(
        raw,
        mail_from="ana@example.com",
        recipients=[OURS],
        # with an authserv-id and the webhook's trust every header field is parsed (Authentication-Results)
        context=ParseContext(address=OURS, normalize=normalize_address, authserv_id="mx.threadline.example"),
        trust=HeaderTrust.PROVIDER,
    )
    assert message is not None
    return message.text


def parsing(make_raw: Callable[[int], bytes]) -> tuple[Callable[[str], object], Callable[[int], str]]:
    """A case for ``parse_email``: the raw message is built once per size (as text; encoded per call)."""
    return (lambda raw: parsed_text(raw.encode("utf-8", errors="surrogateescape"))), (
        lambda n: make_raw(n).decode("utf-8", errors="surrogateescape")
    )


@dataclass(frozen=True)
class Case:
    name: str
    function: Callable[[str], object]
    make: Callable[[int], str]
    n: int


def _mail_case(name: str, make_raw: Callable[[int], bytes], n: int) -> Case:
    function, make = parsing(make_raw)
    return Case(name, function, make, n)


CASES = [
    # core.agent.redaction: "<keyword>" + spaces + no value (two \s* around an optional word: quadratic)
    Case("redact: code + spaces", redact, lambda n: "code" + " " * n + "x", 3_000),
    Case("redact: account number + spaces", redact, lambda n: "account number" + " " * n + "x", 3_000),
    Case("redact: ssn + spaces", redact, lambda n: "ssn" + " " * n + "x", 3_000),
    Case("redact: key + spaces", redact, lambda n: "key" + " " * n + "x", 3_000),
    Case("redact: password is + spaces (guard)", redact, lambda n: "password is" + " " * n + '"', 3_000),
    Case(
        "redact: imei + spaces + card (guard)",
        redact,
        lambda n: ("imei" + " " * 30 + "4111111111111111 ") * (n // 50),
        3_000,
    ),
    # identity.proof: the /link command, the claims, the code
    Case("proof: /link + spaces", lambda t: _claim_in(t), lambda n: "/link x" + " " * n + "\ny", 240),
    Case("proof: my email is @@@", lambda t: _claim_in(t), lambda n: "my email is " + "@" * n + ",", 480),
    Case(
        "proof: my email is a@b...", lambda t: _claim_in(t), lambda n: "my email is a@b" + "." * n + ",", 480
    ),
    Case(
        "proof: my email is + spaces (guard)",
        lambda t: _claim_in(t),
        lambda n: "my email" + " " * n + "x",
        480,
    ),
    Case(
        "proof: my number is + spaces (guard)",
        lambda t: _claim_in(t),
        lambda n: "my number is 1" + " " * n + "x",
        480,
    ),
    Case("proof: code + spaces", lambda t: _CODE.match(t), lambda n: "123456" + " " * n + "x", 1_000),
    Case(
        "proof: /verify + spaces (guard)",
        lambda t: _CODE.match(t),
        lambda n: "/verify" + " " * n + "x",
        1_000,
    ),
    # channels.email_text: the reply splitter and the HTML renderer
    Case("newest_reply: blank lines", newest_reply, lambda n: "hi\n" + "\n" * n + "x", 500),
    Case("newest_reply: spaces", newest_reply, lambda n: "hi " + " " * n + "x", 1_000),
    Case("newest_reply: long On line", newest_reply, lambda n: "On " + "a " * (n // 2), 1_000),
    Case(
        "newest_reply: many On lines (guard)",
        newest_reply,
        lambda n: ("On " + "a " * 60 + "\n") * (n // 124),
        2_000,
    ),
    Case(
        "newest_reply: disclaimers (guard)",
        newest_reply,
        lambda n: "hi\n" + ". Disclaimer: mail" * (n // 18),
        1_000,
    ),
    Case("html_to_text: unclosed tags", html_to_text, lambda n: "<a " * (n // 3), 1_000),
    Case("html_to_text: unclosed comments", html_to_text, lambda n: "<!--" * (n // 4), 1_000),
    Case("html_to_text: unclosed quotes", html_to_text, lambda n: '<a b="' * (n // 6), 1_000),
    Case(
        "html_to_text: ordinary (guard)",
        html_to_text,
        lambda n: "<p>a <b>b</b> &amp; c</p>" * (n // 25),
        3_000,
    ),
    # channels.email_parse: the whole parse, through the body and through the headers
    _mail_case("parse_email: blank lines", lambda n: mail("hi" + "\r\n" * n + "x"), 1_000),
    _mail_case("parse_email: code + spaces", lambda n: mail("code" + " " * n + "x"), 2_000),
    _mail_case(
        "parse_email: html unclosed tags",
        lambda n: mail("<a " * (n // 3), content_type="text/html; charset=utf-8"),
        2_000,
    ),
    _mail_case(
        "parse_email: Content-Type ;;;",
        lambda n: mail("hi", content_type="text/plain; charset=utf-8" + ";" * n),
        2_000,
    ),
    _mail_case(
        "parse_email: Sender quotes",
        lambda n: mail("hi", headers="Sender: " + '"a' * (n // 2) + "\r\n"),
        2_000,
    ),
    # channels.slack: our own mention, never closed
    Case(
        "slack: unclosed mentions",
        lambda t: _strip_mentions(t, {"U0BOT"}),
        lambda n: "<@U0BOT|" * (n // 8),
        4_000,
    ),
    # channels.sms: splitting a long reply at sentence ends and spaces
    Case("sms: split at sentence ends (guard)", split_sms, lambda n: ". " * (n // 2), 4_000),
    Case("sms: split, spaces after a full stop (guard)", split_sms, lambda n: "." + " " * n + "x", 4_000),
]


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_time_grows_linearly(case: Case) -> None:
    ratio = growth(case.function, case.make, case.n)
    assert ratio < MAX_RATIO, f"{case.name}: 8x the input took {ratio:.0f}x the time"


# ----- clipping ----------------------------------------------------------------------------------


def test_a_10_mib_email_body_gives_bounded_text() -> None:
    body = ("My order has not arrived yet and I would like to know where it is. " * 160 + "\r\n") * 1_000
    raw = mail(body)
    assert len(raw) > 10 * 1024 * 1024
    text = parsed_text(raw)
    assert len(text) <= MAX_TEXT_CHARS
    assert text.startswith("My order has not arrived")
    assert text.endswith(SHORTENED)


def test_a_10_mib_html_body_gives_bounded_text() -> None:
    body = "<p>My order has not arrived yet.</p>" * 300_000
    raw = mail(body, content_type="text/html; charset=utf-8")
    assert len(raw) > 10 * 1024 * 1024
    text = parsed_text(raw)
    assert len(text) <= MAX_TEXT_CHARS
    assert text.startswith("My order has not arrived yet.")


def test_redaction_of_a_long_text_is_bounded_and_redacts_up_to_its_end() -> None:
    card = "4111 1111 1111 1111"
    text = ("card " + card + " ") * 20_000
    result = redact(text)
    assert len(result.text) <= MAX_TEXT_CHARS
    assert result.text.endswith(SHORTENED)
    assert "4111" not in result.text and "1111" not in result.text
    assert result.kinds == ("card number",)


def test_clipping_never_cuts_a_number_in_half() -> None:
    card = "4111 1111 1111 1111"
    for offset in range(25):  # wherever the bound falls in the number
        text = "x" * (MAX_TEXT_CHARS - len(SHORTENED) - offset) + " " + card + " " + "y" * 100
        clipped = clip_text(text)
        assert len(clipped) <= MAX_TEXT_CHARS and clipped.endswith(SHORTENED)
        tail = clipped.removesuffix(SHORTENED).rstrip("y ")
        assert tail.endswith("x") or tail.endswith(card), tail[-30:]  # the whole number, or none of it
    assert clip_text("short") == "short"
    assert clip_text(clip_text("y " * MAX_TEXT_CHARS)) == clip_text("y " * MAX_TEXT_CHARS)
