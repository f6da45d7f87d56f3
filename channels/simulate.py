"""Deliveries as each platform would send them, signed with this machine's settings: ``threadline simulate``.

An operator checks a deployment end to end without a phone: ``simulate`` builds the request the platform
would make for a customer's message (the same route, body and signature), posts it to a running hub (local
or deployed) and says what the hub answered. Each builder signs the way the platform does, with the
platform's own SDK where it has one:

- Telegram: a ``message`` update with the ``X-Telegram-Bot-Api-Secret-Token`` header;
- Slack: an Events API ``event_callback`` (a direct message), ``X-Slack-Signature`` by slack_sdk's
  ``SignatureVerifier.generate_signature``;
- SMS: Twilio's form, ``X-Twilio-Signature`` by twilio's ``RequestValidator`` over the hub's public URL
  (``THREADLINE_PUBLIC_BASE_URL``, which is what the hub checks, whatever URL the request is posted to);
- email: a Mailgun "forward with MIME" form (``timestamp``/``token``/``signature``) with the raw message.

A hub with other secrets refuses the delivery (401/403) and ``explain`` says so, naming the setting to
compare. Every delivery has a fresh platform id unless one is given (``--id``): the same id twice is the
platform retrying, and the hub answers the second as a duplicate (its ``X-Threadline-Inbox`` header).
Nothing here logs or prints a secret.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import make_msgid
from urllib.parse import urlencode

from slack_sdk.signature import SignatureVerifier
from twilio.request_validator import RequestValidator  # type: ignore[import-untyped]

from core.errors import ConfigError
from core.messages import Address
from core.settings import Settings, env_name

CHANNELS = ("telegram", "slack", "sms", "email")
RESULT_HEADER = "x-threadline-inbox"  # what the hub did with the delivery: new, duplicate, none


@dataclass(frozen=True, slots=True, kw_only=True)
class Delivery:
    """One HTTP request as the platform would make it (``path`` on the hub's base URL)."""

    channel: str
    path: str
    body: bytes = field(repr=False)
    headers: dict[str, str] = field(repr=False)
    # the settings whose values must match the hub's for it to accept this delivery
    secrets_used: tuple[str, ...]


def _need(value: str | None, channel: str, key: str) -> str:
    if not value:
        setting = env_name(channel, key)
        raise ConfigError(f"{setting} is needed to sign a simulated {channel} delivery", setting=setting)
    return value


def build(
    channel: str, settings: Settings, sender: Address, text: str, *, delivery_id: str | None = None
) -> Delivery:
    """The delivery ``channel``'s platform would send for ``text`` from ``sender``; ``ConfigError`` naming
    the setting when this machine lacks what signs it, or ``ValueError`` when the address is not one of
    that channel's."""
    if sender.channel != channel:
        raise ValueError(f"--from must be a {channel} address, not {sender.channel}")
    builders = {"telegram": _telegram, "slack": _slack, "sms": _sms, "email": _email}
    if channel not in builders:
        raise ValueError(f"simulate takes one of {', '.join(CHANNELS)}")
    return builders[channel](settings, sender, text, delivery_id)


def _telegram(settings: Settings, sender: Address, text: str, delivery_id: str | None) -> Delivery:
    secret = settings.telegram.secret_token
    token = _need(secret.get_secret_value() if secret else None, "telegram", "secret_token")
    if not sender.handle.isdigit():
        raise ValueError("a Telegram address for simulate is telegram:<numeric user id>")
    user = int(sender.handle)
    update_id = int(delivery_id) if delivery_id and delivery_id.isdigit() else secrets.randbelow(2**31)
    message = {
        "message_id": update_id % 1_000_000 + 1,
        "date": int(time.time()),
        "chat": {"id": user, "type": "private", "first_name": "Simulated"},
        "from": {"id": user, "is_bot": False, "first_name": "Simulated"},
        "text": text,
    }
    body = json.dumps({"update_id": update_id, "message": message}).encode()
    headers = {"content-type": "application/json", "x-telegram-bot-api-secret-token": token}
    return Delivery(
        channel="telegram",
        path="/webhooks/telegram",
        body=body,
        headers=headers,
        secrets_used=(env_name("telegram", "secret_token"),),
    )


def _slack(settings: Settings, sender: Address, text: str, delivery_id: str | None) -> Delivery:
    secret = settings.slack.signing_secret
    signing = _need(secret.get_secret_value() if secret else None, "slack", "signing_secret")
    team, _, user = sender.handle.partition(":")
    if not team or not user:
        raise ValueError("a Slack address for simulate is slack:<team id>:<user id>")
    now = time.time()
    ts = f"{now:.6f}"
    payload = {
        "type": "event_callback",
        "team_id": team,
        "api_app_id": "ASIMULATED",
        "event_id": delivery_id or "EvSIM" + secrets.token_hex(6).upper(),
        "event_time": int(now),
        "event": {
            "type": "message",
            "channel_type": "im",
            "channel": "D" + user.lstrip("UW")[:10].upper().rjust(8, "0"),
            "user": user,
            "text": text,
            "ts": ts,
            "event_ts": ts,
        },
        "authorizations": [{"team_id": team, "user_id": "USIMBOT", "is_bot": True}],
    }
    body = json.dumps(payload).encode()
    stamp = str(int(now))
    signature = SignatureVerifier(signing).generate_signature(timestamp=stamp, body=body) or ""
    headers = {
        "content-type": "application/json",
        "x-slack-request-timestamp": stamp,
        "x-slack-signature": signature,
    }
    return Delivery(
        channel="slack",
        path="/webhooks/slack/events",
        body=body,
        headers=headers,
        secrets_used=(env_name("slack", "signing_secret"),),
    )


def _sms(settings: Settings, sender: Address, text: str, delivery_id: str | None) -> Delivery:
    twilio = settings.twilio
    auth = _need(twilio.auth_token.get_secret_value() if twilio.auth_token else None, "twilio", "auth_token")
    account = _need(twilio.account_sid, "twilio", "account_sid")
    ours = _need(twilio.from_number, "twilio", "from_number")
    public = settings.public_base_url
    if not public:
        raise ConfigError(
            "THREADLINE_PUBLIC_BASE_URL is needed: Twilio signs over the hub's public URL",
            setting="THREADLINE_PUBLIC_BASE_URL",
        )
    form = {
        "MessageSid": delivery_id or "SM" + secrets.token_hex(16),
        "AccountSid": account,
        "From": sender.handle,
        "To": ours,
        "Body": text,
        "NumMedia": "0",
    }
    path = "/webhooks/twilio/sms"
    signature = RequestValidator(auth).compute_signature(public.rstrip("/") + path, form)
    headers = {"content-type": "application/x-www-form-urlencoded", "x-twilio-signature": signature}
    return Delivery(
        channel="sms",
        path=path,
        body=urlencode(form).encode(),
        headers=headers,
        secrets_used=(env_name("twilio", "auth_token"), "THREADLINE_PUBLIC_BASE_URL"),
    )


def _email(settings: Settings, sender: Address, text: str, delivery_id: str | None) -> Delivery:
    email = settings.email
    key = _need(
        email.inbound_signing_key.get_secret_value() if email.inbound_signing_key else None,
        "email",
        "inbound_signing_key",
    )
    ours = _need(email.address, "email", "address")
    message = EmailMessage()
    message["From"] = sender.handle
    message["To"] = ours
    message["Subject"] = "Simulated message"
    message["Message-ID"] = delivery_id or make_msgid(domain="simulate.threadline.invalid")
    message.set_content(text)
    stamp, token = str(int(time.time())), secrets.token_hex(25)
    fields = {
        "timestamp": stamp,
        "token": token,
        "signature": hmac.new(key.encode(), (stamp + token).encode(), hashlib.sha256).hexdigest(),
        "recipient": ours,
        "sender": sender.handle,
        "body-mime": message.as_string(),
    }
    return Delivery(
        channel="email",
        path="/webhooks/email/inbound",
        body=urlencode(fields).encode(),
        headers={"content-type": "application/x-www-form-urlencoded"},
        secrets_used=(env_name("email", "inbound_signing_key"),),
    )


def explain(delivery: Delivery, status: int, result: str | None) -> tuple[bool, str]:
    """(accepted, one line) for the hub's answer to ``delivery``."""
    settings = " and ".join(delivery.secrets_used)
    if 200 <= status < 300:
        if result == "duplicate":
            return True, f"duplicate: the hub already had this {delivery.channel} delivery (HTTP {status})"
        if result == "none":
            return True, f"accepted but ignored: the hub kept no message from it (HTTP {status})"
        return (
            True,
            f"accepted: the hub stored the {delivery.channel} message and will answer it (HTTP {status})",
        )
    if status in (401, 403):
        return False, (
            f"refused (HTTP {status}): the hub did not accept the signature; its {settings} differ from "
            "this machine's"
        )
    if status == 404:
        return False, (
            f"refused (HTTP 404): the hub takes no {delivery.channel} webhooks (the channel is off there, "
            "or it receives it without a public URL: polling, Socket Mode)"
        )
    if status == 413:
        return False, "refused (HTTP 413): the delivery is larger than the hub takes"
    if status == 503:
        return False, "not stored (HTTP 503): the hub's store is unavailable; the platform would retry"
    return False, f"refused (HTTP {status}): the hub could not read the delivery"
