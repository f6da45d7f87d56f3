"""The database is locked by another process: the webhook is refused with 503 and nothing is stored;
Telegram's retry, once the lock is gone, is accepted and answered exactly once."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from core.settings import TelegramSettings
from tests.apphost import Served, app_settings, serving
from tests.core.test_app_telegram import SECRET, deliver, update
from tests.fakes.telegram_api import DEFAULT_TOKEN, FakeTelegramAPI


@pytest.fixture
async def fake() -> AsyncIterator[FakeTelegramAPI]:
    async with FakeTelegramAPI() as server:
        yield server


@pytest.fixture
async def served(fake: FakeTelegramAPI, tmp_path: Path) -> AsyncIterator[Served]:
    telegram = TelegramSettings(
        bot_token=SecretStr(DEFAULT_TOKEN), secret_token=SecretStr(SECRET), api_base_url=fake.api_base_url
    )
    settings = app_settings(tmp_path / "data", telegram=telegram).model_copy(
        update={"database_busy_timeout": 0.3}
    )
    async with serving(settings) as app:
        yield app


async def test_a_locked_database_gets_503_and_the_retry_is_answered_once(
    served: Served, fake: FakeTelegramAPI, tmp_path: Path
) -> None:
    other = sqlite3.connect(tmp_path / "data" / "threadline.db", isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")  # another process (say, the CLI) holds the write lock
        refused = await deliver(served, update(901, "my router keeps dropping the wifi"))
        assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
        other.execute("ROLLBACK")
    finally:
        other.close()
    assert await served.inbox_rows("telegram") == 0  # nothing stored, nothing acknowledged
    metrics = (await served.client.get("/metrics")).text
    assert 'threadline_webhooks_rejected_total{channel="telegram",reason="store_unavailable"} 1.0' in metrics

    assert (await deliver(served, update(901, "my router keeps dropping the wifi"))).status_code == 200
    assert await served.hub.wait_idle(timeout=30) == {"inbox": 0, "outbox": 0, "memory": 0}
    assert [m["chat"]["id"] for m in fake.sent] == [1111111]
    assert await served.inbox_rows("telegram") == 1
