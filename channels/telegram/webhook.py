"""``set_webhook``: point the bot's webhook at this hub (``threadline setup telegram``)."""

from __future__ import annotations

from telegram import Bot
from telegram.error import BadRequest as TelegramBadRequest
from telegram.error import InvalidToken, TelegramError

from channels.telegram.config import (
    _TOKEN_SETTING,
    _bot_token,
    _file_base_url,
    _opt_into_timedelta,
    _scrub,
    _secret_token,
)
from core.errors import ConfigError, ThreadlineError
from core.settings import TelegramSettings

WEBHOOK_PATH = "/webhooks/telegram"
ALLOWED_UPDATES = ("message", "callback_query")  # a customer's messages, and presses of our buttons


async def set_webhook(settings: TelegramSettings, public_base_url: str) -> str:
    """Point the bot's webhook at ``<public_base_url>/webhooks/telegram`` with our secret token.

    Only ``message`` and ``callback_query`` (our buttons' presses) updates are asked for, and updates
    still pending are kept. Returns one line that says what was done (no secrets). Raises
    ``ConfigError`` when Telegram refuses the token or the URL.
    """
    token, bot_id = _bot_token(settings)
    secret = _secret_token(settings)
    url = public_base_url.rstrip("/") + WEBHOOK_PATH
    _opt_into_timedelta()
    bot = Bot(token, base_url=settings.api_base_url, base_file_url=_file_base_url(settings.api_base_url))
    try:
        async with bot:
            await bot.set_webhook(
                url=url,
                secret_token=secret,
                allowed_updates=list(ALLOWED_UPDATES),
                drop_pending_updates=False,
            )
            info = await bot.get_webhook_info()
            username = bot.username
    except InvalidToken:
        raise ConfigError(
            f"Telegram refused the bot token ({_TOKEN_SETTING})", setting=_TOKEN_SETTING
        ) from None
    except TelegramBadRequest as exc:
        raise ConfigError(
            f"Telegram refused the webhook {url}: {_scrub(exc.message, token)}",
            setting="THREADLINE_PUBLIC_BASE_URL",
        ) from None
    except TelegramError as exc:
        raise ThreadlineError(f"Telegram setWebhook failed: {_scrub(exc.message, token)}") from None
    pending = info.pending_update_count
    return (
        f"Telegram webhook of @{username} (bot {bot_id}) now points at {url}: "
        f"message and button-press updates only, checked with the secret token, "
        f"{pending} pending update(s) kept."
    )
