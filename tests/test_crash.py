"""Crash test (issue 6): ``kill -9`` the hub under a burst of signed deliveries; nothing is lost or doubled.

``threadline serve`` runs as a subprocess on SQLite with every channel pointed at a local fake (Telegram,
Slack, Twilio, an SMTP relay) and a slow fake LLM. The test plays the four platforms: a burst of
``DELIVERIES`` signed webhook calls over ``CUSTOMERS`` customers (channels round robin), some of them
duplicates of an earlier call (same provider id), sent ``SEND_CONCURRENCY`` at a time. The server is
killed with SIGKILL at ``KILL_POINTS`` of the burst and once more while the backlog drains, and started
again each time. A call that got a 2xx is accepted; one that got a non-2xx or died with the connection
is rejected and sent again after the restart, as a platform retries. After the last start the backlog
drains, the server stops, and the test checks, per unique message:

- exactly one reply at its fake, to the customer who wrote it (and in its Slack thread / email thread);
- exactly one memory, whose provenance names exactly its inbox row (and no other memory does);
- its inbox row done, its outbox row sent, its memory job done; one inbox row per provider id.

The counts are printed: accepted, replied once, duplicates suppressed, lost (0).
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections import Counter, deque
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from core.memory.local import LocalMemory
from core.settings import LLMSettings
from tests.conftest import subprocess_env
from tests.crash_support import (
    AUTHSERV_ID,
    EMAIL_KEY,
    OUR_EMAIL,
    OUR_NUMBER,
    PUBLIC,
    SLACK_BOT_USER,
    SLACK_SECRET,
    SLACK_TEAM,
    TAG_RE,
    TELEGRAM_SECRET,
    TWILIO_SID,
    TWILIO_TOKEN,
    Delivery,
    ServeProcess,
    burst,
    model,
)
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.slack_api import FakeSlackAPI
from tests.fakes.smtp_relay import FakeSmtpRelay
from tests.fakes.telegram_api import DEFAULT_TOKEN as TELEGRAM_TOKEN
from tests.fakes.telegram_api import FakeTelegramAPI
from tests.fakes.twilio_api import FakeTwilioAPI

pytestmark = [pytest.mark.slow, pytest.mark.serial]

DELIVERIES = 1_000  # webhook calls in the burst, duplicates included
CUSTOMERS = 100  # spread round robin over the four channels
DUPLICATE_SHARE = 0.10  # calls that repeat an earlier provider id
SEND_CONCURRENCY = 16  # calls in flight at once
LLM_DELAY = 0.15  # seconds the fake LLM holds every call (chat and Mem0 extraction)
KILL_POINTS = (0.25, 0.60)  # kill -9 after this share of the burst was answered; once more while draining
DRAIN_KILL_SHARE = 0.5  # ... after this share of the backlog left at the end of the burst was replied
# kill -9 between a platform taking a reply and the hub recording it makes the next start send it
# again: set True to demand exactly one reply even then (no platform here offers idempotency keys)
STRICT_EXACTLY_ONCE = False
DRAIN_TIMEOUT = 600.0


# ----- the platforms' side ----------------------------------------------------------------------


@dataclass
class Call:
    """One webhook call of the burst; a rejected one is made again (``attempts`` + 1)."""

    delivery: Delivery
    attempts: int = 0


@dataclass
class Ledger:
    """What the platforms saw: every answer, per tag."""

    accepted_calls: int = 0  # 2xx answers (a duplicate answered 2xx counts here too)
    rejected_calls: int = 0  # non-2xx or a dead connection: the platform tries again
    statuses: Counter[str] | None = None
    accepted_tags: set[str] | None = None

    def __post_init__(self) -> None:
        self.statuses = Counter()
        self.accepted_tags = set()


async def pump(hub: ServeProcess, pending: deque[Call], ledger: Ledger, *, kill_after: int | None) -> None:
    """Send ``pending`` calls until none is left, or kill the hub after ``kill_after`` answers."""
    assert ledger.statuses is not None and ledger.accepted_tags is not None
    retry: list[Call] = []
    answered = 0
    killed = False

    async def one(client: httpx.AsyncClient) -> None:
        nonlocal answered, killed
        while pending and not killed:
            call = pending.popleft()
            path, body, headers = call.delivery.request(call.attempts)
            call.attempts += 1
            try:
                response = await client.post(hub.url + path, content=body, headers=headers)
            except httpx.HTTPError as exc:
                ledger.statuses[type(exc).__name__] += 1
                ledger.rejected_calls += 1
                retry.append(call)
            else:
                ledger.statuses[str(response.status_code)] += 1
                if 200 <= response.status_code < 300:
                    ledger.accepted_calls += 1
                    ledger.accepted_tags.add(call.delivery.tag)
                else:
                    ledger.rejected_calls += 1
                    retry.append(call)
            answered += 1
            if kill_after is not None and answered >= kill_after and not killed:
                killed = True
                hub.kill()  # the other calls in flight die with the connection

    limits = httpx.Limits(max_connections=SEND_CONCURRENCY)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        await asyncio.gather(*(one(client) for _ in range(SEND_CONCURRENCY)))
    pending.extendleft(reversed(retry))  # a platform retries what failed, before its newer calls


# ----- observations -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    channel: str
    target: str
    tag: str | None
    thread: str | None  # Slack thread_ts / email In-Reply-To


def replies(
    telegram: FakeTelegramAPI, slack: FakeSlackAPI, twilio: FakeTwilioAPI, relay: FakeSmtpRelay
) -> list[Reply]:
    def tag(text: str) -> str | None:
        found = TAG_RE.search(text)
        return found.group(0) if found else None

    out = [Reply("telegram", str(m["chat"]["id"]), tag(m["text"]), None) for m in telegram.sent]
    out += [Reply("slack", m.channel, tag(m.text), m.thread_ts) for m in slack.posted]
    out += [Reply("sms", m["To"], tag(m["Body"]), None) for m in twilio.messages]
    for relayed in list(relay.messages):
        part = relayed.message.get_body(preferencelist=("plain",))
        text = str(part.get_content()) if part is not None else ""
        out.append(Reply("email", ",".join(relayed.rcpt_tos), tag(text), relayed.message["In-Reply-To"]))
    return out


def unrecorded_sends(db: Path, replied: set[str | None]) -> set[str]:
    """Tags whose reply reached a fake while its outbox row is still pending: sent, but the kill came
    before the hub recorded it. No platform API here takes an idempotency key, so the next start sends
    these again (at-least-once); the test counts them apart from every other duplicate."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10) as conn:
        texts = [
            str(row[0])
            for row in conn.execute(
                "SELECT i.text FROM outbox o JOIN inbox i ON o.inbox_id = i.id WHERE o.status = 'pending'"
            )
        ]
    conn.close()
    tags = {found.group(0) for text in texts if (found := TAG_RE.search(text))}
    return tags & {tag for tag in replied if tag is not None}


