"""Handle normalisation: one canonical address per handle."""

from __future__ import annotations

import pytest

from core.errors import InvalidAddress
from identity.normalize import normalize_address, normalize_email, normalize_phone


@pytest.mark.parametrize(
    ("raw", "region", "expected"),
    [
        ("+1 (555) 123-0000", "US", "+15551230000"),
        ("555-123-0000", "US", "+15551230000"),
        ("whatsapp:+44 20 7946 0958", "US", "+442079460958"),
        ("020 7946 0958", "GB", "+442079460958"),
        ("tel:+15551230000", "US", "+15551230000"),
    ],
)
def test_phones_become_e164(raw: str, region: str, expected: str) -> None:
    assert normalize_phone(raw, region) == expected


@pytest.mark.parametrize("raw", ["", "hello", "+1 555", "12"])
def test_bad_phones_are_refused(raw: str) -> None:
    with pytest.raises(InvalidAddress):
        normalize_phone(raw, "US")


def test_email_is_lowercased_but_not_gmail_folded() -> None:
    assert normalize_email(" Ana.Silva@Example.COM ") == "ana.silva@example.com"
    assert normalize_email("a.n.a+billing@gmail.com") == "a.n.a+billing@gmail.com"
    with pytest.raises(InvalidAddress):
        normalize_email("not an email")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("sms:+1 555 123 0000", "sms:+15551230000"),
        ("email:Ana@Example.com", "email:ana@example.com"),
        ("ana@example.com", "email:ana@example.com"),
        ("+15551230000", "sms:+15551230000"),
        ("telegram:42", "telegram:42"),
        ("Telegram: 0042 ", "telegram:42"),
        ("telegram:7000000000000", "telegram:7000000000000"),
        ("slack:t0123abc:u0456def", "slack:T0123ABC:U0456DEF"),
        ("console:ana", "console:ana"),
    ],
)
def test_addresses(raw: str, expected: str) -> None:
    assert str(normalize_address(raw)) == expected


@pytest.mark.parametrize("raw", ["telegram:@ana", "slack:U0456DEF", "fax:123", "nothing", "email:"])
def test_bad_addresses(raw: str) -> None:
    with pytest.raises(InvalidAddress):
        normalize_address(raw)
