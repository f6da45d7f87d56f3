"""How much of a message's text the hub reads: one bound for every pattern that runs over message text.

An email body may be 10 MiB (``channels.email.MAX_BODY_BYTES``) while a customer's message worth
answering is a few thousand characters. Every regular expression, reply splitter and HTML renderer that
runs over message text runs over at most ``MAX_TEXT_CHARS`` of it, so no message, however long or
however shaped, can hold a worker thread or the event loop for long: CPython's ``re`` holds the GIL for
the whole of one ``search``, so even a pattern run in ``asyncio.to_thread`` stalls the loop while it
runs. Text beyond the bound is cut and ``SHORTENED`` says so (the raw message is kept whole for audit).

The patterns themselves are written to run in linear time as well (``tests/test_linear_time.py``); the
bound keeps the constant factor small.
"""

from __future__ import annotations

__all__ = ["MAX_TEXT_CHARS", "SHORTENED", "clip_text"]

# 32,000 characters: some 5,000 words, far more than a support message, far less than a mailbox dump.
MAX_TEXT_CHARS = 32_000
SHORTENED = "\n[…message shortened]"
_CUT_WINDOW = 200  # how far back from the bound a cut may move to fall between words


def clip_text(text: str, limit: int = MAX_TEXT_CHARS) -> str:
    """``text`` if it has at most ``limit`` characters, else its head marked with ``SHORTENED``.

    The result never has more than ``limit`` characters, so clipping twice changes nothing more. The cut
    falls on whitespace with no digit on either side, in the last ``_CUT_WINDOW`` characters of the head,
    so that a card or account number is never cut in half (half a card number is no longer recognised
    as one by ``core.agent.redaction``); with no such place, trailing digits and separators are dropped.
    """
    if len(text) <= limit:
        return text
    head = text[: max(0, limit - len(SHORTENED))]
    for cut in range(len(head) - 1, max(0, len(head) - _CUT_WINDOW), -1):
        if head[cut].isspace() and not head[cut - 1].isdigit() and not text[cut + 1].isdigit():
            head = head[:cut]
            break
    else:
        head = head.rstrip("0123456789 -\t\n")
    return head.rstrip() + SHORTENED
