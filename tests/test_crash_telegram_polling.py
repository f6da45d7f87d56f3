"""Crash test of Telegram long polling: ``kill -9`` the hub while it polls; every update is answered once.

``threadline serve`` runs as a subprocess on SQLite in polling mode (``THREADLINE_TELEGRAM__MODE=polling``,
no secret, no public URL) against the fake Bot API, with a fake LLM that names each message's tag in its
reply. Updates are queued at the fake in two waves; the server is killed with SIGKILL twice while
updates are being fetched, committed and answered, and started again each time. The fake returns every
update again until a ``getUpdates`` offset confirms it, so what a killed process fetched and had not
confirmed comes back to the next one. At the end: every update was answered, none twice (except a
reply the fake had taken when the kill came, before the hub recorded it: at-least-once delivery, as
``tests/test_crash.py`` counts it), one inbox row per update, and every update confirmed.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import subprocess_env
from tests.crash_support import TAG_RE, ServeProcess, model, tag_of
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.telegram_api import DEFAULT_TOKEN, FakeTelegramAPI

pytestmark = [pytest.mark.slow, pytest.mark.serial]

UPDATES = 60  # one message per customer, in two waves
FIRST_WAVE = 40
KILL_AFTER_REPLIES = 10  # the first kill -9: once this many replies reached the fake
TIMEOUT = 120.0


def replies(fake: FakeTelegramAPI) -> list[str | None]:
    found = [TAG_RE.search(str(m["text"])) for m in fake.sent]
    return [f.group(0) if f else None for f in found]


def unrecorded_sends(db: Path, replied: set[str | None]) -> set[str]:
    """Tags whose reply reached the fake while its outbox row is still pending: sent again after the
    restart (no idempotency key at Telegram). Any other repeat is a bug."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10) as conn:
        texts = [
            str(row[0])
            for row in conn.execute(
                "SELECT i.text FROM outbox o JOIN inbox i ON o.inbox_id = i.id WHERE o.status = 'pending'"
            )
        ]
    conn.close()
    return {f.group(0) for t in texts if (f := TAG_RE.search(t))} & {t for t in replied if t}


def queue(fake: FakeTelegramAPI, ks: range) -> dict[int, str]:
    """Queue one message per k from its own customer; update id -> tag."""
    return {
        fake.queue_message(
            700_000 + k, f"Hello, a question about {tag_of(k)}, my order", message_id=1 + k
        ): tag_of(k)
        for k in ks
    }


async def wait_for(check: Callable[[], bool], what: str, hub: ServeProcess, deadline: float) -> None:
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}: {hub.tail()}"
        await asyncio.sleep(0.1)


async def test_kill_9_while_polling_loses_no_update_and_answers_none_twice(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    started = time.monotonic()
    with FakeTelegramAPI(token=DEFAULT_TOKEN) as telegram, FakeOpenAI(delay=0.05, responder=model) as llm:
        env = subprocess_env(
            tmp_path,
            THREADLINE_LLM__API_KEY="sk-test",
            THREADLINE_LLM__BASE_URL=llm.base_url,
            THREADLINE_LLM__MAX_RETRIES="0",
            THREADLINE_WORKER__POLL_INTERVAL="0.2",
            THREADLINE_WORKER__BACKOFF_BASE="0.2",
            THREADLINE_WORKER__BACKOFF_MAX="2",
            THREADLINE_TELEGRAM__BOT_TOKEN=DEFAULT_TOKEN,
            THREADLINE_TELEGRAM__API_BASE_URL=telegram.api_base_url,
            THREADLINE_TELEGRAM__MODE="polling",
            THREADLINE_TELEGRAM__POLL_TIMEOUT="2",
        )
        telegram.push_bad_gateway()  # the first getUpdates fails once with a 502
        tags = queue(telegram, range(FIRST_WAVE))
        hub = ServeProcess(tmp_path / "serve.log", env)
        db = tmp_path / "data" / "threadline.db"
        deadline = time.monotonic() + TIMEOUT
        # per reply: how many kills caught it in its send window (sent, not yet recorded): each such kill
        # may repeat it once (sendMessage has no idempotency key), and no more
        window: Counter[str] = Counter()
        try:
            # kill 1: while replies go out (every update of the first wave committed and confirmed)
            await hub.start()
            await wait_for(lambda: len(telegram.sent) >= KILL_AFTER_REPLIES, "replies", hub, deadline)
            hub.kill()
            await hub.reap()
            window.update(unrecorded_sends(db, set(replies(telegram))))

            # kill 2: the second wave is handed to the poller and the process dies before it commits or
            # confirms any of it (the fake kills it as it answers getUpdates)
            await hub.start()

            def kill_at_the_batch(update_ids: list[int]) -> None:
                telegram.on_batch = None
                hub.kill()

            telegram.on_batch = kill_at_the_batch
            tags |= queue(telegram, range(FIRST_WAVE, UPDATES))
            await wait_for(lambda: hub.kills == 2, "the kill at the batch", hub, deadline)
            await hub.reap()
            window.update(unrecorded_sends(db, set(replies(telegram))))

            await hub.start()
            await wait_for(
                lambda: set(tags.values()) <= set(replies(telegram)) and not telegram.pending_updates,
                "every update answered and confirmed",
                hub,
                deadline,
            )
            await hub.stop()
        finally:
            hub.kill()
            await hub.reap()
        sent = [(int(m["chat"]["id"]), tag) for m, tag in zip(telegram.sent, replies(telegram), strict=True)]

    per_tag = Counter(replies(telegram))
    lost = sorted(set(tags.values()) - set(per_tag))
    doubled = {tag: n for tag, n in per_tag.items() if n > 1}
    resent = {tag for tag, n in doubled.items() if n - 1 <= window[tag]}
    unexplained = {tag: n for tag, n in doubled.items() if tag not in resent}
    handed_out = telegram.handed_out
    redelivered = sum(1 for update_id in tags if handed_out[update_id] > 1)
    with sqlite3.connect(db) as conn:
        inbox = Counter(str(row[0]) for row in conn.execute("SELECT provider_message_id FROM inbox"))
    conn.close()
    with capsys.disabled():
        print(
            f"\ntelegram polling crash test: updates {len(tags)}, answered {len(per_tag)}, lost {len(lost)},"
            f" updates fetched again after a kill {redelivered},"
            f" re-sent in a kill's send window {len(resent)}, other repeats {len(unexplained)},"
            f" kills {hub.kills}, starts {hub.starts},"
            f" {time.monotonic() - started:.0f} s"
        )
    assert hub.kills == 2
    assert redelivered >= UPDATES - FIRST_WAVE  # the second wave was handed out again after the kill
    customer_of = {tag: 700_000 + k for k, tag in ((k, tag_of(k)) for k in range(UPDATES))}
    assert all(chat == customer_of[tag] for chat, tag in sent if tag is not None)  # each to its writer
    assert not lost, f"updates never answered: {lost}"
    assert None not in per_tag
    assert not unexplained, f"answered more than once: {unexplained}"
    assert len(inbox) == len(tags) and set(inbox.values()) == {1}
    assert set(telegram.confirmed) >= set(tags)  # every update confirmed (after it was committed)
