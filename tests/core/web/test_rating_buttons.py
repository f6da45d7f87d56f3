"""Satisfaction in each channel's own way, end to end through the real app (offline rules open and resolve
the case): on Telegram the rating question carries an inline keyboard and a press (a ``callback_query``
update) rates the case; on Slack it carries Block Kit buttons and a press (a signed ``block_actions``
interaction) rates it. SMS and email keep the typed digit (``test_cases.py``).

A press is input like any other: a redelivered press is a no-op, a second press is thanked without
changing the rating, a press naming another customer's case (a modified client can send any data), a
press in a group, a press with a bad signature and a malformed interaction change nothing.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from sqlalchemy import func, select

from core.pipeline.cases import RATING_QUESTION
from core.pipeline.ratings import RATING_ALREADY, RATING_THANKS
from core.store.models import Case, InboxRow, Turn
from tests.apphost import Served, serving
from tests.core.web import test_cases
from tests.core.web.test_app_slack import sign
from tests.core.web.test_cases import (
    SLACK_USER,
    TEAM,
    TELEGRAM_SECRET,
    Platforms,
    metric,
    settings_for,
    settle,
    slack_dm,
    telegram,
)

platforms = test_cases.platforms  # the fake Twilio, Telegram and Slack (a fixture)
DM = "D024BE91L"  # the direct message of message_im.json


@pytest.fixture
async def offline(platforms: Platforms, tmp_path: Path) -> AsyncIterator[Served]:
    async with serving(settings_for(platforms, tmp_path / "offline")) as app:
        yield app


async def post_update(served: Served, update: dict[str, Any]) -> None:
    response = await served.client.post(
        "/webhooks/telegram",
        content=json.dumps(update),
        headers={"content-type": "application/json", "x-telegram-bot-api-secret-token": TELEGRAM_SECRET},
    )
    assert response.status_code == 200


def press(
    update_id: int, query_id: str, data: str, message: dict[str, Any], *, user: int = 42
) -> dict[str, Any]:
    """A ``callback_query`` update as Telegram sends it for a press on ``message`` (our bot's message)."""
    shown = {k: v for k, v in message.items() if k != "params"}
    return {
        "update_id": update_id,
        "callback_query": {
            "id": query_id,
            "from": {"id": user, "is_bot": False, "first_name": "Ana"},
            "chat_instance": "-5551234",
            "data": data,
            "message": shown,
        },
    }


async def rating_of(served: Served, case_id: int) -> int | None:
    async with served.hub.db.read() as session:
        return await session.scalar(select(Case.rating).where(Case.id == case_id))


async def inbox_count(served: Served) -> int:
    async with served.hub.db.read() as session:
        return int(await session.scalar(select(func.count()).select_from(InboxRow)) or 0)


async def test_telegram_inline_keyboard_rates_the_case_once(offline: Served, platforms: Platforms) -> None:
    _, tg, _ = platforms
    await telegram(offline, 1, "My router is broken since Monday")
    await telegram(offline, 2, "that fixed it, thanks")
    await settle(offline)
    question = tg.sent[-1]
    assert question["text"].endswith(RATING_QUESTION)
    keyboard = question["reply_markup"]["inline_keyboard"]
    assert [[(b["text"], b["callback_data"]) for b in row] for row in keyboard] == [
        [(str(n), f"rate:1:{n}") for n in range(1, 6)]
    ]
    assert "reply_markup" not in tg.sent[0]  # only the rating question has buttons

    await post_update(offline, press(3, "cbq-1", "rate:1:4", question))
    await post_update(offline, press(3, "cbq-1", "rate:1:4", question))  # Telegram redelivers it
    await settle(offline)
    assert await rating_of(offline, 1) == 4
    assert [m["text"] for m in tg.sent[2:]] == [RATING_THANKS]  # one thanks for the redelivered press
    assert [c["callback_query_id"] for c in tg.calls_to("answerCallbackQuery")] == ["cbq-1"]
    (edit,) = tg.calls_to("editMessageReplyMarkup")
    assert str(edit["message_id"]) == str(question["message_id"])
    assert "reply_markup" not in tg.sent[1]  # the keyboard is gone from the question
    async with offline.hub.db.read() as session:
        turns = list(await session.scalars(select(Turn.text).order_by(Turn.id)))
    assert turns[-2:] == ["4", RATING_THANKS]  # the press is logged as its label, as the customer saw it

    # a second press (a client that kept the old keyboard) is thanked and changes nothing
    await post_update(offline, press(4, "cbq-2", "rate:1:1", question))
    await settle(offline)
    assert tg.sent[-1]["text"] == RATING_ALREADY and await rating_of(offline, 1) == 4
    scraped = (await offline.client.get("/metrics")).text
    assert metric(scraped, "threadline_case_ratings_total") == 1.0


async def test_telegram_press_for_someone_elses_case_or_in_a_group_changes_nothing(
    offline: Served,
    platforms: Platforms,
) -> None:
    _, tg, _ = platforms
    await telegram(offline, 1, "My router is broken since Monday")
    await telegram(offline, 2, "that fixed it, thanks")
    await settle(offline)
    question = tg.sent[-1]
    sent_before = len(tg.sent)

    # another customer's client sends case 1's data from their own chat (a modified client can)
    theirs = {**question, "chat": {"id": 77, "type": "private", "first_name": "Mallory"}}
    await post_update(offline, press(3, "cbq-x", "rate:1:1", theirs, user=77))
    # the owner presses in a group chat, where the case is not theirs to rate in public
    group = {**question, "chat": {"id": -100123, "type": "supergroup", "title": "Team"}}
    await post_update(offline, press(4, "cbq-y", "rate:1:2", group))
    # data that is not a rating, and a case that does not exist
    await post_update(offline, press(5, "cbq-z", "rate:1:9", question))
    await post_update(offline, press(6, "cbq-w", "rate:999:5", question))
    await settle(offline)
    assert await rating_of(offline, 1) is None
    assert all(m["text"] != RATING_THANKS for m in tg.sent[sent_before:])
    assert metric((await offline.client.get("/metrics")).text, "threadline_case_ratings_total") == 0.0


def interaction(case_id: int, rating: int, *, message_ts: str, thread_ts: str, action_ts: str) -> bytes:
    payload = {
        "type": "block_actions",
        "team": {"id": TEAM, "domain": "acme"},
        "user": {"id": SLACK_USER, "username": "ana", "team_id": TEAM},
        "api_app_id": "A0PNCHHK2",
        "token": "one-long-verification-token",
        "container": {"type": "message", "message_ts": message_ts, "channel_id": DM, "is_ephemeral": False},
        "trigger_id": "1234.5678.abcdef",
        "channel": {"id": DM, "name": "directmessage"},
        "message": {"type": "message", "ts": message_ts, "thread_ts": thread_ts, "text": RATING_QUESTION},
        "response_url": "https://hooks.slack.com/actions/T123/456/abc",
        "actions": [
            {
                "action_id": f"threadline_button_{rating - 1}",
                "block_id": "threadline_buttons",
                "text": {"type": "plain_text", "text": str(rating)},
                "value": f"rate:{case_id}:{rating}",
                "type": "button",
                "action_ts": action_ts,
            }
        ],
    }
    return urlencode({"payload": json.dumps(payload)}).encode()


async def post_interaction(served: Served, body: bytes, *, headers: dict[str, str] | None = None) -> int:
    response = await served.client.post(
        "/webhooks/slack/interactive",
        content=body,
        headers={"content-type": "application/x-www-form-urlencoded", **(headers or sign(body))},
    )
    return response.status_code


async def test_slack_buttons_rate_the_case_and_refuse_forgeries(
    offline: Served, platforms: Platforms
) -> None:
    _, _, slack = platforms
    await slack_dm(offline, "Ev1", "the invoice total is wrong", ts="1700000001.000100")
    await slack_dm(offline, "Ev2", "that fixed it, thanks", ts="1700000002.000100")
    await settle(offline)
    question = slack.posted[-1]
    assert question.text.endswith(RATING_QUESTION) and question.blocks is not None
    assert question.blocks[0]["text"]["text"] == question.text  # the text is shown in its section
    buttons = question.blocks[-1]["elements"]
    assert [(b["text"]["text"], b["value"]) for b in buttons] == [
        (str(n), f"rate:1:{n}") for n in range(1, 6)
    ]
    assert slack.posted[0].blocks is None

    rows = await inbox_count(offline)
    body = interaction(
        1, 5, message_ts=question.ts, thread_ts="1700000002.000100", action_ts=f"{time.time():.6f}"
    )
    wrong = sign(body, secret="not-our-signing-secret-0123456789")
    assert await post_interaction(offline, body, headers=wrong) == 401
    assert await post_interaction(offline, b"payload=%7Bnot+json", headers=None) == 400
    assert await post_interaction(offline, b"not a form at all", headers=None) == 400
    assert await inbox_count(offline) == rows  # nothing stored for any of them

    assert await post_interaction(offline, body) == 200
    assert await post_interaction(offline, body) == 200  # the same press again: a no-op
    await settle(offline)
    assert await rating_of(offline, 1) == 5
    thanks = [p for p in slack.posted if p.text == RATING_THANKS]
    assert len(thanks) == 1 and thanks[0].channel == DM and thanks[0].thread_ts == "1700000002.000100"
    # (the payload's response_url, on hooks.slack.com, is never called: the autouse guard would fail it)
    assert {call.method for call in slack.calls} <= {"chat.postMessage", "auth.test", "users.info"}

    # a press that names a case of nobody's (or someone else's): refused quietly
    forged = interaction(
        42, 1, message_ts=question.ts, thread_ts="1700000002.000100", action_ts="1700000100.1"
    )
    assert await post_interaction(offline, forged) == 200
    await settle(offline)
    assert await rating_of(offline, 1) == 5 and len([p for p in slack.posted if p.text == RATING_THANKS]) == 1