def backlog(db: Path) -> tuple[int, int, int, int]:
    """(inbox rows, inbox pending, outbox pending, memory jobs pending), read while the hub runs."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10) as conn:
        row = conn.execute(
            "SELECT (SELECT count(*) FROM inbox),"
            " (SELECT count(*) FROM inbox WHERE status = 'pending'),"
            " (SELECT count(*) FROM outbox WHERE status = 'pending'),"
            " (SELECT count(*) FROM memory_jobs WHERE status = 'pending')"
        ).fetchone()
    conn.close()
    return int(row[0]), int(row[1]), int(row[2]), int(row[3])


# ----- the test ---------------------------------------------------------------------------------


async def test_kill_9_under_a_burst_loses_nothing_and_doubles_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    started = time.monotonic()
    calls = burst(deliveries=DELIVERIES, customers=CUSTOMERS, duplicate_share=DUPLICATE_SHARE)
    by_tag = {call.tag: call for call in calls}
    pending: deque[Call] = deque(Call(delivery) for delivery in calls)
    ledger = Ledger()

    with (
        FakeTelegramAPI(token=TELEGRAM_TOKEN) as telegram,
        FakeSlackAPI(team_id=SLACK_TEAM, bot_user_id=SLACK_BOT_USER) as slack,
        FakeTwilioAPI(account_sid=TWILIO_SID, auth_token=TWILIO_TOKEN) as twilio,
        FakeSmtpRelay() as relay,
        FakeOpenAI(delay=LLM_DELAY, responder=model) as llm,
    ):
        env = subprocess_env(
            tmp_path,
            THREADLINE_PUBLIC_BASE_URL=PUBLIC,
            THREADLINE_LLM__API_KEY="sk-test",
            THREADLINE_LLM__BASE_URL=llm.base_url,
            THREADLINE_LLM__MAX_RETRIES="0",
            THREADLINE_MEMORY__WRITE_POLICY="every_turn",
            THREADLINE_WORKER__POLL_INTERVAL="0.2",
            THREADLINE_WORKER__BACKOFF_BASE="0.2",
            THREADLINE_WORKER__BACKOFF_MAX="2",
            THREADLINE_TELEGRAM__BOT_TOKEN=TELEGRAM_TOKEN,
            THREADLINE_TELEGRAM__SECRET_TOKEN=TELEGRAM_SECRET,
            THREADLINE_TELEGRAM__API_BASE_URL=telegram.api_base_url,
            THREADLINE_SLACK__BOT_TOKEN=slack.token,
            THREADLINE_SLACK__SIGNING_SECRET=SLACK_SECRET,
            THREADLINE_SLACK__API_BASE_URL=slack.api_url,
            THREADLINE_TWILIO__ACCOUNT_SID=TWILIO_SID,
            THREADLINE_TWILIO__AUTH_TOKEN=TWILIO_TOKEN,
            THREADLINE_TWILIO__FROM_NUMBER=OUR_NUMBER,
            THREADLINE_TWILIO__API_BASE_URL=twilio.url,
            THREADLINE_EMAIL__ADDRESS=f"Threadline Support <{OUR_EMAIL}>",
            THREADLINE_EMAIL__SMTP_HOST="127.0.0.1",
            THREADLINE_EMAIL__SMTP_PORT=str(relay.port),
            THREADLINE_EMAIL__INBOUND_SIGNING_KEY=EMAIL_KEY,
            THREADLINE_EMAIL__AUTHSERV_ID=AUTHSERV_ID,
            THREADLINE_EMAIL__MAX_REPLIES_PER_HOUR="10000",
        )
        hub = ServeProcess(tmp_path / "serve.log", env)
        db = tmp_path / "data" / "threadline.db"
        window: set[str] = set()  # replies in flight at a kill (see ``unrecorded_sends``)
        try:
            # the burst, killed at each point, restarted, resumed with the platforms' retries
            done = 0
            for share in KILL_POINTS:
                await hub.start()
                await pump(hub, pending, ledger, kill_after=max(1, round(DELIVERIES * share) - done))
                done = round(DELIVERIES * share)
                await hub.reap()
                window |= unrecorded_sends(db, {r.tag for r in replies(telegram, slack, twilio, relay)})
            await hub.start()
            deadline = time.monotonic() + DRAIN_TIMEOUT
            while pending:
                assert time.monotonic() < deadline, f"calls still refused: {ledger.statuses}"
                await pump(hub, pending, ledger, kill_after=None)
            unique = len(by_tag)
            assert ledger.accepted_tags == set(by_tag), "a call was never accepted"

            # once more while the backlog drains
            replied_at_end = len(replies(telegram, slack, twilio, relay))
            kill_at = replied_at_end + max(1, int((unique - replied_at_end) * DRAIN_KILL_SHARE))
            deadline = time.monotonic() + DRAIN_TIMEOUT
            while len(replies(telegram, slack, twilio, relay)) < kill_at:
                assert time.monotonic() < deadline, f"the backlog does not drain: {hub.tail()}"
                await asyncio.sleep(0.05)
            hub.kill()
            await hub.reap()
            window |= unrecorded_sends(db, {r.tag for r in replies(telegram, slack, twilio, relay)})

            await hub.start()
            while True:
                rows, *left = backlog(db)
                if rows == unique and not any(left):
                    break
                assert time.monotonic() < deadline, f"not drained: {rows} rows, left {left}: {hub.tail()}"
                await asyncio.sleep(0.25)
            await hub.stop()
        finally:
            hub.kill()
            await hub.reap()
        sent = replies(telegram, slack, twilio, relay)
        llm_calls = len(llm.calls)

    # ----- what happened: replies per message, the store, the memories ---------------------------
    per_tag = Counter(reply.tag for reply in sent)
    doubled = {tag: n for tag, n in per_tag.items() if n > 1}
    lost = sorted(set(by_tag) - set(per_tag))
    # a reply the platform had taken when the kill came, before the hub recorded it, goes out again
    # once (there is no idempotency key at Telegram, Slack, Twilio or SMTP); any other repeat is a bug
    resent = {tag: n for tag, n in doubled.items() if tag in window and n == 2}
    unexplained = {tag: n for tag, n in doubled.items() if tag not in resent}
    replied_once = sum(1 for tag, n in per_tag.items() if n == 1 and tag is not None)

    with sqlite3.connect(db) as conn:
        inbox = conn.execute("SELECT id, status, customer_id, text FROM inbox").fetchall()
        outbox = Counter(
            row[0] for row in conn.execute("SELECT status FROM outbox WHERE idempotency_key LIKE 'reply:%'")
        )
        jobs = Counter(row[0] for row in conn.execute("SELECT status FROM memory_jobs"))
    conn.close()
    tag_of_row = {f"inbox:{row[0]}": found.group(0) for row in inbox if (found := TAG_RE.search(row[3]))}
    memory = LocalMemory(data_dir=tmp_path / "data", llm=LLMSettings())
    try:
        memories = [m for customer in {row[2] for row in inbox} for m in await memory.list(customer)]
    finally:
        await memory.aclose()
    written = Counter(m.message_ids for m in memories)

    suppressed = ledger.accepted_calls - unique
    with capsys.disabled():
        print(
            f"\ncrash test: accepted {unique}, replied once {replied_once},"
            f" duplicates suppressed {suppressed}, lost {len(lost)}"
            f" | re-sent after a kill in the send window {len(resent)}, other repeats {len(unexplained)}"
            f" | calls {DELIVERIES}, rejected and re-sent {ledger.rejected_calls},"
            f" answers {dict(ledger.statuses or {})}, kills {hub.kills}, starts {hub.starts},"
            f" memories {len(memories)}, LLM calls {llm_calls}, {time.monotonic() - started:.0f} s"
        )

    # ----- the store: every row done once; exactly one memory per message -----------------------
    assert len(inbox) == unique and {row[1] for row in inbox} == {"done"}
    assert sorted(tag_of_row.values()) == sorted(by_tag)
    assert outbox == Counter({"sent": unique}), outbox
    assert jobs == Counter({"done": unique}), jobs
    assert all(len(ids) == 1 and n == 1 for ids, n in written.items()), written.most_common(5)
    assert sorted(ids[0] for ids in written) == sorted(tag_of_row)
    for m in memories:
        found = TAG_RE.search(m.text)
        assert found is not None and found.group(0) == tag_of_row[m.message_ids[0]], m

    # ----- exactly one reply per message, to the right place --------------------------------------
    assert None not in per_tag, [r for r in sent if r.tag is None][:5]
    assert not lost, f"{len(lost)} accepted messages never answered: {lost[:10]}"
    for reply in sent:
        assert reply.tag is not None
        delivery = by_tag[reply.tag]
        assert (reply.channel, reply.target) == (delivery.customer.channel, delivery.customer.target)
        if reply.channel == "slack":
            assert reply.thread == delivery.slack_ts
        if reply.channel == "email":
            assert reply.thread == delivery.email_id
    assert not unexplained, (
        f"{len(unexplained)} messages answered more than once outside a kill's send window:"
        f" {sorted(unexplained.items())[:10]}"
    )
    if STRICT_EXACTLY_ONCE:
        assert not resent, f"{len(resent)} replies sent again after a kill: {sorted(resent)[:10]}"
    assert replied_once + len(resent) == unique == len(memories)
