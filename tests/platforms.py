"""Channel settings that point the official SDK clients at the fake platforms of ``tests/fakes``."""

from __future__ import annotations

from pydantic import SecretStr

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
