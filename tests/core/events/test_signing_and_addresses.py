"""The pieces under the event lane: the Standard Webhooks signature, the SSRF address rules, the pinned
request, and the secret's shape."""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
from datetime import UTC, datetime

import pytest

from core.events.addresses import RefusedURL, check, checked_url, is_public
from core.events.record import EVENT_TYPES, webhook_id
from core.events.sender import pinned
from core.events.signing import new_secret, signed_headers

# the test vector published with the Standard Webhooks specification (and its reference libraries)
SPEC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SPEC_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
SPEC_TIMESTAMP = 1614265330
SPEC_BODY = b'{"test": 2432232314}'
SPEC_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_the_signature_matches_the_specifications_test_vector() -> None:
    at = datetime.fromtimestamp(SPEC_TIMESTAMP, UTC)
    headers = signed_headers(SPEC_SECRET, SPEC_ID, at, SPEC_BODY)
    assert headers == {
        "webhook-id": SPEC_ID,
        "webhook-timestamp": str(SPEC_TIMESTAMP),
        "webhook-signature": SPEC_SIGNATURE,
    }
    # and by hand, as the spec defines it: HMAC-SHA256 over "id.timestamp.body" with the decoded secret
    key = base64.b64decode(SPEC_SECRET.removeprefix("whsec_"))
    mac = hmac.new(key, f"{SPEC_ID}.{SPEC_TIMESTAMP}.".encode() + SPEC_BODY, hashlib.sha256).digest()
    assert headers["webhook-signature"] == "v1," + base64.b64encode(mac).decode()


def test_secrets_and_ids_are_fresh_and_well_formed() -> None:
    secrets = {new_secret() for _ in range(50)}
    assert len(secrets) == 50
    for secret in secrets:
        assert secret.startswith("whsec_")
        assert len(base64.b64decode(secret.removeprefix("whsec_"))) == 32
    ids = {webhook_id() for _ in range(50)}
    assert len(ids) == 50 and all(i.startswith("msg_") and len(i) <= 64 for i in ids)
    assert len(set(EVENT_TYPES)) == len(EVENT_TYPES) and all(len(t) <= 32 for t in EVENT_TYPES)


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "127.5.5.5",
        "10.0.0.1",
        "172.16.3.4",
        "192.168.1.1",
        "169.254.169.254",
        "100.64.0.1",
        "0.0.0.0",
        "224.0.0.251",
        "240.0.0.1",
        "255.255.255.255",
        "::1",
        "::",
        "fe80::1",
        "fc00::1",
        "ff02::1",
        "::ffff:127.0.0.1",
        "::ffff:10.0.0.1",
        "2001:db8::1",
    ],
)
def test_addresses_that_are_not_public_are_refused(address: str) -> None:
    assert not is_public(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", ["93.184.216.34", "8.8.8.8", "2606:4700::1111", "::ffff:93.184.216.34"])
def test_public_addresses_pass(address: str) -> None:
    assert is_public(ipaddress.ip_address(address))


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://93.184.216.34/", "https"),
        ("ftp://93.184.216.34/", "https"),
        ("https://u:p@93.184.216.34/", "credentials"),
        ("https:///x", "no host"),
        ("https://93.184.216.34/x#frag", "fragment"),
        ("https://93.184.216.34:99999/", "not valid"),
        ("https://93.184.216.34/ x", "whitespace"),
        ("https://93.184.216.34/" + "a" * 2000, "longer"),
    ],
)
def test_malformed_receiver_urls_are_refused(url: str, why: str) -> None:
    with pytest.raises(RefusedURL, match=why):
        checked_url(url, allow_private=False)


async def test_a_name_is_checked_by_what_it_resolves_to() -> None:
    with pytest.raises(RefusedURL, match="loopback"):
        await check("https://localhost/hook", allow_private=False)
    assert ipaddress.ip_address("127.0.0.1") in await check("http://localhost:8080/hook", allow_private=True)
    assert await check("https://93.184.216.34/hook", allow_private=False) == [
        ipaddress.ip_address("93.184.216.34")
    ]


def test_the_request_goes_to_the_checked_address_with_the_name_kept() -> None:
    url, headers, extensions = pinned(
        "https://hooks.example.com:8443/in?x=1", ipaddress.ip_address("93.184.216.34")
    )
    assert url == "https://93.184.216.34:8443/in?x=1"
    assert headers == {"host": "hooks.example.com:8443"}
    assert extensions == {"sni_hostname": "hooks.example.com"}  # the certificate is checked against the name
    url, headers, extensions = pinned("http://localhost/in", ipaddress.ip_address("::1"))
    assert url == "http://[::1]/in" and headers == {"host": "localhost"} and extensions == {}
