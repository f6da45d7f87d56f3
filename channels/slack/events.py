"""Reading a Slack ``event_callback``: which events are a person writing to us, and what to keep of them.

Used by ``channels.slack.event_message`` (behind ``SlackAdapter.parse_event``), for the webhook and Socket
Mode alike: the event types we answer, noise (bots, our own messages, subtypes that are not a person
writing), mentions of our bot user, the time the message was sent and the ``extras`` kept with it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

# Message subtypes that are still a person writing to us; every other subtype is noise.
_PERSON_SUBTYPES = frozenset({"file_share", "thread_broadcast", "me_message"})
_EVENT_TYPES = frozenset({"message", "app_mention"})


def _bot_authorizations(payload: Mapping[str, Any]) -> set[str]:
    """Our bot user's id as the envelope's ``authorizations`` give it (the entries with ``is_bot``)."""
    found: set[str] = set()
    authorizations = payload.get("authorizations")
    if isinstance(authorizations, list):
        for item in authorizations:
            if isinstance(item, dict) and item.get("is_bot") is True and isinstance(item.get("user_id"), str):
                found.add(item["user_id"])
    return found


def _noise_reason(event: Mapping[str, Any], user: object, own_ids: set[str]) -> str | None:
    if event.get("bot_id"):
        return "bot message"
    subtype = event.get("subtype")
    if subtype and subtype not in _PERSON_SUBTYPES:
        return f"subtype {subtype}"
    if not isinstance(user, str) or not user:
        return "no user"
    if user in own_ids:
        return "our own message"
    text = event.get("text", "")
    if not isinstance(text, str):
        return "no text"
    if not text.strip() and not _has_files(event):  # a file shared without a word is still a message
        return "no text"
    return None


def _has_files(event: Mapping[str, Any]) -> bool:
    files = event.get("files")
    return isinstance(files, list) and any(isinstance(item, dict) for item in files)


def _mentions(text: str, user_ids: set[str]) -> bool:
    return any(f"<@{uid}>" in text or f"<@{uid}|" in text for uid in user_ids)


def _strip_mentions(text: str, user_ids: set[str]) -> str:
    """The text without mentions of our own bot user (``<@U…>`` / ``<@U…|name>``).

    The label stops at the next ``<`` as well as at ``>`` (Slack escapes both in text as ``&lt;`` and
    ``&gt;``): a mention left open would otherwise be searched to the end of the text from every one of
    its repeats, quadratic time on the event loop for a 40,000-character message.
    """
    for uid in user_ids:
        text = re.sub(rf"<@{re.escape(uid)}(?:\|[^<>]*+)?>[ \t]?", "", text)
    return text.strip()


def _received_at(payload: Mapping[str, Any], ts: str) -> datetime:
    candidates: tuple[Any, ...] = (payload.get("event_time"), ts)
    for value in candidates:
        try:
            seconds = float(value)
        except (TypeError, ValueError):
            continue
        if 0 < seconds < 1e11:
            return datetime.fromtimestamp(seconds, tz=UTC)
    return datetime.now(UTC)


def _extras(
    payload: Mapping[str, Any], event: Mapping[str, Any], retry_num: str | None, retry_reason: str | None
) -> dict[str, Any]:
    """What to keep of the event; ``retry_num``/``retry_reason`` are Slack's (HTTP headers, or the Socket
    Mode envelope's ``retry_attempt``/``retry_reason``), as the platform sent them."""
    extras: dict[str, Any] = {"event_type": event.get("type")}
    for key in ("team_id", "api_app_id", "enterprise_id", "event_time", "is_ext_shared_channel"):
        if payload.get(key) is not None:
            extras[key] = payload[key]
    for key in ("channel_type", "ts", "event_ts", "thread_ts", "subtype", "client_msg_id", "user_team"):
        if isinstance(event.get(key), str):
            extras[key] = event[key]
    files = event.get("files")
    if isinstance(files, list):
        extras["file_ids"] = [f["id"] for f in files if isinstance(f, dict) and isinstance(f.get("id"), str)]
    if retry_num is not None:
        # isdigit() alone also takes '²' (latin-1 header bytes) and int() refuses it, or a 5000-digit run
        digits = retry_num.isascii() and retry_num.isdigit() and len(retry_num) <= 9
        extras["retry_num"] = int(retry_num) if digits else retry_num
    if retry_reason is not None:
        extras["retry_reason"] = retry_reason
    return extras
