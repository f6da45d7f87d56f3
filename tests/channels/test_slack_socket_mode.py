"""Slack over Socket Mode: the real ``SlackAdapter`` (slack-bolt's ``AsyncApp`` and ``AsyncSocketModeHandler``
on slack_sdk's aiohttp client) against ``FakeSocketMode``, a websocket server on 127.0.0.1 that speaks
Slack's protocol and misbehaves as Slack does (redelivery, duplicates, ``disconnect``, dropped sockets).

``accept`` here is the test's own commit function (the seam the hub fills): it can be made to fail, and
records what it committed so the fake can check, when an acknowledgement arrives, that the message was
committed first. ``tests/core/web/test_slack_socket_mode_app.py`` runs the same through the real app.
"""

from __future__ import annotations

import asyncio
import copy
import json
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from channels.base import InboundServer
from channels.slack import SlackAdapter, app_manifest
from channels.slack.socket_mode import SocketModeReceiver
from core.errors import ConfigError, VerificationFailed
from core.messages import InboundMessage
from core.pipeline.inbox import Accepted
from core.settings import Settings, SlackSettings, load_settings
from identity.normalize import normalize_address
from tests.channels.test_slack import fixture_bytes, request
from tests.fakes.slack_api import FakeSlackAPI
from tests.fakes.slack_socket import FakeSocketMode

FIXTURES = Path(__file__).parent / "fixtures" / "slack"
TOKEN = "xoxb-17653672481-19874698323-pdFZKVeTuE8sk7oOcBrzbqgy"


def event(n: int, *, text: str = "Hello hello can you hear me?") -> dict[str, Any]:
    """Slack's documented ``message.im`` payload, as event ``EvSOCKET{n}``."""
    payload: dict[str, Any] = json.loads((FIXTURES / "message_im.json").read_text())
    payload["event_id"] = f"EvSOCKET{n:04d}"
    payload["event"]["ts"] = payload["event"]["event_ts"] = f"1355517523.{n:06d}"
    payload["event"]["text"] = text
    return payload


class Commits:
    """The test's ``accept``: a dict keyed like the inbox (a repeat is a duplicate), failing on demand."""

    def __init__(self) -> None:
        self._lock = threading.Lock()  # read by the fake's thread when an acknowledgement arrives
        self.rows: dict[str, InboundMessage] = {}
        self.calls = 0
        self.fail_next = 0
        self.noise: set[str] = set()  # events acknowledged without a commit (nothing to answer)

    async def accept(self, message: InboundMessage) -> Accepted:
        self.calls += 1
        if self.fail_next:
            self.fail_next -= 1
            raise RuntimeError("database is locked: INSERT INTO inbox ... ('my card number is ...')")
        await asyncio.sleep(0.01)  # a commit takes a moment: an early acknowledgement would show
        with self._lock:
            duplicate = message.provider_message_id in self.rows
            self.rows.setdefault(message.provider_message_id, message)
            return Accepted(inbox_id=len(self.rows), duplicate=duplicate)

    def committed(self, provider_id: str) -> bool:
        with self._lock:
            return provider_id in self.rows


@pytest.fixture
def socket() -> Iterator[FakeSocketMode]:
    with FakeSlackAPI(token=TOKEN) as api, FakeSocketMode(api) as fake:
        yield fake


def settings_for(fake: FakeSocketMode, *, app_token: str | None = None) -> SlackSettings:
    return SlackSettings(
        bot_token=SecretStr(TOKEN),
        app_token=SecretStr(app_token or fake.app_token),
        api_base_url=fake.api.api_url,
    )


@pytest.fixture
async def commits(socket: FakeSocketMode) -> AsyncIterator[Commits]:
    """A running adapter on the fake socket, committing into ``Commits``; every ack is checked."""
    found = Commits()
    early: list[str] = []
    socket.on_ack = lambda envelope: (
        None if found.committed(envelope.key) or envelope.key in found.noise else early.append(envelope.key)
    )
    adapter = SlackAdapter(settings_for(socket), normalize=normalize_address)
    await adapter.start_inbound(found.accept)
    await socket.wait_for(lambda: socket.open_connections == 1)
    try:
        yield found
    finally:
        await adapter.stop_inbound()
        await adapter.aclose()
    assert not early, f"acknowledged before the commit: {early}"


async def test_the_adapter_is_an_inbound_server_that_does_nothing_without_an_app_token() -> None:
    adapter = SlackAdapter(SlackSettings(bot_token=SecretStr(TOKEN)), normalize=normalize_address)
    assert isinstance(adapter, InboundServer)
    await adapter.start_inbound(Commits().accept)  # no app token: no connection, no error
    await adapter.stop_inbound()


