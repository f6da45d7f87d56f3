"""Telegram end to end: signed webhook → app route → inbox → worker → reply at the fake Bot API."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from core.settings import TelegramSettings
from tests.apphost import Served, app_settings, serving
from tests.fakes.telegram_api import DEFAULT_TOKEN, FakeTelegramAPI

SECRET = "wh-Secret_0123456789abcdef"


def update(update_id: int, text: str, *, user: int = 1111111) -> dict[str, Any]:
    return {
        "update_id": update_id,
        "message": {
            "message_id": update_id,
            "date": 1441645532,
            "chat": {"id": user, "type": "private", "first_name": "Ana"},
            "from": {"id": user, "is_bot": False, "first_name": "Ana"},
            "text": text,
        },
    }


@pytest.fixture
async def fake() -> AsyncIterator[FakeTelegramAPI]:
    async with FakeTelegramAPI() as server:
        yield server


@pytest.fixture
async def served(fake: FakeTelegramAPI, tmp_path: Path) -> AsyncIterator[Served]:
    telegram = TelegramSettings(
        bot_token=SecretStr(DEFAULT_TOKEN), secret_token=SecretStr(SECRET), api_base_url=fake.api_base_url
    )
    async with serving(app_settings(tmp_path / "data", telegram=telegram)) as app:
        yield app


async def post(served: Served, body: dict[str, Any] | bytes, *, secret: str | None = SECRET) -> int:
    headers = {"content-type": "application/json"}
    if secret is not None:
        headers["x-telegram-bot-api-secret-token"] = secret
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    response = await served.client.post("/webhooks/telegram", content=content, headers=headers)
    return response.status_code


async def test_a_message_gets_exactly_one_reply_even_when_delivered_twice(
    served: Served, fake: FakeTelegramAPI
) -> None:
    assert await post(served, update(501, "my router keeps dropping the wifi")) == 200
    assert await post(served, update(501, "my router keeps dropping the wifi")) == 200  # Telegram retries
    await served.hub.wait_idle(timeout=30)
    assert [m["chat"]["id"] for m in fake.sent] == [1111111]
    assert await served.inbox_rows("telegram") == 1
