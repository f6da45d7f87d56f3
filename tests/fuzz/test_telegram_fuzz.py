"""Fuzzing the Telegram webhook with mutated Bot API updates, with and without the secret token."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from hypothesis import given
from hypothesis import strategies as st
from pydantic import SecretStr

from core.settings import TelegramSettings
from tests.apphost import Served, app_settings, serving
from tests.fakes.telegram_api import DEFAULT_TOKEN, FakeTelegramAPI
from tests.fuzz.conftest import budget, clean_environment
from tests.fuzz.mutators import content_type, header_value, mutated_json
from tests.fuzz.probe import FIXTURES, probe

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.serial]

PATH = "/webhooks/telegram"
SECRET = "fuzz-telegram-secret_0123456789"
SECRET_HEADER = "x-telegram-bot-api-secret-token"
SEEDS: list[Any] = [json.loads(p.read_bytes()) for p in sorted((FIXTURES / "telegram").glob("*.json"))]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def served(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Served]:
    folder = tmp_path_factory.mktemp("telegram-fuzz")
    async with FakeTelegramAPI() as fake:
        telegram = TelegramSettings(
            bot_token=SecretStr(DEFAULT_TOKEN), secret_token=SecretStr(SECRET), api_base_url=fake.api_base_url
        )
        with clean_environment(folder):
            settings = app_settings(folder / "data", telegram=telegram)
        async with serving(settings) as app:
            yield app


@budget(250)
@given(
    body=mutated_json(SEEDS),
    ctype=content_type("application/json"),
    secret=st.one_of(
        st.just(SECRET.encode()),
        st.just(SECRET.encode()),
        st.just(SECRET.encode()),
        st.none(),
        st.sampled_from([b"", SECRET.upper().encode(), SECRET.encode()[:-1], SECRET.encode() + b"\xff"]),
        header_value,
    ),
)
async def test_telegram_updates_never_fail_and_never_store_what_they_refuse(
    served: Served, body: bytes, ctype: bytes, secret: bytes | None
) -> None:
    headers: dict[str, bytes] = {"content-type": ctype}
    if secret is not None:
        headers[SECRET_HEADER] = secret
    authentic = secret == SECRET.encode()
    await probe(served, "telegram /webhook", PATH, content=body, headers=headers, authentic=authentic)
