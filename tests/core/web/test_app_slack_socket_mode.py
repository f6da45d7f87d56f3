"""Slack Socket Mode end to end: envelope over the fake socket → inbox → worker → one reply at the fake API.

The real app (``core.app.create_app``) runs under uvicorn with only a bot token and an app-level token (no
signing secret, no public URL); ``FakeSocketMode`` plays Slack. When an acknowledgement reaches the fake,
the fake's hook looks in the SQLite file for the event's inbox row: it must already be committed.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from core.settings import SlackSettings
from tests.apphost import app_settings, serving
from tests.fakes.slack_api import FakeSlackAPI
from tests.fakes.slack_socket import Envelope, FakeSocketMode

FIXTURES = Path(__file__).resolve().parents[2] / "channels" / "fixtures" / "slack"
TOKEN = "xoxb-socket-mode-app-test"


def event(n: int) -> dict[str, Any]:
    """Slack's documented ``message.im`` event as ``EvAPP{n}``, in its own DM thread."""
    payload: dict[str, Any] = json.loads((FIXTURES / "message_im.json").read_text())
    payload["event_id"] = f"EvAPP{n:04d}"
    payload["event"]["ts"] = payload["event"]["event_ts"] = f"1355517600.{n:06d}"
    payload["event"]["text"] = f"Where is my order number {n}?"
    return payload


def committed(db: Path, event_id: str) -> bool:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10) as conn:
        row = conn.execute("SELECT count(*) FROM inbox WHERE provider_message_id = ?", (event_id,)).fetchone()
    conn.close()
    return bool(row[0])


async def test_socket_mode_events_are_answered_once_and_acknowledged_only_once_committed(
    tmp_path: Path,
) -> None:
    with FakeSlackAPI(token=TOKEN) as api, FakeSocketMode(api) as socket:
        db = tmp_path / "threadline.db"
        early: list[str] = []

        def check(envelope: Envelope) -> None:  # in the fake's thread, as the acknowledgement arrives
            if not committed(db, envelope.key):
                early.append(envelope.key)

        socket.on_ack = check
        settings = app_settings(
            tmp_path,
            slack=SlackSettings(
                bot_token=SecretStr(TOKEN), app_token=SecretStr(socket.app_token), api_base_url=api.api_url
            ),
        )
        async with serving(settings) as served:
            await socket.wait_for(lambda: socket.open_connections == 1)
            # the events webhook is no door without a signing secret
            assert (await served.client.post("/webhooks/slack/events", content=b"{}")).status_code == 404

            socket.send_event(event(1), duplicate=True)  # a copy with retry_attempt 1 right behind it
            await socket.wait_for(lambda: socket.ack_count("EvAPP0001") == 2)
            await socket.wait_for(lambda: len(api.posted) == 1)

            socket.disconnect("refresh_requested")  # Slack rotates the connection; the hub follows
            await socket.wait_for(lambda: socket.connections == 2 and socket.open_connections == 1)
            socket.send_event(event(2))
            socket.send_event(event(1))  # a late redelivery of the first: still a no-op
            await socket.wait_for(lambda: len(api.posted) == 2 and socket.ack_count("EvAPP0001") == 3)

            await asyncio.sleep(0.5)  # room for a (wrong) second reply to arrive
            assert await served.inbox_rows("slack") == 2
        assert socket.open_connections == 0  # the app's shutdown closed its socket

    threads = sorted(m.thread_ts or "" for m in api.posted)
    assert threads == ["1355517600.000001", "1355517600.000002"], threads  # one reply each
    assert {m.channel for m in api.posted} == {"D024BE91L"}
    assert not early, f"acknowledged before the inbox row was committed: {early}"
    assert not socket.stray_acks
