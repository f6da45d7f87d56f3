"""Crash test of Slack Socket Mode: ``kill -9`` the hub mid-stream; nothing lost, nothing answered twice.

``threadline serve`` runs as a subprocess with only a bot token and an app-level token (no signing secret,
no public URL), its Web API and Socket Mode pointed at ``FakeSlackAPI`` + ``FakeSocketMode`` in this
process. The test streams ``EVENTS`` envelopes (some followed at once by a duplicate with
``retry_attempt: 1``), SIGKILLs the hub in the middle of the stream, keeps streaming (Slack holds the
envelopes for the next connection), and starts the hub again. The fake redelivers what the killed
connection had not acknowledged. At the end, every event has exactly one reply in its own thread; the only
repeat tolerated is a reply that Slack had taken when the kill came, before the hub recorded it (no
idempotency key at ``chat.postMessage``: the next start sends it again), as in ``tests/test_crash.py``.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import subprocess_env
from tests.crash_support import ServeProcess
from tests.fakes.slack_api import FakeSlackAPI
from tests.fakes.slack_socket import FakeSocketMode

pytestmark = [pytest.mark.slow, pytest.mark.serial]

FIXTURES = Path(__file__).parent / "channels" / "fixtures" / "slack"
TOKEN = "xoxb-crash-socket-mode"
EVENTS = 60  # envelopes in the stream, each a new message
CUSTOMERS = 12
DUPLICATE_EVERY = 5  # every 5th envelope is followed at once by its retry
KILL_AT = 25  # SIGKILL once this many envelopes were sent
GAP = 0.02  # seconds between envelopes
TIMEOUT = 40.0


def event(k: int) -> dict[str, Any]:
    """Slack's documented ``message.im`` event number ``k``, from customer ``k % CUSTOMERS``."""
    payload: dict[str, Any] = json.loads((FIXTURES / "message_im.json").read_text())
    customer = k % CUSTOMERS
    payload["event_id"] = f"EvCRASH{k:04d}"
    payload["event"].update(
        user=f"UCR{customer:06d}",
        channel=f"DCR{customer:06d}",
        ts=f"1764000000.{k:06d}",
        event_ts=f"1764000000.{k:06d}",
        text=f"Question number {k} about my order",
    )
    return payload


def unrecorded_sends(db: Path, replied: set[str]) -> set[str]:
    """Event ids whose reply reached the fake while its outbox row is still pending (the kill's window)."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10) as conn:
        pending = {
            str(row[0])
            for row in conn.execute(
                "SELECT i.provider_message_id FROM outbox o JOIN inbox i ON o.inbox_id = i.id"
                " WHERE o.status = 'pending'"
            )
        }
    conn.close()
    return pending & replied


async def test_kill_9_mid_stream_loses_nothing_and_answers_nothing_twice(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    started = time.monotonic()
    by_ts = {f"1764000000.{k:06d}": f"EvCRASH{k:04d}" for k in range(EVENTS)}
    with FakeSlackAPI(token=TOKEN) as api, FakeSocketMode(api) as socket:
        env = subprocess_env(
            tmp_path,
            THREADLINE_SLACK__BOT_TOKEN=TOKEN,
            THREADLINE_SLACK__APP_TOKEN=socket.app_token,
            THREADLINE_SLACK__API_BASE_URL=api.api_url,
            THREADLINE_WORKER__POLL_INTERVAL="0.2",
            THREADLINE_WORKER__BACKOFF_BASE="0.2",
            THREADLINE_WORKER__BACKOFF_MAX="2",
        )
        hub = ServeProcess(tmp_path / "serve.log", env)
        db = tmp_path / "data" / "threadline.db"

        def replied() -> set[str]:
            return {by_ts[m.thread_ts] for m in api.posted if m.thread_ts in by_ts}

        try:
            await hub.start()
            await socket.wait_for(lambda: socket.open_connections == 1, TIMEOUT)
            window: set[str] = set()
            for k in range(EVENTS):
                socket.send_event(event(k), duplicate=k % DUPLICATE_EVERY == 0)
                if k == KILL_AT:
                    hub.kill()  # envelopes in flight die unacknowledged; the rest wait for a connection
                    await hub.reap()
                    window |= unrecorded_sends(db, replied())
                    unacked_at_kill = len({d.key for d in socket.deliveries} - {a.key for a in socket.acks})
                if k == KILL_AT + 10:
                    await hub.start()
                await asyncio.sleep(GAP)
            every = {f"EvCRASH{k:04d}" for k in range(EVENTS)}
            await socket.wait_for(lambda: every <= {a.key for a in socket.acks}, TIMEOUT)
            await socket.wait_for(lambda: replied() == every, TIMEOUT)
            await asyncio.sleep(1.0)  # room for a (wrong) second reply
            await hub.stop()
        finally:
            hub.kill()
            await hub.reap()
        posted = list(api.posted)
        connections = socket.connections

    per_event = Counter(by_ts[m.thread_ts] for m in posted if m.thread_ts in by_ts)
    doubled = {key: n for key, n in per_event.items() if n > 1}
    resent = {key for key, n in doubled.items() if key in window and n == 2}
    with sqlite3.connect(db) as conn:
        inbox = Counter(row[0] for row in conn.execute("SELECT provider_message_id FROM inbox"))
    conn.close()
    with capsys.disabled():
        print(
            f"\nslack socket mode crash test: events {EVENTS}, replied {len(per_event)}, "
            f"unacknowledged at the kill {unacked_at_kill}, re-sent in the kill's send window {len(resent)}, "
            f"other repeats {len(doubled) - len(resent)}, connections {connections}, kills {hub.kills}, "
            f"starts {hub.starts}, {time.monotonic() - started:.0f} s"
        )
    assert len(posted) == len(per_event) + len(resent), "a reply outside any event's thread"
    assert set(per_event) == every, f"never answered: {sorted(every - set(per_event))[:10]}"
    assert set(doubled) == resent, f"answered twice outside the kill's window: {sorted(doubled)[:10]}"
    assert set(inbox) == every and set(inbox.values()) == {1}
    assert hub.kills == 1 and hub.starts == 2 and connections >= 2
