"""A Twilio webhook's form body, read the way the SDK's ``RequestValidator`` reads it."""

from __future__ import annotations

import urllib.parse

_FORM_TYPE = "application/x-www-form-urlencoded"
_MAX_FIELDS = 1000


class _Params(dict[str, str]):
    """A form body as the SDK's validator reads it: keys in order, ``getall`` for repeated names."""

    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        super().__init__()
        self._all: dict[str, list[str]] = {}
        for key, value in pairs:
            self.setdefault(key, value)
            self._all.setdefault(key, []).append(value)

    def getall(self, key: str) -> list[str]:
        return list(self._all[key])


def _parse_form(body: bytes) -> _Params:
    """Parse an ``application/x-www-form-urlencoded`` body; ``ValueError`` (incl. Unicode) when it is not."""
    text = body.decode("utf-8")
    pairs = urllib.parse.parse_qsl(
        text, keep_blank_values=True, strict_parsing=True, errors="strict", max_num_fields=_MAX_FIELDS
    )
    return _Params(pairs)