async def test_an_event_is_committed_then_acknowledged(socket: FakeSocketMode, commits: Commits) -> None:
    socket.send_event(event(1))
    await socket.wait_for(lambda: socket.acked("EvSOCKET0001"))
    message = commits.rows["EvSOCKET0001"]
    assert message.text == "Hello hello can you hear me?"
    assert str(message.sender) == "slack:T123ABC456:U2147483697"
    assert message.reply_target == {"channel": "D024BE91L", "thread_ts": "1355517523.000001"}
    assert message.extras["retry_num"] == 0  # the envelope's retry_attempt, as the webhook's header
    assert socket.ack_count("EvSOCKET0001") == 1 and not socket.stray_acks


async def test_a_failed_commit_is_not_acknowledged_and_the_redelivery_is(
    socket: FakeSocketMode, commits: Commits, caplog: pytest.LogCaptureFixture
) -> None:
    commits.fail_next = 1
    socket.send_event(event(2, text="my card number is 4111"))
    await socket.wait_for(lambda: commits.calls == 1)
    await asyncio.sleep(0.3)  # room for a (wrong) acknowledgement to arrive
    assert not socket.acked("EvSOCKET0002")
    # Slack gives up on the connection and redelivers the envelope on the next one
    socket.drop()
    await socket.wait_for(lambda: socket.acked("EvSOCKET0002"))
    (ack,) = [a for a in socket.acks if a.key == "EvSOCKET0002"]
    delivered = {d.envelope_id: d for d in socket.deliveries}
    assert delivered[ack.envelope_id].retry_attempt == 1  # the redelivery, not the failed first one
    assert commits.committed("EvSOCKET0002") and socket.connections == 2
    # the failure was logged by its type, never with the database's text (which holds the message)
    assert "not committed (RuntimeError)" in caplog.text
    assert "4111" not in caplog.text and "card number" not in caplog.text


async def test_a_duplicate_envelope_is_committed_once_and_both_are_acknowledged(
    socket: FakeSocketMode, commits: Commits
) -> None:
    socket.send_event(event(3), duplicate=True)  # the second copy has retry_attempt 1
    await socket.wait_for(lambda: socket.ack_count("EvSOCKET0003") == 2)
    assert list(commits.rows) == ["EvSOCKET0003"] and commits.calls == 2


async def test_disconnect_is_followed_by_a_new_connection(socket: FakeSocketMode, commits: Commits) -> None:
    socket.disconnect("refresh_requested")
    await socket.wait_for(lambda: socket.connections == 2 and socket.open_connections == 1)
    socket.send_event(event(4))
    await socket.wait_for(lambda: socket.acked("EvSOCKET0004"))
    socket.disconnect("warning")
    await socket.wait_for(lambda: socket.connections == 3 and socket.open_connections == 1)
    socket.send_event(event(5))
    await socket.wait_for(lambda: socket.acked("EvSOCKET0005"))
    assert set(commits.rows) == {"EvSOCKET0004", "EvSOCKET0005"}


async def test_a_dropped_socket_is_reconnected_and_nothing_in_it_is_lost(socket: FakeSocketMode) -> None:
    commits = Commits()
    receiver = SocketModeReceiver(
        settings_for(socket),
        parse_event=SlackAdapter(settings_for(socket), normalize=normalize_address).parse_event,
        parse_interaction=lambda payload: pytest.fail("no interaction was sent"),
        accept=commits.accept,
        ping_interval=0.2,  # how soon a dead socket is noticed
    )
    await receiver.start()
    try:
        await socket.wait_for(lambda: socket.open_connections == 1)
        socket.drop()
        socket.send_event(event(6))  # sent while no connection is up: goes out on the next one
        await socket.wait_for(lambda: socket.acked("EvSOCKET0006"))
        assert socket.connections == 2 and commits.committed("EvSOCKET0006")
    finally:
        await receiver.stop()


async def test_noise_and_unreadable_events_are_acknowledged_without_a_commit(
    socket: FakeSocketMode, commits: Commits
) -> None:
    edited = event(7)
    edited["event"]["subtype"] = "message_changed"
    broken = copy.deepcopy(event(8))
    del broken["event"]["channel"]  # an event without its channel: cannot be answered
    commits.noise |= {"EvSOCKET0007", "EvSOCKET0008"}
    socket.send_event(edited)
    socket.send_event(broken)
    await socket.wait_for(lambda: socket.acked("EvSOCKET0007") and socket.acked("EvSOCKET0008"))
    assert commits.calls == 0


