"""``configure_number``: point our Twilio number's webhooks at this hub (``threadline setup twilio``)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiohttp
from twilio.base.exceptions import TwilioException  # type: ignore[import-untyped]

from channels.sms.client import DEFAULT_TIMEOUT, _http_client, _rest_client
from channels.sms.config import INBOUND_PATH, STATUS_PATH, _public_base, _require
from core.errors import ConfigError, ThreadlineError
from core.settings import TwilioSettings, env_name

log = logging.getLogger(__name__)


def _error_status(exc: Any) -> int:
    """HTTP status of an SDK error: REST errors carry ``status``, a failed page read its response."""
    status = getattr(exc, "status", None)
    if isinstance(status, int):
        return status
    response = exc.args[1] if len(exc.args) > 1 else None
    code = getattr(response, "status_code", None)
    return code if isinstance(code, int) else 0


def _same_number(a: str, b: str) -> bool:
    def digits(value: str) -> str:
        return "".join(c for c in value if c.isdigit() or c == "+")

    return digits(a) == digits(b)


async def configure_number(settings: TwilioSettings, public_base_url: str) -> str:
    """Point the ``from_number``'s IncomingPhoneNumber at this hub; return one line saying what changed.

    Sets ``sms_url`` (POST) to ``/webhooks/twilio/sms`` and ``status_callback`` to
    ``/webhooks/twilio/status`` under ``public_base_url``. Used by ``threadline setup twilio``.
    Raises ``ConfigError`` when the number is not in the account or Twilio refuses the credentials.
    """
    account_sid, auth_token, from_number = _require(settings)
    base = _public_base(public_base_url)
    sms_url, status_url = base + INBOUND_PATH, base + STATUS_PATH
    http = _http_client()
    try:
        client = _rest_client(account_sid, auth_token, settings.api_base_url, http)
        async with asyncio.timeout(DEFAULT_TIMEOUT):
            numbers = await client.incoming_phone_numbers.list_async(phone_number=from_number, limit=50)
            match = next((n for n in numbers if _same_number(str(n.phone_number or ""), from_number)), None)
            if match is None:
                raise ConfigError(
                    f"{env_name('twilio', 'from_number')} is not a phone number of this Twilio account",
                    setting=env_name("twilio", "from_number"),
                )
            await match.update_async(sms_url=sms_url, sms_method="POST", status_callback=status_url)
    except TwilioException as exc:
        status = _error_status(exc)
        if 400 <= status < 500:
            raise ConfigError(
                f"Twilio refused the set-up (HTTP {status}, error {getattr(exc, 'code', None)}): check "
                f"{env_name('twilio', 'account_sid')} and {env_name('twilio', 'auth_token')}",
                setting=env_name("twilio", "auth_token"),
            ) from None
        raise ThreadlineError(f"Twilio is unavailable (HTTP {status or 'unknown'}); try again") from None
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        raise ThreadlineError(f"Twilio is unreachable ({type(exc).__name__}); try again") from exc
    finally:
        await http.close()
    log.info("twilio number %s: webhooks configured", match.sid)
    return f"{from_number} ({match.sid}): SMS webhook POST {sms_url}, status callback {status_url}"
