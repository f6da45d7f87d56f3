"""Slack buttons: Block Kit for a reply that offers choices, and reading a press of one of them.

Out: a reply with ``OutboundMessage.buttons`` is posted with ``blocks``: its text in ``section`` blocks
(3,000 characters each, Slack's limit) and one ``actions`` block of buttons whose ``action_id`` starts with
``threadline_button_`` and whose ``value`` is the button's value. ``text`` stays the whole part: Slack
shows it in notifications and where blocks cannot be drawn.

In: Slack posts a press to the app's Interactivity Request URL (``/webhooks/slack/interactive``) as a form
whose one field, ``payload``, is JSON, signed like the events (``SlackAdapter.verify``); through Socket
Mode the same payload arrives as an ``interactive`` envelope. A ``block_actions`` payload pressing one of
our buttons becomes an ``InboundMessage``: its text the button's label, ``extras["button"]`` its value
(which the core checks: a modified client can send any value), the sender the presser, private only in a
direct message (a ``D…`` channel), and the inbox key ``action:<channel>:<message ts>:<user>:<action ts>``
so a redelivered payload is a no-op. Every other interaction (shortcuts, modals, other apps' blocks) is
noise. The payload's ``response_url`` is never followed: replies go through ``chat.postMessage`` like
every other.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

from core.errors import BadRequest, InvalidAddress
from core.messages import Address, Assurance, Button, InboundMessage

ACTION_PREFIX = "threadline_button_"
BLOCK_ID = "threadline_buttons"
MAX_SECTION_CHARS = 3_000  # a section block's text
MAX_LABEL_CHARS = 75  # a button's plain_text label
_MAX_PAYLOAD_FIELDS = 4


def blocks_for(text: str, buttons: Sequence[Button]) -> list[dict[str, Any]]:
    """``text`` in section blocks, then one actions block with ``buttons`` (text already escaped)."""
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": text[start : start + MAX_SECTION_CHARS]}}
        for start in range(0, len(text), MAX_SECTION_CHARS)
    ]
    blocks.append(
        {
            "type": "actions",
            "block_id": BLOCK_ID,
            "elements": [
                {
                    "type": "button",
                    "action_id": f"{ACTION_PREFIX}{index}",
                    "text": {"type": "plain_text", "text": button.label[:MAX_LABEL_CHARS]},
                    "value": button.value,
                }
                for index, button in enumerate(buttons[:25])  # an actions block holds 25 elements
            ],
        }
    )
    return blocks


def interaction_payload(body: bytes) -> dict[str, Any]:
    """The JSON ``payload`` field of an interaction's form body; ``BadRequest`` for anything else."""
    try:
        form = parse_qs(body.decode("utf-8"), strict_parsing=True, max_num_fields=_MAX_PAYLOAD_FIELDS)
    except (UnicodeDecodeError, ValueError):
        raise BadRequest("Slack interaction body is not a form", status=400) from None
    values = form.get("payload")
    if not values or len(values) != 1:
        raise BadRequest("Slack interaction without one payload field", status=400)
    try:
        payload = json.loads(values[0])
    except (ValueError, RecursionError):
        raise BadRequest("Slack interaction payload is not JSON", status=400) from None
    if not isinstance(payload, dict):
        raise BadRequest("Slack interaction payload is not a JSON object", status=400)
    return payload


def button_press(
    payload: Mapping[str, Any], *, normalize: Callable[[str], Address], channel_name: str = "slack"
) -> InboundMessage | None:
    """The message a ``block_actions`` press of one of our buttons is; None for any other interaction."""
    if payload.get("type") != "block_actions":
        return None
    actions = payload.get("actions")
    ours = [
        action
        for action in (actions if isinstance(actions, list) else ())
        if isinstance(action, dict) and str(action.get("action_id", "")).startswith(ACTION_PREFIX)
    ]
    if not ours:
        return None
    action = ours[0]
    value, action_ts = action.get("value"), action.get("action_ts")
    user, container = payload.get("user"), payload.get("container")
    if not isinstance(user, dict) or not isinstance(container, dict):
        raise BadRequest("Slack block_actions without a user or container", status=422)
    user_id, channel, message_ts = user.get("id"), container.get("channel_id"), container.get("message_ts")
    team = user.get("team_id") or _id_of(payload.get("team"))
    fields = (value, action_ts, user_id, channel, message_ts, team)
    if not all(isinstance(field, str) and field for field in fields):
        raise BadRequest("Slack block_actions without value, action_ts, user, team or channel", status=422)
    assert isinstance(value, str) and isinstance(channel, str) and isinstance(message_ts, str)
    try:
        sender = normalize(f"slack:{team}:{user_id}")
    except InvalidAddress:
        raise BadRequest("Slack interaction with an unusable team or user id", status=422) from None
    message = payload.get("message")
    thread_ts = container.get("thread_ts") or (
        message.get("thread_ts") if isinstance(message, dict) else None
    )
    label = _label(action) or "[pressed a button]"
    return InboundMessage(
        channel=channel_name,
        provider_message_id=f"action:{channel}:{message_ts}:{user_id}:{action_ts}",
        sender=sender,
        text=label,
        reply_target={"channel": channel, "thread_ts": thread_ts if isinstance(thread_ts, str) else None},
        received_at=_pressed_at(str(action_ts)),
        sender_assurance=Assurance.PLATFORM_ATTESTED,  # Slack signs the payload and names the member
        private=channel.startswith("D"),  # a direct message with the app; any other is read by others
        extras={"event_type": "block_actions", "button": value[:2000], "message_ts": message_ts},
    )


def _id_of(value: object) -> object:
    return value.get("id") if isinstance(value, dict) else None


def _label(action: Mapping[str, Any]) -> str:
    text = action.get("text")
    label = text.get("text") if isinstance(text, dict) else None
    return label[:MAX_LABEL_CHARS] if isinstance(label, str) else ""


def _pressed_at(action_ts: str) -> datetime:
    try:
        seconds = float(action_ts)
    except ValueError:
        return datetime.now(UTC)
    return datetime.fromtimestamp(seconds, tz=UTC) if 0 < seconds < 1e11 else datetime.now(UTC)
