"""``TelegramPacer``: Telegram's send rate (30 messages a second per bot, 20 a minute per group), shared.

Telegram counts per bot, whichever process sends: python-telegram-bot's ``AIORateLimiter`` keeps its
buckets in one process, so N processes would send N times the rate and earn 429s. This is a
``BaseRateLimiter`` with the same two levels and the same order (the group's slot first, then the bot's),
whose slots come from ``core.ports.SharedLimits``: this process's own (``channels.limits.LocalLimits``)
until the composition root binds the database's (``bind``), which every process on the database shares.

As with ``AIORateLimiter(max_retries=0)``, a 429 is not retried here: ``RetryAfter`` goes back to the
adapter, and the worker schedules the retry.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from telegram.constants import FloodLimit
from telegram.error import NetworkError
from telegram.ext import BaseRateLimiter

from channels.limits import LocalLimits
from core.ports import SharedLimits

Sleep = Callable[[float], Awaitable[None]]
JSONDict = dict[str, Any]

OVERALL_PER_SECOND = FloodLimit.MESSAGES_PER_SECOND  # 30
GROUP_PER_MINUTE = FloodLimit.MESSAGES_PER_MINUTE_PER_GROUP  # 20


def group_of(chat_id: object) -> str | None:
    """The group a request's ``chat_id`` names (a negative id or an ``@username``), as AIORateLimiter
    reads it; None for a private chat."""
    with contextlib.suppress(ValueError, TypeError):
        chat_id = int(chat_id)  # type: ignore[call-overload]
    if isinstance(chat_id, bool):
        return None
    if (isinstance(chat_id, int) and chat_id < 0) or isinstance(chat_id, str):
        return str(chat_id)
    return None


class TelegramPacer(BaseRateLimiter[int]):
    """Waits for the group's and the bot's next slot before each request that names a chat."""

    def __init__(
        self,
        bot_id: str,
        *,
        limits: SharedLimits | None = None,
        sleep: Sleep = asyncio.sleep,
        overall_per_second: float = OVERALL_PER_SECOND,
        group_per_minute: float = GROUP_PER_MINUTE,
    ) -> None:
        self._bot = bot_id
        self._limits: SharedLimits = limits if limits is not None else LocalLimits()
        self._sleep = sleep
        self._overall = (1.0 / overall_per_second, max(1, int(overall_per_second)))
        self._group = (60.0 / group_per_minute, max(1, int(group_per_minute)))

    def bind(self, limits: SharedLimits) -> None:
        """Take slots from ``limits`` from now on (the database's: shared by every process)."""
        self._limits = limits

    async def initialize(self) -> None:
        """Nothing to set up."""

    async def shutdown(self) -> None:
        """Nothing to release."""

    async def process_request(
        self,
        callback: Callable[..., Coroutine[Any, Any, bool | JSONDict | list[JSONDict]]],
        args: Any,
        kwargs: dict[str, Any],
        endpoint: str,
        data: dict[str, Any],
        rate_limit_args: int | None,
    ) -> bool | JSONDict | list[JSONDict]:
        chat_id = data.get("chat_id")
        if chat_id is not None:  # as AIORateLimiter: only requests to a chat are limited
            group = group_of(chat_id)
            if group is not None:
                await self._wait(f"telegram:{self._bot}:group:{group}", self._group)
            await self._wait(f"telegram:{self._bot}:overall", self._overall)
        return await callback(*args, **kwargs)

    async def _wait(self, key: str, rate: tuple[float, int]) -> None:
        interval, burst = rate
        try:
            delay = await self._limits.pace(key, interval=interval, burst=burst)
        except Exception as exc:  # the shared limits' store failed: a transient failure of this send
            raise NetworkError(f"shared rate limits unavailable ({type(exc).__name__})") from exc
        if delay > 0:
            await self._sleep(delay)
