"""The Telegram channel's configuration: the bot token and webhook secret from settings, PTB set-up
shared by the adapter and ``set_webhook``, and scrubbing the token out of error texts."""

from __future__ import annotations

import os
import re

from core.errors import ConfigError
from core.settings import TelegramSettings

_TOKEN_SETTING = "THREADLINE_TELEGRAM__BOT_TOKEN"  # noqa: S105 (a setting name)
_SECRET_SETTING = "THREADLINE_TELEGRAM__SECRET_TOKEN"  # noqa: S105 (a setting name)
_TOKEN_SHAPE = re.compile(r"^([0-9]+):[A-Za-z0-9_-]+$")
_SECRET_SHAPE = re.compile(r"^[A-Za-z0-9_-]{1,256}$")  # what setWebhook accepts as secret_token


def _bot_token(settings: TelegramSettings) -> tuple[str, str]:
    """The token and the bot's numeric id (the token's prefix), or ``ConfigError``."""
    token = settings.bot_token.get_secret_value() if settings.bot_token is not None else ""
    if not token:
        raise ConfigError(f"the Telegram channel needs {_TOKEN_SETTING}", setting=_TOKEN_SETTING)
    shape = _TOKEN_SHAPE.match(token)
    if shape is None:
        raise ConfigError(
            f"{_TOKEN_SETTING} is not a bot token (<bot id>:<secret> from @BotFather)",
            setting=_TOKEN_SETTING,
        )
    return token, shape.group(1)


def _secret_token(settings: TelegramSettings) -> str:
    secret = settings.secret_token.get_secret_value() if settings.secret_token is not None else ""
    if not secret:
        raise ConfigError(
            f"the Telegram channel needs {_SECRET_SETTING} to check webhook deliveries",
            setting=_SECRET_SETTING,
        )
    if not _SECRET_SHAPE.match(secret):
        raise ConfigError(
            f"{_SECRET_SETTING} must be 1-256 characters of A-Z, a-z, 0-9, _ and -", setting=_SECRET_SETTING
        )
    return secret


def _opt_into_timedelta() -> None:
    """PTB 22 warns (``PTBDeprecationWarning``, raised inside ``RetryAfter.__init__``) unless time periods
    are opted into as ``timedelta``, their type in its next major version. Opt in before any bot exists:
    ``channels.telegram.adapter`` reads ``retry_after`` as either type, and Threadline uses PTB nowhere
    but in ``channels.telegram``.
    """
    os.environ.setdefault("PTB_TIMEDELTA", "true")


def _file_base_url(api_base_url: str) -> str:
    """``https://api.telegram.org/bot`` → ``https://api.telegram.org/file/bot`` (same host as the API)."""
    root = api_base_url.rstrip("/")
    if root.endswith("/bot"):
        return root[: -len("/bot")] + "/file/bot"
    return "https://api.telegram.org/file/bot"


def _scrub(text: str, token: str) -> str:
    return text.replace(token, "<bot token>") if token else text
