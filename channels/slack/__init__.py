"""The Slack channel: Events API over HTTP (or Socket Mode) in, ``chat.postMessage`` through slack_sdk out.

- ``verify``: slack_sdk's ``SignatureVerifier`` over the raw body (``v0`` HMAC-SHA256 of
  ``v0:{timestamp}:{body}``, five-minute window); anything missing, stale or wrong is a 401.
- ``parse``: ``url_verification`` is answered with its challenge; an ``event_callback`` carrying a
  ``message`` (channel or DM) or an ``app_mention`` becomes one ``InboundMessage`` keyed by
  ``event_id`` (stable across Slack's retries), sent by ``slack:TEAM:USER``. Bot messages, our own
  messages, edits, deletions, joins and other subtypes that are not a person writing are dropped with
  a plain 200, and so is every other envelope type.
- ``send``: ``AsyncWebClient.chat_postMessage`` with bounded in-SDK retries on 429 (honouring
  ``Retry-After``) and on 500/503, replies split at 4,000 characters on paragraph, line, sentence or
  word boundaries, and paced to about one message a second per Slack channel (``ChannelPacer``).

- Socket Mode (``THREADLINE_SLACK__APP_TOKEN``, ``xapp-...``): ``start_inbound`` opens a connection with
  slack-bolt's ``AsyncApp`` and ``AsyncSocketModeHandler``; no public URL, no signing secret (the webhook
  then answers 404 unless one is set too). Envelopes go through ``parse_event`` (and ``parse_interaction``
  for button presses) and the hub's ``accept``; one is acknowledged only after its message is committed,
  a redelivery is a no-op, and the connection is renewed on ``disconnect`` or a drop.

``app_manifest`` builds the Slack app manifest that ``threadline setup slack`` prints (with Socket Mode
on and no request URLs when the app token is set).

Where things live:

- ``channels.slack.adapter``: ``SlackAdapter`` (verify, parse, send, profile attestation, the client);
- ``channels.slack.socket_mode``: ``SocketModeReceiver``, the Socket Mode connection and when it acknowledges;
- ``channels.slack.events``: reading an ``event_callback``: noise, mentions of us, time, extras;
- ``channels.slack.files``: shared files as ``MediaRef``s, and ``url_private`` fetched with the bot token;
- ``channels.slack.text``: escaping and splitting a reply (``escape_text``, ``split_text``);
- ``channels.slack.pacing``: ``ChannelPacer``, about one message a second per Slack channel;
- ``channels.slack.api_errors``: the bounded 429 retry handler and the Web API error mapping;
- ``channels.slack.manifest``: ``app_manifest``, its bot scopes and events, ``EVENTS_PATH``.
"""

from __future__ import annotations

from channels.slack.adapter import SIGNATURE_WINDOW_SECONDS, SlackAdapter
from channels.slack.events import _strip_mentions as _strip_mentions  # tests/test_linear_time.py
from channels.slack.manifest import BOT_EVENTS, BOT_SCOPES, EVENTS_PATH, app_manifest
from channels.slack.pacing import ChannelPacer, Sleep
from channels.slack.text import MAX_TEXT_CHARS, escape_text, split_text

__all__ = [
    "BOT_EVENTS",
    "BOT_SCOPES",
    "EVENTS_PATH",
    "MAX_TEXT_CHARS",
    "SIGNATURE_WINDOW_SECONDS",
    "ChannelPacer",
    "SlackAdapter",
    "Sleep",
    "app_manifest",
    "escape_text",
    "split_text",
]
