"""``split_text``: a Telegram reply in parts of at most 4,096 UTF-16 code units."""

from __future__ import annotations

from collections.abc import Iterator

MAX_TEXT_LENGTH = 4096  # Bot API: 1-4096 characters after entity parsing, counted in UTF-16 code units


def split_text(text: str, limit: int = MAX_TEXT_LENGTH) -> list[str]:
    """``text`` in parts of at most ``limit`` UTF-16 code units (Telegram's measure of length).

    Cuts at the last paragraph break, else line break, else space in the second half of the window,
    else hard at the limit. The cut separator is dropped and blank parts are skipped, since Telegram
    refuses empty messages. Deterministic, so a retry skips exactly the parts already sent.
    """
    return [part for part in _chunks(text.strip(), limit) if part.strip()]


def _chunks(text: str, limit: int) -> Iterator[str]:
    while _utf16_len(text) > limit:
        window = text[: _prefix_fitting(text, limit)]
        cut, skip = _best_cut(window)
        yield window[:cut].rstrip()
        text = text[cut + skip :].lstrip("\n")
    yield text


def _best_cut(window: str) -> tuple[int, int]:
    """Where to cut ``window`` and how many separator characters to drop there."""
    floor = len(window) // 2
    for separator in ("\n\n", "\n", " "):
        at = window.rfind(separator)
        if at >= floor and at > 0:
            return at, len(separator)
    return len(window), 0


def _utf16_len(text: str) -> int:
    return len(text) + sum(1 for char in text if ord(char) > 0xFFFF)


def _prefix_fitting(text: str, limit: int) -> int:
    """The number of characters of ``text`` that fit in ``limit`` UTF-16 code units."""
    units = 0
    for index, char in enumerate(text):
        units += 2 if ord(char) > 0xFFFF else 1
        if units > limit:
            return index
    return len(text)
