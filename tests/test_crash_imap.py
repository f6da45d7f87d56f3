"""Crash test of email by IMAP: ``kill -9`` the hub while it reads a mailbox; every mail answered, none twice.

``threadline serve`` runs as a subprocess on SQLite with the email channel reading ``FakeImapServer`` (a
real IMAP server on a loopback socket, IDLE on) and replying through ``FakeSmtpRelay``, with a fake LLM
that names the tag of the mail it answers. Mail keeps arriving in the mailbox (pushed to the idling hub)
while the hub is killed with SIGKILL in the middle of the stream (fetches, commits, ``\\Seen`` flags and
replies in flight), and while it is down; then it is started again on the same data dir. At the end:

- every mail is ``\\Seen`` and has exactly one inbox row;
- every mail got exactly one reply, in its thread, to its sender; the one exception is a reply the relay
  took just before the kill, before the hub recorded it (SMTP has no idempotency key), which goes out once
  more: counted apart, as ``tests/test_crash.py`` does. A mail fetched twice (committed, killed before its
  flag) is never answered twice.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.conftest import subprocess_env
from tests.crash_support import AUTHSERV_ID, OUR_EMAIL, TAG_RE, ServeProcess, model, tag_of
from tests.fakes.imap_server import FakeImapServer
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.smtp_relay import FakeSmtpRelay

pytestmark = [pytest.mark.slow, pytest.mark.serial]

MAILS = 40
CUSTOMERS = 8
ARRIVAL_INTERVAL = 0.05  # seconds between two mails landing in the mailbox
KILL_AFTER_ROWS = 15  # kill -9 once this many mails are committed (more still arriving and in flight)
LLM_DELAY = 0.05
PASSWORD = "crash-imap-password"
DRAIN_TIMEOUT = 120.0


def message_id(k: int) -> str:
    return f"<imap-crash-{k}@mail.example.com>"


def customer(k: int) -> str:
    return f"customer{k % CUSTOMERS}@example.com"


def mime(k: int) -> bytes:
    return (
        f"Authentication-Results: {AUTHSERV_ID}; dmarc=pass header.from=example.com\r\n"
        f"Received: from mail.example.com ([198.51.100.7]) by {AUTHSERV_ID}; 1 Dec 2026\r\n"
        f"From: {customer(k)}\r\nTo: Threadline Support <{OUR_EMAIL}>\r\nSubject: Order question\r\n"
        f"Message-ID: {message_id(k)}\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        f"Hello, a question about {tag_of(k)}, my order from last week\r\n"
    ).encode()


def replies(relay: FakeSmtpRelay) -> list[tuple[str | None, str, str]]:
    """(tag, recipient, In-Reply-To) of every reply the relay took."""
    out = []
    for relayed in list(relay.messages):
        part = relayed.message.get_body(preferencelist=("plain",))
        text = str(part.get_content()) if part is not None else ""
        found = TAG_RE.search(text)
        out.append(
            (
                found.group(0) if found else None,
                ",".join(relayed.rcpt_tos),
                str(relayed.message["In-Reply-To"]),
            )
        )
    return out


def unrecorded_sends(db: Path, replied: set[str | None]) -> set[str]:
    """Tags whose reply reached the relay while its outbox row is still pending (``tests/test_crash.py``)."""
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


def backlog(db: Path) -> tuple[int, int, int]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10) as conn:
        row = conn.execute(
            "SELECT (SELECT count(*) FROM inbox), (SELECT count(*) FROM inbox WHERE status = 'pending'),"
            " (SELECT count(*) FROM outbox WHERE status = 'pending')"
        ).fetchone()
    conn.close()
    return int(row[0]), int(row[1]), int(row[2])


async def test_kill_9_while_reading_the_mailbox_answers_every_mail_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    started = time.monotonic()
    tags = {tag_of(k): k for k in range(MAILS)}
    with (
        FakeImapServer(username=OUR_EMAIL, password=PASSWORD) as imap,
        FakeSmtpRelay() as relay,
        FakeOpenAI(delay=LLM_DELAY, responder=model) as llm,
    ):
        env = subprocess_env(
            tmp_path,
            THREADLINE_LLM__API_KEY="sk-test",
            THREADLINE_LLM__BASE_URL=llm.base_url,
            THREADLINE_LLM__MAX_RETRIES="0",
            THREADLINE_WORKER__POLL_INTERVAL="0.2",
            THREADLINE_WORKER__BACKOFF_BASE="0.2",
            THREADLINE_WORKER__BACKOFF_MAX="2",
            THREADLINE_EMAIL__ADDRESS=f"Threadline Support <{OUR_EMAIL}>",
            THREADLINE_EMAIL__SMTP_HOST="127.0.0.1",
            THREADLINE_EMAIL__SMTP_PORT=str(relay.port),
            THREADLINE_EMAIL__AUTHSERV_ID=AUTHSERV_ID,
            THREADLINE_EMAIL__MAX_REPLIES_PER_HOUR="10000",
            THREADLINE_EMAIL__IMAP_HOST="127.0.0.1",
            THREADLINE_EMAIL__IMAP_PORT=str(imap.port),
            THREADLINE_EMAIL__IMAP_USERNAME=OUR_EMAIL,
            THREADLINE_EMAIL__IMAP_PASSWORD=PASSWORD,
            THREADLINE_EMAIL__IMAP_TLS="false",
        )
        hub = ServeProcess(tmp_path / "serve.log", env)
        db = tmp_path / "data" / "threadline.db"

        async def arrive() -> None:
            for k in range(MAILS):
                imap.deliver(mime(k))
                await asyncio.sleep(ARRIVAL_INTERVAL)

        try:
            for k in range(5):  # some mail is waiting before the hub first starts
                imap.deliver(mime(MAILS + k))
                tags[tag_of(MAILS + k)] = MAILS + k
            await hub.start()
            stream = asyncio.create_task(arrive())
            deadline = time.monotonic() + DRAIN_TIMEOUT
            while backlog(db)[0] < KILL_AFTER_ROWS:
                assert time.monotonic() < deadline, f"nothing committed: {hub.tail()}"
                await asyncio.sleep(0.02)
            hub.kill()
            await hub.reap()
            window = unrecorded_sends(db, {tag for tag, _, _ in replies(relay)})
            await asyncio.sleep(0.3)  # mail lands while the hub is down
            await hub.start()
            await stream
            while True:
                rows, *left = backlog(db)
                if rows == len(tags) and not any(left) and not imap.unseen():
                    break
                assert time.monotonic() < deadline, f"not drained: {rows} rows, {left}: {hub.tail()}"
                await asyncio.sleep(0.1)
            await hub.stop()
        finally:
            hub.kill()
            await hub.reap()
        sent = replies(relay)
        fetches = imap.commands["FETCH"]

    per_tag = Counter(tag for tag, _, _ in sent)
    doubled = {tag: n for tag, n in per_tag.items() if n > 1}
    resent = {tag for tag, n in doubled.items() if tag in window and n == 2}
    with capsys.disabled():
        print(
            f"\nimap crash test: mails {len(tags)}, replied {len(per_tag)},"
            f" re-sent in the kill's send window {len(resent)}, other repeats {len(doubled) - len(resent)},"
            f" kills {hub.kills}, starts {hub.starts}, UID FETCH commands {fetches},"
            f" {time.monotonic() - started:.0f} s"
        )
    assert set(per_tag) == set(tags), f"unanswered: {sorted(set(tags) - set(per_tag))[:10]}"
    assert not set(doubled) - resent, f"answered twice: {sorted(set(doubled) - resent)}"
    for tag, recipient, in_reply_to in sent:
        assert tag is not None
        assert (recipient, in_reply_to) == (customer(tags[tag]), message_id(tags[tag]))
    with sqlite3.connect(db) as conn:
        ids = [
            row[0] for row in conn.execute("SELECT provider_message_id FROM inbox WHERE channel = 'email'")
        ]
    conn.close()
    assert sorted(ids) == sorted(f"{message_id(k)}|{OUR_EMAIL}" for k in tags.values())
