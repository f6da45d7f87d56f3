"""Crash test of the event webhooks: ``kill -9`` the hub mid-stream; no committed event is lost or doubled.

``threadline serve`` runs as a subprocess on SQLite with Telegram in polling mode against the fake Bot
API, a fake LLM, and one event endpoint (registered through ``POST /admin/event-endpoints``, allowed on
loopback by ``THREADLINE_EVENTS__ALLOW_PRIVATE``) at a local ``Receiver`` that checks every Standard
Webhooks signature and records each ``webhook-id``. The receiver holds every request a moment (``slow``),
so deliveries are in flight when the hub is SIGKILLed in the middle of the stream; a second wave of
messages comes after the restart. At the end, from the store and the receiver:

- every inbox row has exactly one ``message.received`` and every sent outbox row exactly one ``reply.sent``
  (one ``webhook-id`` each), every delivery row is ``sent``, and the receiver got nothing else;
- a ``webhook-id`` reached the receiver twice only if its delivery was in flight at the kill (the receiver
  had taken it, the hub had not recorded it: the documented repeat window, ``core.events``), and never a
  third time.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.conftest import subprocess_env
from tests.core.events.receiver import Receiver
from tests.crash_support import ServeProcess, model, tag_of
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.telegram_api import DEFAULT_TOKEN, FakeTelegramAPI

pytestmark = [pytest.mark.slow, pytest.mark.serial]

ADMIN_TOKEN = "crash-events-admin-token-0123456789"
FIRST_WAVE = 30  # messages before the kill (one customer each)
SECOND_WAVE = 15  # messages after the restart
KILL_AFTER_EVENTS = 20  # SIGKILL once the receiver took this many deliveries
HOLD = 0.3  # seconds the receiver holds every request (deliveries in flight at the kill)
TIMEOUT = 50.0


def queue(fake: FakeTelegramAPI, ks: range) -> None:
    for k in ks:
        fake.queue_message(700_000 + k, f"Hello, a question about {tag_of(k)}, my order", message_id=1 + k)


async def wait_for(check: Callable[[], bool], what: str, hub: ServeProcess, deadline: float) -> None:
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}: {hub.tail()}"
        await asyncio.sleep(0.1)


def rows(db: Path, query: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10) as conn:
        found = list(conn.execute(query))
    conn.close()
    return found


async def test_kill_9_mid_stream_loses_no_event_and_repeats_only_those_in_flight(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    started = time.monotonic()
    deadline = started + TIMEOUT
    with (
        FakeTelegramAPI(token=DEFAULT_TOKEN) as telegram,
        FakeOpenAI(delay=0.02, responder=model) as llm,
        Receiver() as receiver,
    ):
        receiver.modes["/hook"] = "slow"
        receiver.hold = HOLD
        env = subprocess_env(
            tmp_path,
            THREADLINE_ADMIN_TOKEN=ADMIN_TOKEN,
            THREADLINE_EVENTS__ALLOW_PRIVATE="true",
            THREADLINE_EVENTS__BACKOFF_BASE="0.2",
            THREADLINE_EVENTS__BACKOFF_MAX="1",
            THREADLINE_LLM__API_KEY="sk-test",
            THREADLINE_LLM__BASE_URL=llm.base_url,
            THREADLINE_LLM__MAX_RETRIES="0",
            THREADLINE_WORKER__POLL_INTERVAL="0.2",
            THREADLINE_WORKER__BACKOFF_BASE="0.2",
            THREADLINE_WORKER__BACKOFF_MAX="2",
            THREADLINE_WORKER__LEASE_SECONDS="3",  # the killed process's claims lapse soon
            THREADLINE_TELEGRAM__BOT_TOKEN=DEFAULT_TOKEN,
            THREADLINE_TELEGRAM__API_BASE_URL=telegram.api_base_url,
            THREADLINE_TELEGRAM__MODE="polling",
            THREADLINE_TELEGRAM__POLL_TIMEOUT="2",
        )
        hub = ServeProcess(tmp_path / "serve.log", env)
        db = tmp_path / "data" / "threadline.db"
        try:
            await hub.start()
            async with httpx.AsyncClient(timeout=10) as client:
                created = await client.post(
                    f"{hub.url}/admin/event-endpoints",
                    headers={"authorization": f"Bearer {ADMIN_TOKEN}"},
                    json={"url": receiver.url_for("/hook"), "events": ["message.received", "reply.sent"]},
                )
            assert created.status_code == 200, created.text
            receiver.secrets["/hook"] = created.json()["secret"]

            queue(telegram, range(FIRST_WAVE))
            await wait_for(lambda: len(receiver.received) >= KILL_AFTER_EVENTS, "deliveries", hub, deadline)
            hub.kill()  # requests held at the receiver die with their connections
            await hub.reap()
            # the receiver finishes what it was holding (it answers into a closed connection)
            await wait_for(lambda: receiver.arrived == len(receiver.received), "the receiver", hub, deadline)
            taken = {r.webhook_id for r in list(receiver.received) if r.answered == 204}
            queued = rows(db, "SELECT webhook_id FROM event_deliveries WHERE status IN ('pending', 'failed')")
            in_flight = {str(webhook_id) for (webhook_id,) in queued} & taken
            committed_at_kill = len(rows(db, "SELECT id FROM event_deliveries"))

            await hub.start()
            queue(telegram, range(FIRST_WAVE, FIRST_WAVE + SECOND_WAVE))

            def drained() -> bool:
                if telegram.pending_updates:
                    return False
                open_work = rows(
                    db,
                    "SELECT (SELECT count(*) FROM inbox WHERE status = 'pending')"
                    " + (SELECT count(*) FROM outbox WHERE status = 'pending')"
                    " + (SELECT count(*) FROM event_deliveries WHERE status != 'sent')",
                )
                inbox = rows(db, "SELECT count(*) FROM inbox")
                return open_work[0][0] == 0 and inbox[0][0] == FIRST_WAVE + SECOND_WAVE

            await wait_for(drained, "every message answered and every event sent", hub, deadline)
            await asyncio.sleep(0.5)  # room for a (wrong) repeat
            await hub.stop()
        finally:
            hub.kill()
            await hub.reap()
        received = list(receiver.received)

    inbox_ids = {int(i) for (i,) in rows(db, "SELECT id FROM inbox")}
    sent_outbox_ids = {int(i) for (i,) in rows(db, "SELECT id FROM outbox WHERE status = 'sent'")}
    deliveries = {str(w): str(s) for w, s in rows(db, "SELECT webhook_id, status FROM event_deliveries")}
    assert all(r.verified for r in received), "a delivery whose signature did not verify"
    per_id = Counter(r.webhook_id for r in received)
    repeated = {webhook_id: n for webhook_id, n in per_id.items() if n > 1}
    first = {r.webhook_id: r.payload for r in received}
    about: dict[str, Counter[int]] = {"message.received": Counter(), "reply.sent": Counter()}
    key = {"message.received": "inbox_id", "reply.sent": "outbox_id"}
    for payload in first.values():
        about[payload["type"]][int(payload["data"][key[payload["type"]]])] += 1
    with capsys.disabled():
        print(
            f"\nevent webhooks crash test: messages {len(inbox_ids)}, replies sent {len(sent_outbox_ids)},"
            f" deliveries {len(deliveries)} ({committed_at_kill} committed at the kill),"
            f" requests at the receiver {len(received)}, in flight at the kill {len(in_flight)},"
            f" repeated {len(repeated)}, kills {hub.kills}, starts {hub.starts},"
            f" {time.monotonic() - started:.0f} s"
        )
    assert hub.kills == 1 and hub.starts == 2
    assert len(inbox_ids) == FIRST_WAVE + SECOND_WAVE and len(sent_outbox_ids) >= len(inbox_ids)
    assert set(deliveries.values()) == {"sent"}, "a delivery left unsent"
    assert set(per_id) == set(deliveries), (
        "the receiver got a webhook-id the store does not hold, or lacks one"
    )
    assert set(about["message.received"]) == inbox_ids and set(about["message.received"].values()) == {1}
    assert set(about["reply.sent"]) == sent_outbox_ids and set(about["reply.sent"].values()) == {1}
    assert set(repeated) <= in_flight, (
        f"repeated outside the kill's window: {sorted(set(repeated) - in_flight)}"
    )
    assert set(repeated.values()) <= {2}, "a delivery came three times"
    assert all(r.answered == 204 for r in received)
