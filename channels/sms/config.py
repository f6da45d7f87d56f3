"""What the SMS channel needs configured: Twilio credentials and sender, the public base URL Twilio
signs over, and the webhook paths under it."""

from __future__ import annotations

import urllib.parse
from typing import Final

from core.errors import ConfigError
from core.settings import TwilioSettings, env_name

INBOUND_PATH: Final = "/webhooks/twilio/sms"
STATUS_PATH: Final = "/webhooks/twilio/status"


def _require(settings: TwilioSettings) -> tuple[str, str, str]:
    """Account SID, auth token and sender number, or ``ConfigError`` naming the missing setting."""
    token = settings.auth_token.get_secret_value() if settings.auth_token is not None else ""
    values = {
        "account_sid": settings.account_sid or "",
        "auth_token": token,
        "from_number": settings.from_number or "",
    }
    for key, value in values.items():
        if not value.strip():
            raise ConfigError(
                f"{env_name('twilio', key)} is required for SMS", setting=env_name("twilio", key)
            )
    return values["account_sid"].strip(), token, values["from_number"].strip()


def _public_base(public_base_url: str) -> str:
    """The public base URL without a trailing slash, or ``ConfigError`` when it is not absolute."""
    base = public_base_url.strip().rstrip("/")
    parts = urllib.parse.urlsplit(base)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise ConfigError(
            "THREADLINE_PUBLIC_BASE_URL must be an absolute http(s) URL without query: "
            "Twilio signatures are computed over it",
            setting="THREADLINE_PUBLIC_BASE_URL",
        )
    return base
