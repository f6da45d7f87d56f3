"""Channel settings that point the official SDK clients at the fake platforms of ``tests/fakes``."""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from typing import Any
from urllib.parse import urlencode

import httpx
from pydantic import SecretStr
from twilio.request_validator import RequestValidator

from core.settings import TelegramSettings, TwilioSettings
from tests.fakes.telegram_api import DEFAULT_TOKEN, FakeTelegramAPI
from tests.fakes.twilio_api import FakeTwilioAPI


def twilio_settings(
    fake: FakeTwilioAPI, *, account_sid: str, auth_token: str, from_number: str
) -> TwilioSettings:
    """SMS through ``fake``, with these credentials and our number."""
    return TwilioSettings(
        account_sid=account_sid,
        auth_token=SecretStr(auth_token),
        from_number=from_number,
        api_base_url=fake.url,
    )


def telegram_settings(fake: FakeTelegramAPI, *, secret: str, token: str = DEFAULT_TOKEN) -> TelegramSettings:
    """Telegram through ``fake``: the bot ``token`` and the webhook's secret token."""
    return TelegramSettings(
        bot_token=SecretStr(token), secret_token=SecretStr(secret), api_base_url=fake.api_base_url
    )


# ----- deliveries signed as each platform signs them, posted to the app's webhook routes ---------------


async def post_twilio_sms(
    client: httpx.AsyncClient,
    *,
    public: str,
    account_sid: str,
    auth_token: str,
    to: str,
    phone: str,
    text: str,
) -> None:
    """An inbound SMS from ``phone``, signed by Twilio's ``RequestValidator`` over ``public`` + the path."""
    form = {"MessageSid": "SM" + secrets.token_hex(16), "AccountSid": account_sid}
    form |= {"From": phone, "To": to, "Body": text, "NumMedia": "0"}
    signature = RequestValidator(auth_token).compute_signature(f"{public}/webhooks/twilio/sms", form)
    response = await client.post(
        "/webhooks/twilio/sms",
        content=urlencode(form),
        headers={"content-type": "application/x-www-form-urlencoded", "x-twilio-signature": signature},
    )
    assert response.status_code == 200


async def post_telegram_message(
    client: httpx.AsyncClient, *, secret: str, update_id: int, message: dict[str, Any]
) -> None:
    """A Telegram ``message`` update, with the webhook's secret token."""
    response = await client.post(
        "/webhooks/telegram",
        content=json.dumps({"update_id": update_id, "message": message}),
        headers={"content-type": "application/json", "x-telegram-bot-api-secret-token": secret},
    )
    assert response.status_code == 200


async def post_mailgun_mime(
    client: httpx.AsyncClient, *, key: str, recipient: str, sender: str, raw: bytes
) -> None:
    """A Mailgun "forward with MIME" POST, signed now with a fresh token."""
    ts, token = str(int(time.time())), secrets.token_hex(25)
    signature = hmac.new(key.encode(), (ts + token).encode(), hashlib.sha256).hexdigest()
    fields = {
        "timestamp": ts,
        "token": token,
        "signature": signature,
        "recipient": recipient,
        "sender": sender,
    }
    response = await client.post("/webhooks/email/inbound", data=fields, files={"body-mime": (None, raw)})
    assert response.status_code == 200
