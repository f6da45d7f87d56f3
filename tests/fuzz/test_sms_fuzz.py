"""Fuzzing Twilio's inbound-SMS and status-callback webhooks with mutated forms, signed and unsigned.

A mutated form is signed the way Twilio signs (the SDK's ``RequestValidator.compute_signature`` over the
public URL with its query string, plus every parsed parameter), so the parser behind the check is what
gets exercised; a body that does not parse as a form cannot be signed and counts as unauthenticated.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from hypothesis import given
from hypothesis import strategies as st
from pydantic import SecretStr
from twilio.request_validator import RequestValidator  # type: ignore[import-untyped]

from channels.sms import INBOUND_PATH, STATUS_PATH
from core.settings import TwilioSettings
from tests.apphost import Served, app_settings, serving
from tests.fakes.twilio_api import FakeTwilioAPI
from tests.fuzz.conftest import budget, clean_environment
from tests.fuzz.mutators import content_type, encode_form, header_value, mutated_bytes, mutated_form
from tests.fuzz.probe import FIXTURES, probe

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.serial]

ACCOUNT_SID = "AC" + "9" * 32
AUTH_TOKEN = "fuzz-twilio-auth-token-77"
PUBLIC = "https://bot.example.com"
FORM = "application/x-www-form-urlencoded"


def _pairs(path: Path) -> list[tuple[str, str]]:
    return urllib.parse.parse_qsl(path.read_text(encoding="utf-8").strip(), keep_blank_values=True)


SEEDS = [_pairs(p) for p in sorted((FIXTURES / "sms").glob("*.form"))]
NAMES = sorted({key for seed in SEEDS for key, _ in seed} | {"MediaUrl1", "MediaUrl7", "OptOutType"})
QUERIES = st.one_of(
    st.just(""),
    st.just(""),
    st.lists(st.tuples(st.sampled_from(["bodySHA256", "a", "x"]), st.text(max_size=10)), max_size=2).map(
        urllib.parse.urlencode
    ),
)


class _Form(dict[str, str]):
    """A parsed form with every value of a repeated name, as ``RequestValidator`` asks via ``getall``."""

    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        super().__init__(pairs)
        self._all: dict[str, list[str]] = {}
        for key, value in pairs:
            self._all.setdefault(key, []).append(value)

    def getall(self, key: str) -> list[str]:
        return self._all[key]


def readable(body: bytes) -> _Form | None:
    """The form as the adapter reads it (strict), or ``None`` when it cannot be read (nor signed)."""
    try:
        pairs = urllib.parse.parse_qsl(
            body.decode("utf-8"), keep_blank_values=True, strict_parsing=True, errors="strict"
        )
    except ValueError:
        return None
    return _Form(pairs)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def served(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Served]:
    folder = tmp_path_factory.mktemp("sms-fuzz")
    async with FakeTwilioAPI(account_sid=ACCOUNT_SID, auth_token=AUTH_TOKEN) as fake:
        twilio = TwilioSettings(
            account_sid=ACCOUNT_SID,
            auth_token=SecretStr(AUTH_TOKEN),
            from_number="+15558675310",
            api_base_url=fake.url,
        )
        with clean_environment(folder):
            settings = app_settings(folder / "data", twilio=twilio, public_base_url=PUBLIC)
        async with serving(settings) as app:
            yield app


@st.composite
def twilio_body(draw: st.DrawFn) -> bytes:
    return draw(mutated_bytes(encode_form(draw(mutated_form(SEEDS, NAMES)))))


@budget(200)
@given(
    path=st.sampled_from([INBOUND_PATH, STATUS_PATH]),
    query=QUERIES,
    body=twilio_body(),
    ctype=content_type(FORM),
    how=st.sampled_from(["valid", "valid", "valid", "valid", "none", "wrong_token", "wrong_url", "garbage"]),
    garbage=header_value,
)
async def test_twilio_webhooks_never_fail_and_never_store_what_they_refuse(
    served: Served, path: str, query: str, body: bytes, ctype: bytes, how: str, garbage: bytes
) -> None:
    form = readable(body)
    url = PUBLIC + path + (f"?{query}" if query else "")
    headers: dict[str, bytes] = {"content-type": ctype}
    if how == "garbage":
        headers["x-twilio-signature"] = garbage
    elif how != "none":
        token = "not-the-token" if how == "wrong_token" else AUTH_TOKEN
        signed_url = "https://elsewhere.example.com" + path if how == "wrong_url" else url
        signature: str = RequestValidator(token).compute_signature(signed_url, form or {})
        headers["x-twilio-signature"] = signature.encode()
    authentic = how == "valid" and form is not None
    target = "twilio /sms" if path == INBOUND_PATH else "twilio /status"
    await probe(
        served,
        target,
        path + (f"?{query}" if query else ""),
        content=body,
        headers=headers,
        authentic=authentic,
    )
