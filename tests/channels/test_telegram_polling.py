"""Telegram long polling (``channels.telegram.polling``): the app polls the fake Bot API's ``getUpdates``.

The fake is as hostile as Telegram: it returns an update again until an offset confirms it, answers 409
while a webhook is set (and to a second poller), and fails when told to (502, 409). The app runs under
uvicorn (``tests.apphost``); the poller alone is driven where a test needs to stop it mid-commit.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from typer.testing import CliRunner

from channels.telegram import TelegramAdapter, TelegramPoller
from core.cli import app as cli
from core.errors import ConfigError
from core.messages import InboundMessage
from core.pipeline.inbox import Accepted
from core.settings import Settings, TelegramSettings, load_settings
from core.store.db import Database
from core.store.leases import NamedLeases
from identity.normalize import normalize_address
from tests.apphost import app_settings, serving
from tests.fakes.telegram_api import DEFAULT_TOKEN, FakeTelegramAPI

BOT_ID = DEFAULT_TOKEN.split(":", 1)[0]


def polling(fake: FakeTelegramAPI, *, timeout: int = 1, token: str = DEFAULT_TOKEN) -> TelegramSettings:
    """Telegram in polling mode through ``fake``: no secret token, no public URL."""
    return TelegramSettings(
        bot_token=SecretStr(token), api_base_url=fake.api_base_url, mode="polling", poll_timeout=timeout
    )


async def until(check: Callable[[], bool], *, what: str, seconds: float = 30.0) -> None:
    for _ in range(int(seconds / 0.05)):
        if check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def replies_per_chat(fake: FakeTelegramAPI) -> Counter[int]:
    return Counter(int(m["chat"]["id"]) for m in fake.sent)


# ----- settings and set-up -----------------------------------------------------------------------


def test_polling_needs_no_secret_token_and_no_public_url(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path, telegram=TelegramSettings(bot_token=SecretStr(DEFAULT_TOKEN), mode="polling")
    )
    settings.check()
    assert settings.enabled_channels() == ["telegram"]
    webhook = Settings(data_dir=tmp_path, telegram=TelegramSettings(bot_token=SecretStr(DEFAULT_TOKEN)))
    with pytest.raises(ConfigError) as refused:  # the webhook mode still demands its secret
        webhook.check()
    assert refused.value.setting == "THREADLINE_TELEGRAM__SECRET_TOKEN"


def test_a_bogus_mode_refuses_to_start_naming_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("THREADLINE_TELEGRAM__BOT_TOKEN", DEFAULT_TOKEN)
    monkeypatch.setenv("THREADLINE_TELEGRAM__MODE", "bogus")
    with pytest.raises(ConfigError) as refused:
        load_settings()
    assert "THREADLINE_TELEGRAM__MODE" in str(refused.value)


def test_setup_telegram_in_polling_mode_deletes_the_webhook_and_keeps_pending_updates(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    with FakeTelegramAPI() as fake:
        monkeypatch.setenv("THREADLINE_DATA_DIR", str(tmp_path))
        monkeypatch.setenv("THREADLINE_TELEGRAM__BOT_TOKEN", DEFAULT_TOKEN)
        monkeypatch.setenv("THREADLINE_TELEGRAM__API_BASE_URL", fake.api_base_url)
        monkeypatch.setenv("THREADLINE_TELEGRAM__MODE", "polling")
        monkeypatch.delenv("THREADLINE_PUBLIC_BASE_URL", raising=False)
        fake._webhook = {"url": "https://old.example.com/webhooks/telegram"}  # set by an earlier set-up
        fake.queue_message(4242, "still waiting")
        result = CliRunner().invoke(cli, ["setup", "telegram"])
        assert result.exit_code == 0, result.output
        assert [call["method"] for call in fake.calls if call["method"].lower() == "setwebhook"] == []
        [delete] = fake.calls_to("deleteWebhook")
        assert delete.get("drop_pending_updates") is False
        assert "webhook is removed" in result.stdout and "1 pending update" in result.stdout
        assert DEFAULT_TOKEN not in result.output
        assert len(fake.pending_updates) == 1


# ----- through the app ---------------------------------------------------------------------------


async def test_polled_messages_are_answered_once_through_a_502_and_a_409(tmp_path: Path) -> None:
    with FakeTelegramAPI() as fake:
        fake.push_bad_gateway()  # the first getUpdates fails with a 502
        fake.push_conflict()  # the second with a 409 (another poller)
        ids = [fake.queue_message(900_000 + n, f"question {n}") for n in range(3)]
        fake.queue_update(
            {"edited_message": {"message_id": 9, "date": 1, "chat": {"id": 1, "type": "private"}}}
        )
        async with serving(app_settings(tmp_path, telegram=polling(fake))) as served:
            await until(lambda: len(fake.sent) >= 3, what="three replies")
            await until(lambda: set(ids) <= set(fake.confirmed), what="the updates confirmed")
            assert await served.inbox_rows("telegram") == 3
            # the webhook door is shut: polling mode has no secret to check a caller with
            response = await served.client.post(
                "/webhooks/telegram", json={"update_id": 1}, headers={"x-telegram-bot-api-secret-token": "x"}
            )
            assert response.status_code == 404
        assert replies_per_chat(fake) == Counter({900_000: 1, 900_001: 1, 900_002: 1})
        polls = fake.calls_to("getUpdates")
        assert len(polls) >= 3  # 502, 409, then the batch
        assert all(p["allowed_updates"] == ["message", "callback_query"] for p in polls)
        assert all(p["timeout"] == 1 for p in polls)
        assert not fake.pending_updates  # the edited message was never delivered (not an allowed type)


async def test_redelivered_updates_get_no_second_reply(tmp_path: Path) -> None:
    with FakeTelegramAPI() as fake:
        first = fake.queue_message(910_001, "my parcel is late")
        async with serving(app_settings(tmp_path, telegram=polling(fake))) as served:
            await until(lambda: first in fake.confirmed and len(fake.sent) == 1, what="the first reply")
            # Telegram hands the committed update out again (its confirmation was lost), and a new one
            fake.queue_update({"update_id": first, "message": _message(910_001, "my parcel is late")})
            second = fake.queue_message(910_002, "and mine")
            await until(
                lambda: fake.confirmed.count(first) == 2 and second in fake.confirmed, what="both confirmed"
            )
            await until(lambda: len(fake.sent) >= 2, what="the second reply")
            await served.hub.wait_idle(timeout=30)
            assert await served.inbox_rows("telegram") == 2
        assert replies_per_chat(fake) == Counter({910_001: 1, 910_002: 1})
        assert fake.confirmed.count(first) == 2  # delivered twice, confirmed twice, answered once


async def test_an_unparseable_update_is_skipped_not_retried_forever(tmp_path: Path) -> None:
    with FakeTelegramAPI() as fake:
        bad = fake.queue_update({"message": {"message_id": 1, "date": 1, "chat": "not a chat", "text": "x"}})
        good = fake.queue_message(920_001, "hello")
        async with serving(app_settings(tmp_path, telegram=polling(fake))) as served:
            await until(lambda: {bad, good} <= set(fake.confirmed), what="both confirmed")
            await until(lambda: len(fake.sent) == 1, what="the reply")
            assert await served.inbox_rows("telegram") == 1
        assert replies_per_chat(fake) == Counter({920_001: 1})


def _message(user: int, text: str) -> dict[str, Any]:
    return {
        "message_id": 1,
        "date": 1_764_000_000,
        "chat": {"id": user, "type": "private", "first_name": "Customer"},
        "from": {"id": user, "is_bot": False, "first_name": "Customer"},
        "text": text,
    }


# ----- the poller itself ---------------------------------------------------------------------------


def _adapter(settings: TelegramSettings) -> TelegramAdapter:
    return TelegramAdapter(settings, normalize=normalize_address)


class Commits:
    """An ``accept`` that records messages by provider id, optionally held at an event."""

    def __init__(self, hold: asyncio.Event | None = None) -> None:
        self.hold = hold
        self.started = asyncio.Event()
        self.ids: list[str] = []

    async def __call__(self, message: InboundMessage) -> Accepted:
        self.started.set()
        if self.hold is not None:
            await self.hold.wait()
        self.ids.append(message.provider_message_id)
        return Accepted(inbox_id=len(self.ids), duplicate=False)


async def test_stop_ends_the_long_poll_at_once() -> None:
    with FakeTelegramAPI() as fake:
        adapter = _adapter(polling(fake, timeout=60))
        await adapter.start_inbound(Commits())
        await until(lambda: len(fake.calls_to("getUpdates")) == 1, what="the long poll")
        # a 60 s long poll is in flight: stopping cancels it instead of waiting it out
        await asyncio.wait_for(adapter.stop_inbound(), timeout=15)
        await adapter.aclose()


async def test_stop_during_a_commit_confirms_nothing_and_a_restart_gets_the_update_again() -> None:
    with FakeTelegramAPI() as fake:
        update_id = fake.queue_message(930_001, "hello")
        held = Commits(hold=asyncio.Event())  # never released: the commit is cut by the stop
        adapter = _adapter(polling(fake))
        await adapter.start_inbound(held)
        await asyncio.wait_for(held.started.wait(), timeout=15)
        await adapter.stop_inbound()
        assert fake.confirmed == [] and held.ids == []
        commits = Commits()
        await adapter.start_inbound(commits)  # a restart: the update comes again, now it is committed
        await until(lambda: update_id in fake.confirmed, what="the confirmation")
        await adapter.aclose()
        assert commits.ids == [f"{BOT_ID}:{update_id}"]


async def test_a_failed_commit_is_not_confirmed_and_is_fetched_again() -> None:
    from sqlalchemy.exc import OperationalError

    with FakeTelegramAPI() as fake:
        update_id = fake.queue_message(940_001, "hello")
        attempts: list[str] = []

        async def flaky(message: InboundMessage) -> Accepted:
            attempts.append(message.provider_message_id)
            if len(attempts) == 1:
                raise OperationalError("INSERT", {}, Exception("database is locked"))
            return Accepted(inbox_id=1, duplicate=False)

        adapter = _adapter(polling(fake))
        await adapter.start_inbound(flaky)
        await until(lambda: update_id in fake.confirmed, what="the confirmation")
        await adapter.aclose()
        assert attempts == [f"{BOT_ID}:{update_id}"] * 2


async def test_a_refused_token_stops_polling_naming_the_setting(caplog: pytest.LogCaptureFixture) -> None:
    with FakeTelegramAPI(token="123456789:AAHanother-token-than-ours-0000000") as fake:
        poller = TelegramPoller(
            url=f"{fake.api_base_url}{DEFAULT_TOKEN}/getUpdates",
            token=DEFAULT_TOKEN,
            bot_id=BOT_ID,
            timeout=1,
            parse=_adapter(polling(fake)).parse_update,
        )
        await poller.start(Commits())
        await until(lambda: not poller.running, what="the poller to give up")
        await poller.stop()
        assert poller.refused is not None and "THREADLINE_TELEGRAM__BOT_TOKEN" in poller.refused
        assert DEFAULT_TOKEN not in caplog.text


async def test_one_poller_among_processes_and_a_takeover_when_it_goes(tmp_path: Path) -> None:
    db = await Database.open(f"sqlite+aiosqlite:///{tmp_path / 'store.db'}")
    try:
        with FakeTelegramAPI() as fake:
            pollers: list[TelegramPoller] = []
            for owner in ("host-a", "host-b"):
                adapter = _adapter(polling(fake))
                pollers.append(
                    TelegramPoller(
                        url=f"{fake.api_base_url}{DEFAULT_TOKEN}/getUpdates",
                        token=DEFAULT_TOKEN,
                        bot_id=BOT_ID,
                        timeout=1,
                        parse=adapter.parse_update,
                        leases=NamedLeases(db, owner=owner),
                        lease_margin=2.0,
                        lease_retry=0.2,
                    )
                )
            a, b = pollers
            commits = Commits()
            await a.start(commits)
            await until(lambda: a.holding, what="the first poller to hold the lease")
            await b.start(commits)
            before = len(fake.calls_to("getUpdates"))
            await asyncio.sleep(1.5)  # a few of b's lease tries
            assert a.holding and not b.holding
            assert not any("Conflict" in str(c) for c in fake.calls)
            # a dies without releasing its lease (kill -9): b takes over once it lapses
            task = a._task
            assert task is not None
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            update_id = fake.queue_message(950_001, "anyone there?")
            await until(lambda: b.holding and update_id in fake.confirmed, what="the takeover")
            assert len(fake.calls_to("getUpdates")) > before
            assert commits.ids == [f"{BOT_ID}:{update_id}"]
            await b.stop()
            a._task = None
            await a.stop()
    finally:
        await db.aclose()
