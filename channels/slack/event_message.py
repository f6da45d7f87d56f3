"""A Slack ``event_callback`` → the customer message it carries (``SlackAdapter.parse_event``, for the
webhook and Socket Mode alike): a ``message`` (channel or DM) or an ``app_mention``, sent by
``slack:TEAM:USER``. What an event means (noise, mentions of us, time, extras) is ``channels.slack.events``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from channels.slack.events import (
    _EVENT_TYPES,
    _bot_authorizations,
    _extras,
    _mentions,
    _noise_reason,
    _received_at,
    _strip_mentions,
)
from channels.slack.files import media_refs
from core.errors import BadRequest, InvalidAddress
from core.messages import Address, Assurance, InboundMessage

log = logging.getLogger(__name__)


def event_message(
    payload: Mapping[str, Any],
    *,
    own_user_ids: set[str],
    normalize: Callable[[str], Address],
    channel_name: str = "slack",
    retry_num: str | None = None,
    retry_reason: str | None = None,
) -> InboundMessage | None:
    """The customer message of an authentic ``event_callback`` payload, keyed by its ``event_id``; None for
    an event that is not a person writing to us (noise, a channel message that mentions us, nothing but a
    mention). ``own_user_ids``: our bot user as far as we know it. ``BadRequest`` when it cannot be read."""
    event = payload.get("event")
    event_id = payload.get("event_id")
    if not isinstance(event, dict) or not isinstance(event_id, str) or not event_id:
        raise BadRequest("event_callback without an event or event_id", status=400)
    event_type = event.get("type")
    if not isinstance(event_type, str) or not isinstance(event.get("subtype"), str | None):
        raise BadRequest("Slack event with a malformed type or subtype", status=400)
    if event_type not in _EVENT_TYPES:
        log.debug("Slack event %s of type %r ignored", event_id, event_type)
        return None
    own_ids = own_user_ids | _bot_authorizations(payload)
    user = event.get("user")
    noise = _noise_reason(event, user, own_ids)
    if noise is not None:
        log.debug("Slack event %s dropped: %s", event_id, noise)
        return None
    assert isinstance(user, str)  # _noise_reason drops events without a user
    channel, ts = event.get("channel"), event.get("ts")
    if not isinstance(channel, str) or not channel or not isinstance(ts, str) or not ts:
        raise BadRequest("Slack message event without channel or ts", status=422)
    text = event.get("text", "")
    assert isinstance(text, str)  # _noise_reason drops events whose text is not a string
    if event_type == "message" and event.get("channel_type") != "im" and _mentions(text, own_ids):
        # the app_mention event for the same message carries it; answering both would reply twice
        log.debug("Slack event %s dropped: channel message that mentions us", event_id)
        return None
    text = _strip_mentions(text, own_ids)
    files = media_refs(event)  # ``channels.slack.files``: fetched by the worker, with the bot token
    if not text and not files:
        log.debug("Slack event %s dropped: nothing but a mention", event_id)
        return None
    team = event.get("user_team") or payload.get("team_id")
    if not isinstance(team, str) or not team:
        raise BadRequest("Slack event without a team id", status=422)
    try:
        sender = normalize(f"slack:{team}:{user}")
    except InvalidAddress:
        raise BadRequest("Slack event with an unusable team or user id", status=422) from None
    thread_ts = event.get("thread_ts")
    return InboundMessage(
        channel=channel_name,
        provider_message_id=event_id,
        sender=sender,
        text=text,
        reply_target={"channel": channel, "thread_ts": thread_ts if isinstance(thread_ts, str) else ts},
        received_at=_received_at(payload, ts),
        attachments=files,
        sender_assurance=Assurance.PLATFORM_ATTESTED,  # Slack signs the event and names the member
        # a direct message only: a channel message or an app_mention is read by the whole channel
        private=event_type == "message" and event.get("channel_type") == "im",
        extras=_extras(payload, event, retry_num, retry_reason),
    )
