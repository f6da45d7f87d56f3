"""The inbound-parse webhook: Mailgun-style form decoding and signature checks.

Mailgun signs each POST with ``signature`` = hex HMAC-SHA256(signing key, ``timestamp`` + ``token``),
all three sent as form fields. The signature does not cover the message itself: it proves the POST
came from the provider, and freshness plus single use stop a captured POST from being replayed.

``MailgunVerifier`` rejects a missing field (401), a wrong signature, a timestamp more than
``max_age`` seconds from now, or a token seen before (403). Seen tokens are kept in an in-memory
TTL cache (until their timestamp is stale anyway), so replay protection is per process: behind several
web processes a replay to another process is stopped only by the inbox's unique Message-ID key.
A provider retry is signed afresh (a retry of the old timestamp would be stale anyway).

``read_form`` decodes ``application/x-www-form-urlencoded`` and ``multipart/form-data`` bodies with
python-multipart; values stay bytes (``body-mime`` is raw MIME).
"""

from __future__ import annotations

import hashlib
import hmac
import math
import time
import urllib.parse
from collections import OrderedDict
from collections.abc import Callable

from pydantic import SecretStr
from python_multipart import FormParser
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import Field, File, parse_options_header

from core.errors import VerificationFailed

MAX_AGE_SECONDS = 300.0
_MAX_TOKENS = 100_000
_URLENCODED = ("application/x-www-form-urlencoded", "application/x-url-encoded")


class FormError(ValueError):
    """The body is not a form we can read."""


def read_form(body: bytes, content_type: str | None) -> dict[str, bytes]:
    """Decode a form body into ``{name: value}`` (the last value wins; files give their bytes)."""
    if not content_type:
        raise FormError("no content type")
    kind_raw, params = parse_options_header(content_type)
    kind = kind_raw.decode("latin-1").lower()
    urlencoded = kind in _URLENCODED
    if not urlencoded and kind != "multipart/form-data":
        raise FormError("unsupported content type")
    fields: dict[str, bytes] = {}

    def on_field(item: Field) -> None:
        if item.field_name is None:
            return
        value = item.value or b""
        if urlencoded:
            value = urllib.parse.unquote_to_bytes(value.replace(b"+", b" "))
        fields[item.field_name.decode("utf-8", errors="replace")] = value

    def on_file(item: File) -> None:
        if item.field_name is not None:
            item.file_object.seek(0)
            fields[item.field_name.decode("utf-8", errors="replace")] = item.file_object.read()

    boundary = params.get(b"boundary")
    if not urlencoded and not boundary:
        raise FormError("multipart body without a boundary")
    try:
        parser = FormParser(
            kind, on_field, on_file, boundary=boundary, config={"MAX_MEMORY_FILE_SIZE": float("inf")}
        )
        parser.write(body)
        parser.finalize()
    except (FormParserError, ValueError) as exc:
        raise FormError("the form body could not be decoded") from exc
    return fields


class MailgunVerifier:
    """Checks ``timestamp`` / ``token`` / ``signature``; remembers tokens to refuse a replay."""

    def __init__(
        self,
        signing_key: SecretStr | None,
        *,
        max_age: float = MAX_AGE_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._key = signing_key.get_secret_value().encode() if signing_key is not None else b""
        self._max_age = max_age
        self._clock = clock
        self._seen: OrderedDict[str, float] = OrderedDict()  # token -> forget after (clock time)

    def __repr__(self) -> str:
        return f"MailgunVerifier(configured={bool(self._key)})"

    @property
    def configured(self) -> bool:
        return bool(self._key)

    def verify(self, fields: dict[str, bytes]) -> None:
        if not self._key:
            raise VerificationFailed("no inbound signing key is configured", status=403)
        timestamp = fields.get("timestamp", b"").decode("ascii", errors="replace").strip()
        token = fields.get("token", b"").decode("ascii", errors="replace").strip()
        signature = fields.get("signature", b"").decode("ascii", errors="replace").strip().lower()
        if not (timestamp and token and signature):
            raise VerificationFailed("timestamp, token or signature missing", status=401)
        expected = hmac.new(self._key, (timestamp + token).encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, signature):
            raise VerificationFailed("wrong signature", status=403)
        try:
            signed_at = float(timestamp)
        except ValueError:
            raise VerificationFailed("unreadable timestamp", status=403) from None
        now = self._clock()
        if not math.isfinite(signed_at) or abs(now - signed_at) > self._max_age:  # nan compares false
            raise VerificationFailed("stale timestamp", status=403)
        self._forget_expired(now)
        if token in self._seen:
            raise VerificationFailed("token already used", status=403)
        self._seen[token] = signed_at + self._max_age
        while len(self._seen) > _MAX_TOKENS:
            self._seen.popitem(last=False)

    def _forget_expired(self, now: float) -> None:
        # Tokens arrive in roughly timestamp order: drop from the oldest end while they are stale.
        while self._seen:
            token, until = next(iter(self._seen.items()))
            if until >= now:
                break
            del self._seen[token]