async def test_stop_closes_the_socket(socket: FakeSocketMode) -> None:
    adapter = SlackAdapter(settings_for(socket), normalize=normalize_address)
    await adapter.start_inbound(Commits().accept)
    await socket.wait_for(lambda: socket.open_connections == 1)
    await adapter.stop_inbound()
    await socket.wait_for(lambda: socket.open_connections == 0, timeout=5)
    socket.send_event(event(9))  # held for a next connection that never comes
    await asyncio.sleep(0.2)
    assert not socket.acked("EvSOCKET0009")


async def test_a_wrong_app_token_refuses_to_start_naming_the_setting(socket: FakeSocketMode) -> None:
    adapter = SlackAdapter(
        settings_for(socket, app_token="xapp-1-A0FAKE0001-999-wrong"), normalize=normalize_address
    )
    with pytest.raises(ConfigError) as caught:
        await adapter.start_inbound(Commits().accept)
    assert caught.value.setting == "THREADLINE_SLACK__APP_TOKEN"
    assert "invalid_auth" in str(caught.value) and "999-wrong" not in str(caught.value)
    assert socket.connections == 0


def test_an_app_token_that_is_not_app_level_is_refused_naming_the_setting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("THREADLINE_SLACK__BOT_TOKEN", TOKEN)
    monkeypatch.setenv("THREADLINE_SLACK__APP_TOKEN", TOKEN)  # the bot token, by mistake
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert caught.value.setting == "THREADLINE_SLACK__APP_TOKEN"
    assert "xapp-" in str(caught.value) and TOKEN not in str(caught.value)


def test_the_app_token_replaces_the_signing_secret_but_not_the_bot_token(tmp_path: Path) -> None:
    on = Settings(data_dir=tmp_path, slack=SlackSettings(bot_token=TOKEN, app_token="xapp-1-A-1-x"))
    on.check()
    assert "slack" in on.enabled_channels()
    half = Settings(data_dir=tmp_path, slack=SlackSettings(app_token="xapp-1-A-1-x"))
    with pytest.raises(ConfigError) as caught:
        half.check()
    assert caught.value.setting == "THREADLINE_SLACK__BOT_TOKEN"


async def test_without_a_signing_secret_the_webhook_is_no_door(socket: FakeSocketMode) -> None:
    adapter = SlackAdapter(settings_for(socket), normalize=normalize_address)
    with pytest.raises(VerificationFailed) as caught:
        await adapter.verify(request(fixture_bytes("message_im.json")))
    assert caught.value.status == 404


def test_manifest_in_socket_mode_has_no_request_urls() -> None:
    manifest = app_manifest(None, socket_mode=True)
    assert manifest["settings"]["socket_mode_enabled"] is True
    assert "request_url" not in json.dumps(manifest)
    assert manifest["settings"]["event_subscriptions"]["bot_events"]
    assert manifest["settings"]["interactivity"]["is_enabled"] is True
    http = app_manifest("https://bot.example.com")
    assert http["settings"]["socket_mode_enabled"] is False
    assert (
        http["settings"]["event_subscriptions"]["request_url"]
        == "https://bot.example.com/webhooks/slack/events"
    )


def button_press(action_ts: str) -> dict[str, Any]:
    """A ``block_actions`` payload: a press of one of our reply's buttons, as Slack sends it."""
    return {
        "type": "block_actions",
        "team": {"id": "T123ABC456", "domain": "acme"},
        "user": {"id": "U2147483697", "username": "ana", "team_id": "T123ABC456"},
        "api_app_id": "A0PNCHHK2",
        "container": {"type": "message", "message_ts": "1700000000.000001", "channel_id": "D024BE91L"},
        "trigger_id": "1234.5678.abcdef",
        "channel": {"id": "D024BE91L", "name": "directmessage"},
        "message": {"type": "message", "ts": "1700000000.000001", "text": "How did we do?"},
        "actions": [
            {
                "action_id": "threadline_button_4",
                "block_id": "threadline_buttons",
                "text": {"type": "plain_text", "text": "5"},
                "value": "rate:1:5",
                "type": "button",
                "action_ts": action_ts,
            }
        ],
    }


async def test_a_button_press_envelope_is_committed_then_acknowledged(
    socket: FakeSocketMode, commits: Commits
) -> None:
    key = "action:D024BE91L:1700000000.000001:U2147483697:1700000001.000100"
    socket.send_interactive(button_press("1700000001.000100"), key=key)
    await socket.wait_for(lambda: socket.acked(key))
    assert commits.rows[key].extras["button"] == "rate:1:5"
    # another app's button in the same message is no message of ours: acknowledged without a commit
    other = button_press("1700000002.000100")
    other["actions"][0]["action_id"] = "someone_elses_button"
    commits.noise.add("other-button")
    socket.send_interactive(other, key="other-button")
    await socket.wait_for(lambda: socket.acked("other-button"))
    assert list(commits.rows) == [key]
