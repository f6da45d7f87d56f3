"""Slack files end to end through the real app: a signed ``file_share`` event, the worker's fetch of
``url_private`` with the bot token (``channels.slack.files``) at the fake Slack.

A shared screenshot is stored once under a safe name and answered; a ``url_private`` on another host is
refused without a request to it (the token never leaves Slack), and so is a redirect to another host; a
token without ``files:read`` (Slack answers its sign-in page) is refused; a 502 makes the turn retry, with
one reply.
The customer is told, and nothing is written outside the data dir.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy import select

from core.media.store import digest_of
from core.settings import AttachmentSettings, SlackSettings
from core.store.models import AttachmentRow, Turn
from tests.apphost import Served, app_settings, serving
from tests.fakes.slack_api import DEFAULT_TOKEN, FakeSlackAPI

SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
TEAM = "T123ABC456"
CUSTOMER = "U123ABC456"
DM = "D024BE91L"
BOT_USER = "UBOT0001"
LIMIT = 64 * 1024
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 12


@pytest.fixture
async def fake() -> AsyncIterator[FakeSlackAPI]:
    async with FakeSlackAPI(token=DEFAULT_TOKEN, team_id=TEAM, bot_user_id=BOT_USER) as server:
        yield server


@pytest.fixture
async def elsewhere() -> AsyncIterator[FakeSlackAPI]:
    """Another host serving the same file to the same token: it must never see the token."""
    async with FakeSlackAPI(token=DEFAULT_TOKEN, team_id=TEAM, bot_user_id=BOT_USER) as server:
        yield server


@pytest.fixture
async def served(fake: FakeSlackAPI, tmp_path: Path) -> AsyncIterator[Served]:
    slack = SlackSettings(
        bot_token=SecretStr(DEFAULT_TOKEN), signing_secret=SecretStr(SECRET), api_base_url=fake.api_url
    )
    settings = app_settings(tmp_path / "data", slack=slack, attachments=AttachmentSettings(max_bytes=LIMIT))
    async with serving(settings) as app:
        yield app


async def share(served: Served, event_id: str, text: str, files: list[dict[str, Any]]) -> None:
    """A signed ``file_share`` message in the customer's DM with us; waits until it is answered."""
    ts = f"{time.time():.6f}"
    payload = {
        "token": "one-long-verification-token",
        "team_id": TEAM,
        "api_app_id": "A123ABC456",
        "type": "event_callback",
        "event_id": event_id,
        "event_time": int(time.time()),
        "authorizations": [{"team_id": TEAM, "user_id": BOT_USER, "is_bot": True}],
        "event": {
            "type": "message",
            "subtype": "file_share",
            "channel": DM,
            "channel_type": "im",
            "user": CUSTOMER,
            "text": text,
            "ts": ts,
            "event_ts": ts,
            "files": files,
            "upload": False,
        },
    }
    body = json.dumps(payload).encode()
    stamp = str(int(time.time()))
    digest = hmac.new(SECRET.encode(), b"v0:" + stamp.encode() + b":" + body, hashlib.sha256).hexdigest()
    response = await served.client.post(
        "/webhooks/slack/events",
        content=body,
        headers={
            "content-type": "application/json",
            "x-slack-request-timestamp": stamp,
            "x-slack-signature": f"v0={digest}",
        },
    )
    assert response.status_code == 200
    assert await served.hub.wait_idle(timeout=60) == {"inbox": 0, "outbox": 0, "memory": 0}


async def attachment_rows(served: Served) -> list[AttachmentRow]:
    async with served.hub.db.read() as session:
        return list(await session.scalars(select(AttachmentRow).order_by(AttachmentRow.id)))


def stored_files(tmp_path: Path) -> list[Path]:
    assert all(path.is_relative_to(tmp_path / "data") for path in tmp_path.rglob("*") if path.is_file())
    media = tmp_path / "data" / "media"
    found = [path for path in media.rglob("*") if path.is_file()] if media.exists() else []
    assert all(re.fullmatch(r"[0-9a-f]{64}", path.name) for path in found)
    return found


async def test_a_shared_file_is_fetched_with_the_bot_token_stored_once_and_answered(
    served: Served, fake: FakeSlackAPI, tmp_path: Path
) -> None:
    shot = fake.add_file(PNG, name="../../screen shot.png", mimetype="image/png")
    await share(served, "EvF0001", "", [shot])  # a file without a word is still a message
    await share(served, "EvF0002", "same again", [shot])

    rows = await attachment_rows(served)
    assert [(r.name, r.media_type, r.size, r.status, r.sha256) for r in rows] == [
        ("screen shot.png", "image/png", len(PNG), "stored", digest_of(PNG)),
        ("screen shot.png", "image/png", len(PNG), "stored", digest_of(PNG)),
    ]
    media = tmp_path / "data" / "media"
    assert stored_files(tmp_path) == [media / digest_of(PNG)[:2] / digest_of(PNG)]
    assert not list(tmp_path.rglob("screen shot.png"))
    assert [(r.authorized, r.path.startswith(f"/files-pri/{TEAM}-")) for r in fake.file_requests] == [
        (True, True),
        (True, True),
    ]
    assert [(p.channel, p.text.startswith("I couldn't")) for p in fake.posted] == [(DM, False), (DM, False)]
    async with served.hub.db.read() as session:
        turns = [t.text for t in await session.scalars(select(Turn).where(Turn.role == "customer"))]
    assert turns[0] == "[attached: screen shot.png (image/png, 3 KB)]"


async def test_files_elsewhere_redirected_elsewhere_or_behind_the_sign_in_page_are_refused(
    served: Served, fake: FakeSlackAPI, elsewhere: FakeSlackAPI, tmp_path: Path
) -> None:
    foreign = elsewhere.add_file(PNG, name="elsewhere.png", mimetype="image/png")
    await share(served, "EvF0101", "on another host", [foreign])
    fake.redirect_file_to(foreign["url_private"])
    await share(served, "EvF0102", "redirected", [fake.add_file(PNG, name="moved.png", mimetype="image/png")])
    fake.files_scope = False  # the token lacks files:read: Slack answers 200 with its sign-in page
    await share(served, "EvF0103", "no scope", [fake.add_file(PNG, name="scoped.png", mimetype="image/png")])

    assert elsewhere.file_requests == [] and elsewhere.calls == []  # the token never went there
    rows = await attachment_rows(served)
    assert [(r.name, r.status, r.reason) for r in rows] == [
        ("elsewhere.png", "refused", "elsewhere.png is not on Slack's servers"),
        ("moved.png", "refused", "moved.png is not on Slack's servers"),
        ("scoped.png", "refused", "scoped.png could not be read from Slack"),
    ]
    assert [p.text.split("\n\n")[0] for p in fake.posted] == [
        "I couldn't take one of your files: elsewhere.png is not on Slack's servers.",
        "I couldn't take one of your files: moved.png is not on Slack's servers.",
        "I couldn't take one of your files: scoped.png could not be read from Slack.",
    ]
    assert stored_files(tmp_path) == []


async def test_a_502_then_success_answers_once(served: Served, fake: FakeSlackAPI, tmp_path: Path) -> None:
    fake.push_file(502)
    await share(served, "EvF0201", "here", [fake.add_file(PNG, name="part.png", mimetype="image/png")])

    assert len(fake.file_requests) == 2  # failed once, then fetched
    rows = await attachment_rows(served)
    assert [(r.status, r.sha256) for r in rows] == [("stored", digest_of(PNG))]
    assert len(fake.posted) == 1
    assert len(stored_files(tmp_path)) == 1
