"""Dead letters: a reply that failed for good is listed, counted in /metrics, and can be retried."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from tests.apphost import Served, app_settings, serving
from tests.fakes.telegram_api import FakeTelegramAPI
from tests.platforms import telegram_settings

SECRET = "dead-letter-secret"
TOKEN = "admin-token-dead-letters"
AUTH = {"authorization": f"Bearer {TOKEN}"}


@pytest.fixture
async def fake() -> AsyncIterator[FakeTelegramAPI]:
    async with FakeTelegramAPI() as server:
        yield server


@pytest.fixture
async def served(fake: FakeTelegramAPI, tmp_path: Path) -> AsyncIterator[Served]:
    telegram = telegram_settings(fake, secret=SECRET)
    settings = app_settings(tmp_path / "data", telegram=telegram, admin_token=SecretStr(TOKEN))
    async with serving(settings) as app:
        yield app


async def message(served: Served, update_id: int, text: str) -> None:
    body = {
        "update_id": update_id,
        "message": {
            "message_id": update_id,
            "date": 1_764_000_000,
            "chat": {"id": 4242, "type": "private", "first_name": "Ana"},
            "from": {"id": 4242, "is_bot": False, "first_name": "Ana"},
            "text": text,
        },
    }
    response = await served.client.post(
        "/webhooks/telegram",
        content=json.dumps(body),
        headers={"content-type": "application/json", "x-telegram-bot-api-secret-token": SECRET},
    )
    assert response.status_code == 200
    await served.hub.wait_idle(timeout=60)


async def dead_letter_gauge(served: Served) -> float:
    text = (await served.client.get("/metrics")).text
    [line] = [ln for ln in text.splitlines() if ln.startswith("threadline_dead_letters ")]
    return float(line.split()[1])


async def test_a_failed_reply_is_listed_counted_and_can_be_sent_again(
    served: Served, fake: FakeTelegramAPI
) -> None:
    fake.push_blocked()
    await message(served, 1, "hello, is anyone there?")
    assert fake.sent == []

    listed = (await served.client.get("/admin/dead-letters", headers=AUTH)).json()["dead_letters"]
    [dead] = listed
    assert dead["channel"] == "telegram" and dead["attempts"] == 1 and dead["retryable"] is True
    assert "blocked" in dead["last_error"]
    assert await dead_letter_gauge(served) == 1

    retried = await served.client.post(f"/admin/dead-letters/{dead['id']}/retry", headers=AUTH, json={})
    assert retried.status_code == 200 and retried.json()["attempts"] == 0
    await served.hub.wait_idle(timeout=60)

    assert [m["chat"]["id"] for m in fake.sent] == [4242]
    assert (await served.client.get("/admin/dead-letters", headers=AUTH)).json()["dead_letters"] == []
    assert await dead_letter_gauge(served) == 0
    again = await served.client.post(f"/admin/dead-letters/{dead['id']}/retry", headers=AUTH, json={})
    assert again.status_code == 409 and "is sent" in again.json()["detail"]


async def test_retrying_needs_the_token_and_an_existing_failed_reply(served: Served) -> None:
    assert (await served.client.post("/admin/dead-letters/1/retry", json={})).status_code == 401
    missing = await served.client.post("/admin/dead-letters/999/retry", headers=AUTH, json={})
    assert missing.status_code == 404
