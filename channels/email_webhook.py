"""The inbound-parse webhook: Mailgun-style form decoding and signature checks.

Mailgun signs each POST with ``signature`` = hex HMAC-SHA256(signing key, ``timestamp`` + ``token``),
all three sent as form fields. The signature does not cover the message itself: it proves the POST
came from the provider, and freshness plus single use stop a captured POST from being replayed.

``MailgunVerifier`` rejects a missing field (401), a wrong signature, a timestamp more than
``max_age`` seconds from now, or a token seen before (403). A token is spent as a single-use mark in
``core.ports.SharedLimits``, kept twice ``max_age`` (by then its timestamp is stale on any host): this
process's own until the composition root binds the database's, so that behind several web processes
on many hosts a token used on one is refused on every other. The mark's key is a hash of the token in
the database. A provider retry is signed afresh (a retry of the old timestamp would be stale anyway).

``read_signature_fields`` comes first: it streams the body through python-multipart's low-level parsers
and keeps only ``timestamp``, ``token`` and ``signature`` (at most 1 KiB each), skipping every other
field's data without storing it, and stops as soon as it has the three (the first value of each counts).
More than ``MAX_SCANNED_FIELDS`` fields before that is refused, so an unsigned body of many tiny parts
costs little; ``signature_fields`` runs it in a thread when the body is large. Only after verification
does ``read_form`` decode the whole ``application/x-www-form-urlencoded`` or ``multipart/form-data``
body (the adapter runs it in a thread too); values stay bytes (``body-mime`` is raw MIME).
"""

from __future__ import annotations

import asyncio
import binascii
import hashlib
import hmac
import math
import time
import urllib.parse
from collections.abc import Callable

from pydantic import SecretStr
from python_multipart import FormParser
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import Field, File, MultipartParser, QuerystringParser, parse_options_header

from channels.limits import LocalLimits
from core.errors import VerificationFailed
from core.ports import SharedLimits

MAX_AGE_SECONDS = 300.0
_MAX_TOKENS = 100_000
_URLENCODED = ("application/x-www-form-urlencoded", "application/x-url-encoded")
SIGNATURE_FIELDS = frozenset({"timestamp", "token", "signature"})
MAX_SIGNATURE_VALUE = 1024  # bytes: a timestamp, a 50-character token, a 64-digit hex signature
MAX_SCANNED_FIELDS = 1000  # fields looked at for the three before the body is refused (a form has ~20)
INLINE_SCAN_BYTES = 64 * 1024  # a larger body is scanned in a thread, off the event loop


class FormError(ValueError):
    """The body is not a form we can read."""


def _form_kind(content_type: str | None) -> tuple[str, bytes | None]:
    """The form's media type (lower case) and its multipart boundary; ``FormError`` when not a form."""
    if not content_type:
        raise FormError("no content type")
    kind_raw, params = parse_options_header(content_type)
    kind = kind_raw.decode("latin-1").lower()
    if kind not in _URLENCODED and kind != "multipart/form-data":
        raise FormError("unsupported content type")
    boundary = params.get(b"boundary")
    if kind not in _URLENCODED and not boundary:
        raise FormError("multipart body without a boundary")
    return kind, boundary


def read_form(body: bytes, content_type: str | None) -> dict[str, bytes]:
    """Decode a form body into ``{name: value}`` (the last value wins; files give their bytes)."""
    kind, boundary = _form_kind(content_type)
    urlencoded = kind in _URLENCODED
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

    try:
        parser = FormParser(
            kind, on_field, on_file, boundary=boundary, config={"MAX_MEMORY_FILE_SIZE": float("inf")}
        )
        parser.write(body)
        parser.finalize()
    except (FormParserError, ValueError) as exc:
        raise FormError("the form body could not be decoded") from exc
    return fields


class _Complete(Exception):
    """Raised from a parser callback once the three signature fields are in: the rest is not read."""


