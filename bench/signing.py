"""Webhook deliveries as the platforms send them, each distinct and correctly signed.

- Telegram: a private-chat text ``message`` update with a fresh ``update_id``, authenticated by the
  ``X-Telegram-Bot-Api-Secret-Token`` header.
- Slack: an Events API ``event_callback`` carrying a ``message.im`` event with a fresh ``event_id``,
  signed ``v0=`` HMAC-SHA256 of ``v0:{timestamp}:{body}`` with the timestamp of the moment it is sent.
- Twilio: an inbound-SMS form (the documented parameter set) with a fresh ``MessageSid``, signed with the
  SDK's own ``RequestValidator.compute_signature`` over ``THREADLINE_PUBLIC_BASE_URL`` + path.

A ``Delivery`` is built ahead of time; ``headers_at(now)`` signs it when it is sent.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass
from urllib.parse import urlencode

from twilio.request_validator import RequestValidator  # type: ignore[import-untyped]

CHANNELS = ("telegram", "slack", "twilio")
TELEGRAM_PATH = "/webhooks/telegram"
SLACK_PATH = "/webhooks/slack/events"
TWILIO_PATH = "/webhooks/twilio/sms"
SLACK_TEAM = "T0BENCH001"
TWILIO_TO = "+15558675310"
TELEGRAM_FIRST_USER = 500_000_000


@dataclass(frozen=True, slots=True)
class Secrets:
    telegram_secret: str
    slack_signing_secret: str
    twilio_auth_token: str
    public_base_url: str


@dataclass(frozen=True, slots=True)
class Delivery:
    channel: str
    path: str
    body: bytes
    static_headers: tuple[tuple[str, str], ...]
    slack_secret: bytes = b""

    def headers_at(self, now: int) -> dict[str, str]:
        """The request headers, signed now (only Slack's signature depends on the time)."""
        headers = dict(self.static_headers)
        if self.slack_secret:
            stamp = str(now)
            base = b"v0:" + stamp.encode() + b":" + self.body
            digest = hmac.new(self.slack_secret, base, hashlib.sha256).hexdigest()
            headers["x-slack-request-timestamp"] = stamp
            headers["x-slack-signature"] = f"v0={digest}"
        return headers


def telegram(update_id: int, user: int, text: str, secrets: Secrets) -> Delivery:
    update = {
        "update_id": update_id,
        "message": {
            "message_id": update_id % 2_000_000_000,
            "date": 1_700_000_000,
            "chat": {"id": user, "type": "private", "first_name": "Bench"},
            "from": {"id": user, "is_bot": False, "first_name": "Bench"},
            "text": text,
        },
    }
    return Delivery(
        channel="telegram",
        path=TELEGRAM_PATH,
        body=json.dumps(update).encode(),
        static_headers=(
            ("content-type", "application/json"),
            ("x-telegram-bot-api-secret-token", secrets.telegram_secret),
        ),
    )


def slack(event_id: str, user: int, text: str, ts: str, secrets: Secrets) -> Delivery:
    user_id = f"U{user:010d}"
    envelope = {
        "token": "bench-verification-token",
        "team_id": SLACK_TEAM,
        "api_app_id": "A0BENCH001",
        "event": {
            "type": "message",
            "channel": f"D{user:010d}",  # one DM per customer: Slack's pacing is per channel
            "user": user_id,
            "text": text,
            "ts": ts,
            "event_ts": ts,
            "channel_type": "im",
        },
        "type": "event_callback",
        "authorizations": [{"team_id": SLACK_TEAM, "user_id": user_id, "is_bot": False}],
        "event_id": event_id,
        "event_time": int(float(ts)),
    }
    return Delivery(
        channel="slack",
        path=SLACK_PATH,
        body=json.dumps(envelope).encode(),
        static_headers=(("content-type", "application/json"), ("user-agent", "Slackbot 1.0")),
        slack_secret=secrets.slack_signing_secret.encode(),
    )


def twilio(sid: str, phone: str, text: str, secrets: Secrets) -> Delivery:
    params = {
        "ToCountry": "US",
        "ToState": "CA",
        "SmsMessageSid": sid,
        "NumMedia": "0",
        "ToCity": "SAN FRANCISCO",
        "FromZip": "94105",
        "SmsSid": sid,
        "FromState": "CA",
        "SmsStatus": "received",
        "FromCity": "SAN FRANCISCO",
        "Body": text,
        "FromCountry": "US",
        "To": TWILIO_TO,
        "ToZip": "94105",
        "NumSegments": "1",
        "MessageSid": sid,
        "AccountSid": "AC" + "0" * 32,
        "From": phone,
        "ApiVersion": "2010-04-01",
    }
    url = secrets.public_base_url.rstrip("/") + TWILIO_PATH
    signature: str = RequestValidator(secrets.twilio_auth_token).compute_signature(url, params)
    return Delivery(
        channel="twilio",
        path=TWILIO_PATH,
        body=urlencode(params).encode(),
        static_headers=(
            ("content-type", "application/x-www-form-urlencoded"),
            ("x-twilio-signature", signature),
        ),
    )


def delivery(index: int, *, id_base: int, salt: str, senders: int, text: str, secrets: Secrets) -> Delivery:
    """The ``index``-th delivery of a run: channels in turn, ids unique per ``(id_base, salt, index)``."""
    serial = id_base + index
    channel = CHANNELS[index % len(CHANNELS)]
    user = (index // len(CHANNELS)) % max(1, senders)
    if channel == "telegram":
        return telegram(serial, TELEGRAM_FIRST_USER + user, text, secrets)
    if channel == "slack":
        ts = f"{1_700_000_000 + serial // 1_000_000}.{serial % 1_000_000:06d}"
        return slack(f"Ev{salt}{serial:012d}", user, text, ts, secrets)
    sid = "SM" + hashlib.sha256(f"{salt}:{serial}".encode()).hexdigest()[:32]
    return twilio(sid, f"+1415{2_000_000 + user:07d}", text, secrets)
