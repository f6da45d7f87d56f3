"""``read_signature_fields``: the webhook's signature fields, read before (and without) the rest of the form.

It must find what ``read_form`` finds for ``timestamp``/``token``/``signature`` in an ordinary form,
multipart or urlencoded, keep nothing else, and refuse cheaply what no provider sends. And a signature
that is not ASCII is a wrong signature (403), not a server error.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from urllib.parse import urlencode

import httpx
import pytest
from pydantic import SecretStr

from channels.email_webhook import (
    MAX_SCANNED_FIELDS,
    MAX_SIGNATURE_VALUE,
    FormError,
    MailgunVerifier,
    read_form,
    read_signature_fields,
)
from core.errors import VerificationFailed

SIGNED = {"timestamp": "1767225600", "token": "a" * 50, "signature": "0f" * 32}
SIGNATURE_NAMES = set(SIGNED)
URLENCODED = "application/x-www-form-urlencoded"


def multipart(fields: Mapping[str, str], files: Mapping[str, bytes] | None = None) -> tuple[bytes, str]:
    request = httpx.Request(
        "POST",
        "http://127.0.0.1/webhooks/email/inbound",
        data=fields,
        files={name: ("part.bin", value) for name, value in (files or {}).items()},
    )
    return request.read(), request.headers["content-type"]


@pytest.mark.parametrize("mime_first", [False, True])
def test_it_finds_what_read_form_finds(mime_first: bool) -> None:
    mime = {"body-mime": "From: a@example.com\r\n\r\n" + "x" * 100_000, "recipient": "s@example.com"}
    fields = {**mime, **SIGNED} if mime_first else {**SIGNED, **mime}
    body, content_type = multipart(fields, files={"attachment-1": b"\x00" * 1000})
    expected = {k: v for k, v in read_form(body, content_type).items() if k in SIGNATURE_NAMES}
    assert read_signature_fields(body, content_type) == expected == {k: v.encode() for k, v in SIGNED.items()}
    encoded = urlencode({**fields, "timestamp": "17 67+%"}).encode()
    found = read_signature_fields(encoded, URLENCODED)
    assert found == {k: v for k, v in read_form(encoded, URLENCODED).items() if k in SIGNATURE_NAMES}
    assert found["timestamp"] == b"17 67+%"


def test_a_missing_field_is_missing_and_the_first_value_counts() -> None:
    assert read_signature_fields(b"token=t&signature=s&token=later", URLENCODED) == {
        "token": b"t",
        "signature": b"s",
    }
    assert read_signature_fields(b"timestamp&token=", URLENCODED) == {"timestamp": b"", "token": b""}


def test_a_base64_signature_part_is_decoded() -> None:
    boundary = "b0undary"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="token"\r\n'
            "Content-Transfer-Encoding: base64\r\n\r\n"
        ).encode()
        + base64.b64encode(b"the-token")
        + f"\r\n--{boundary}--\r\n".encode()
    )
    content_type = f"multipart/form-data; boundary={boundary}"
    assert (
        read_signature_fields(body, content_type) == {"token": b"the-token"} == read_form(body, content_type)
    )


def test_what_no_provider_sends_is_refused() -> None:
    many = "&".join(f"f{i}=v" for i in range(MAX_SCANNED_FIELDS + 1)) + "&" + urlencode(SIGNED)
    with pytest.raises(FormError, match="too many fields"):
        read_signature_fields(many.encode(), URLENCODED)
    body, content_type = multipart({**{f"f{i}": "v" for i in range(MAX_SCANNED_FIELDS + 1)}, **SIGNED})
    with pytest.raises(FormError, match="too many fields"):
        read_signature_fields(body, content_type)
    with pytest.raises(FormError, match="too long"):
        read_signature_fields(b"signature=" + b"0" * (MAX_SIGNATURE_VALUE + 1), URLENCODED)
    for unreadable in (None, "application/json", "multipart/form-data"):
        with pytest.raises(FormError):
            read_signature_fields(b"timestamp=1", unreadable)


def test_a_signature_that_is_not_ascii_is_a_wrong_signature_not_a_crash() -> None:
    verifier = MailgunVerifier(SecretStr("key"))
    with pytest.raises(VerificationFailed) as refused:
        verifier.verify({"timestamp": b"1", "token": b"t", "signature": "é".encode() + b"\xff"})
    assert refused.value.status == 403