class _SignatureScan:
    """Parser callbacks that keep the signature fields only (see ``read_signature_fields``)."""

    def __init__(self) -> None:
        self.found: dict[str, bytes] = {}
        self._count = 0
        self._name = bytearray()
        self._header_name = bytearray()
        self._header_value = bytearray()
        self._headers: dict[bytes, bytes] = {}
        self._wanted: str | None = None  # the signature field being read, if the current one is one
        self._value = bytearray()
        self._encoding = b"7bit"
        self._named = False  # urlencoded: the current field's name is complete

    def _begin(self) -> None:
        self._count += 1
        if self._count > MAX_SCANNED_FIELDS:
            raise FormError("too many fields before the signature fields")
        self._wanted = None
        self._value.clear()

    def _keep(self, data: bytes, start: int, end: int) -> None:
        if self._wanted is None:
            return
        if len(self._value) + (end - start) > MAX_SIGNATURE_VALUE:
            raise FormError("a signature field is too long")
        self._value += data[start:end]

    def _want(self, name: bytes) -> None:
        text = name.decode("utf-8", errors="replace")
        self._wanted = text if text in SIGNATURE_FIELDS and text not in self.found else None

    def _end(self, value: bytes) -> None:
        if self._wanted is not None:
            self.found[self._wanted] = value
            self._wanted = None
            if len(self.found) == len(SIGNATURE_FIELDS):
                raise _Complete

    # --- multipart/form-data

    def on_part_begin(self) -> None:
        self._begin()
        self._headers = {}

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def on_header_end(self) -> None:
        self._headers[bytes(self._header_name).lower()] = bytes(self._header_value).strip(b" \t")
        self._header_name.clear()
        self._header_value.clear()

    def on_headers_finished(self) -> None:
        _, options = parse_options_header(self._headers.get(b"content-disposition"))
        name = options.get(b"name")
        if name is None:
            raise FormError("a part without a field name")
        self._want(name)
        self._encoding = self._headers.get(b"content-transfer-encoding", b"7bit").lower()

    def on_part_end(self) -> None:
        if self._wanted is None:
            return
        value = bytes(self._value)
        try:
            if self._encoding == b"base64":
                value = binascii.a2b_base64(value)
            elif self._encoding == b"quoted-printable":
                value = binascii.a2b_qp(value)
        except binascii.Error as exc:
            raise FormError("a signature field could not be decoded") from exc
        self._end(value)

    # --- application/x-www-form-urlencoded

    def on_field_start(self) -> None:
        self._begin()
        self._name.clear()
        self._named = False

    def on_field_name(self, data: bytes, start: int, end: int) -> None:
        if len(self._name) <= MAX_SIGNATURE_VALUE:  # a longer name is none of the three; stop keeping it
            self._name += data[start:end]

    def on_field_data(self, data: bytes, start: int, end: int) -> None:
        if not self._named:  # the name is complete once the data starts
            self._want(bytes(self._name))
            self._named = True
        self._keep(data, start, end)

    def on_field_end(self) -> None:
        if not self._named:  # a field without data (``timestamp`` or ``timestamp=``)
            self._want(bytes(self._name))
        if self._wanted is not None:
            self._end(urllib.parse.unquote_to_bytes(bytes(self._value).replace(b"+", b" ")))


