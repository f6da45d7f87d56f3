"""Fuzzing the Slack Events API route with mutated fixtures, signed and unsigned, through the real app."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from hypothesis import given
from hypothesis import strategies as st
from pydantic import SecretStr

from core.settings import SlackSettings
from tests.apphost import Served, app_settings, serving
from tests.fakes.slack_api import DEFAULT_TOKEN, FakeSlackAPI
from tests.fuzz.conftest import budget, clean_environment
from tests.fuzz.mutators import content_type, header_value, mutated_json
from tests.fuzz.probe import FIXTURES, probe

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.serial]

PATH = "/webhooks/slack/events"
SECRET = "fuzz-slack-signing-secret-0123456789"
SEEDS: list[Any] = [json.loads(p.read_bytes()) for p in sorted((FIXTURES / "slack").glob("*.json"))]
# what Slack sends as x-slack-retry-num, and latin-1 look-alikes that str.isdigit() also accepts
RETRY_NUMBERS = st.sampled_from([b"1", b"2", b"3", b"01", b"\xb2", b"\xb3", b"\xb9", b"-1", b"", b"9" * 5000])
SIGNING = ["valid", "valid", "valid", "valid", "valid", "none", "stale", "future", "wrong_secret", "garbage"]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def served(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Served]:
    folder = tmp_path_factory.mktemp("slack-fuzz")
    async with FakeSlackAPI(token=DEFAULT_TOKEN, team_id="T123ABC456", bot_user_id="UBOT0001") as fake:
        slack = SlackSettings(
            bot_token=SecretStr(DEFAULT_TOKEN), signing_secret=SecretStr(SECRET), api_base_url=fake.api_url
        )
        with clean_environment(folder):
            settings = app_settings(folder / "data", slack=slack)
        async with serving(settings) as app:
            yield app


def signature(body: bytes, how: str, garbage: tuple[bytes, bytes]) -> tuple[dict[str, bytes], bool]:
    """The Slack signature headers for ``how``, and whether the request is then authentic."""
    if how == "none":
        return {}, False
    if how == "garbage":
        return {"x-slack-request-timestamp": garbage[0], "x-slack-signature": garbage[1]}, False
    now = int(time.time())
    stamp = {"stale": now - 600, "future": now + 600}.get(how, now)
    secret = b"not-the-secret" if how == "wrong_secret" else SECRET.encode()
    digest = hmac.new(secret, b"v0:%d:" % stamp + body, hashlib.sha256).hexdigest()
    headers = {"x-slack-request-timestamp": str(stamp).encode(), "x-slack-signature": f"v0={digest}".encode()}
    return headers, how == "valid"


@budget(250)
@given(
    body=mutated_json(SEEDS),
    ctype=content_type("application/json"),
    how=st.sampled_from(SIGNING),
    garbage=st.tuples(header_value, header_value),
    retry=st.one_of(st.none(), st.tuples(st.one_of(RETRY_NUMBERS, header_value), header_value)),
)
async def test_slack_events_never_fail_and_never_store_what_they_refuse(
    served: Served,
    body: bytes,
    ctype: bytes,
    how: str,
    garbage: tuple[bytes, bytes],
    retry: tuple[bytes, bytes] | None,
) -> None:
    headers, authentic = signature(body, how, garbage)
    headers["content-type"] = ctype
    if retry is not None:  # Slack's retry headers are not covered by the signature
        headers["x-slack-retry-num"], headers["x-slack-retry-reason"] = retry
    await probe(served, "slack /events", PATH, content=body, headers=headers, authentic=authentic)
