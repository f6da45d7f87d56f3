"""``serve --role`` through the real app (issue 13): a ``web`` process and a ``worker`` process on one
PostgreSQL database, the platform's webhook to the first, the reply from the second."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from core.store.models import OutboxRow
from tests.apphost import app_settings, serving
from tests.fakes.telegram_api import FakeTelegramAPI
from tests.platforms import post_telegram_message, telegram_settings

SECRET = "roles-test-telegram-secret"


def message(update_id: int, text: str, user: int = 4242) -> dict[str, object]:
    return {
        "message_id": update_id,
        "date": 1_764_000_000,
        "chat": {"id": user, "type": "private", "first_name": "Ana"},
        "from": {"id": user, "is_bot": False, "first_name": "Ana"},
        "text": text,
    }


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_web_takes_in_and_worker_answers(database_url: str, tmp_path: Path) -> None:
    async with FakeTelegramAPI() as telegram:

        def settings(name: str) -> Any:
            return app_settings(
                tmp_path / name,
                database_url=database_url,
                telegram=telegram_settings(telegram, secret=SECRET),
            )

        async with (
            serving(settings("web"), role="web") as web,
            serving(settings("worker"), role="worker") as worker,
        ):
            # the worker process answers no webhook
            refused = await worker.client.post("/webhooks/telegram", content=b"{}")
            assert refused.status_code == 404
            for update_id in (1, 2):
                await post_telegram_message(
                    web.client,
                    secret=SECRET,
                    update_id=update_id,
                    message=message(update_id, "my order is late"),
                )
            for _ in range(400):
                if len(telegram.sent) >= 2:
                    break
                await asyncio.sleep(0.05)
            assert (
                not web.hub.worker.lanes.busy and web.hub._listener is None
            )  # the web process runs no lanes
            assert (await web.client.get("/readyz")).status_code == 200
            assert (await worker.client.get("/readyz")).status_code == 200
            async with worker.hub.db.read() as session:
                assert await session.scalar(select(func.count()).select_from(OutboxRow)) == 2
            assert [m["chat"]["id"] for m in telegram.sent] == [4242, 4242]