def read_signature_fields(body: bytes, content_type: str | None) -> dict[str, bytes]:
    """``timestamp``, ``token`` and ``signature`` of a form body, read before (and without) the rest.

    Other fields' data is skipped, never stored; the scan stops once the three are in (the first value
    of each counts). ``FormError`` for a body that is not a form, a signature field over
    ``MAX_SIGNATURE_VALUE`` bytes, or more than ``MAX_SCANNED_FIELDS`` fields scanned. A field that is
    not there is simply missing from the answer.
    """
    kind, boundary = _form_kind(content_type)
    scan = _SignatureScan()
    parser: MultipartParser | QuerystringParser
    if boundary is not None and kind not in _URLENCODED:
        parser = MultipartParser(
            boundary,
            callbacks={
                "on_part_begin": scan.on_part_begin,
                "on_part_data": scan._keep,
                "on_part_end": scan.on_part_end,
                "on_header_field": scan.on_header_field,
                "on_header_value": scan.on_header_value,
                "on_header_end": scan.on_header_end,
                "on_headers_finished": scan.on_headers_finished,
            },
        )
    else:
        parser = QuerystringParser(
            callbacks={
                "on_field_start": scan.on_field_start,
                "on_field_name": scan.on_field_name,
                "on_field_data": scan.on_field_data,
                "on_field_end": scan.on_field_end,
            }
        )
    try:
        parser.write(body)
        parser.finalize()
    except _Complete:
        pass
    except (FormParserError, ValueError) as exc:  # FormError is a ValueError: kept as it is
        if isinstance(exc, FormError):
            raise
        raise FormError("the form body could not be decoded") from exc
    return scan.found


async def signature_fields(body: bytes, content_type: str | None) -> dict[str, bytes]:
    """``read_signature_fields``, in a thread when the body is large (the event loop keeps serving)."""
    if len(body) > INLINE_SCAN_BYTES:
        return await asyncio.to_thread(read_signature_fields, body, content_type)
    return read_signature_fields(body, content_type)


class MailgunVerifier:
    """Checks ``timestamp`` / ``token`` / ``signature`` (``verify``); spends tokens to refuse a replay
    (``spend``, in ``limits``: shared by every process once the database's are bound)."""

    def __init__(
        self,
        signing_key: SecretStr | None,
        *,
        max_age: float = MAX_AGE_SECONDS,
        clock: Callable[[], float] = time.time,
        limits: SharedLimits | None = None,
    ) -> None:
        self._key = signing_key.get_secret_value().encode() if signing_key is not None else b""
        self._max_age = max_age
        self._clock = clock
        self._limits: SharedLimits = limits if limits is not None else LocalLimits(max_keys=_MAX_TOKENS)

    def bind(self, limits: SharedLimits) -> None:
        """Spend tokens in ``limits`` from now on (the database's: shared by every process)."""
        self._limits = limits

    def __repr__(self) -> str:
        return f"MailgunVerifier(configured={bool(self._key)})"

    @property
    def configured(self) -> bool:
        return bool(self._key)

    def verify(self, fields: dict[str, bytes]) -> str:
        """The token of a well-signed, fresh request (``spend`` it before trusting the request), or
        ``VerificationFailed``."""
        if not self._key:
            raise VerificationFailed("no inbound signing key is configured", status=403)
        timestamp = fields.get("timestamp", b"").decode("ascii", errors="replace").strip()
        token = fields.get("token", b"").decode("ascii", errors="replace").strip()
        signature = fields.get("signature", b"").decode("ascii", errors="replace").strip().lower()
        if not (timestamp and token and signature):
            raise VerificationFailed("timestamp, token or signature missing", status=401)
        expected = hmac.new(self._key, (timestamp + token).encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected.encode(), signature.encode()):  # str: ASCII only, bytes: any
            raise VerificationFailed("wrong signature", status=403)
        try:
            signed_at = float(timestamp)
        except ValueError:
            raise VerificationFailed("unreadable timestamp", status=403) from None
        now = self._clock()
        if not math.isfinite(signed_at) or abs(now - signed_at) > self._max_age:  # nan compares false
            raise VerificationFailed("stale timestamp", status=403)
        return token

    async def spend(self, token: str) -> None:
        """Use ``token`` once: ``VerificationFailed`` (403) when any process has used it before, 503 when
        that cannot be told now (the provider retries; nothing was stored)."""
        try:
            mark = await self._limits.reserve(f"mailgun:token:{token}", limit=1, window=2 * self._max_age)
        except Exception as exc:  # the shared limits' store failed
            raise VerificationFailed("the replay check is unavailable", status=503) from exc
        if mark is None:
            raise VerificationFailed("token already used", status=403)
