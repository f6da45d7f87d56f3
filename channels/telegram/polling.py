"""Telegram long polling (``THREADLINE_TELEGRAM__MODE=polling``): the hub asks for its updates itself.

No public URL and no secret token: ``TelegramPoller`` long-polls ``getUpdates`` and hands every update to
the adapter's own parsing (``TelegramAdapter.parse_update``, the webhook's code), then to ``accept``.

**Offsets.** Telegram keeps an update until a ``getUpdates`` call names a higher ``offset``: that call
is the acknowledgement. Every update of a batch is committed through ``accept`` first, and only then
does the next call carry ``offset = last committed update_id + 1``. A crash (``kill -9``) before that
call repeats the batch after the restart; the inbox key (``"<bot id>:<update_id>"``) makes the repeats
no-ops. None is lost, none is answered twice. The offset is kept in memory only: a fresh process starts
without one and Telegram hands it every update still unconfirmed.

- An update that cannot be parsed (``BadRequest``) is logged by its id and skipped (it is confirmed with
  the rest of its batch): a malformed update must not block the queue forever.
- A failed commit (the store locked or down, ``SQLAlchemyError``, or anything else) confirms nothing past
  the last committed update: the poller backs off and fetches again.
- Network errors, timeouts and 5xx back off (full jitter, capped) and retry; a 429 waits its
  ``retry_after``. A 409 Conflict (a webhook is set, or another poller runs with this token) is logged
  with what to do (``threadline setup telegram`` removes the webhook) and retried slowly. A refused token
  stops the poller with an error naming ``THREADLINE_TELEGRAM__BOT_TOKEN``.
- ``stop`` cancels the long poll where it is: what was fetched and not committed is not confirmed.

**One poller.** Telegram answers 409 to a second ``getUpdates`` on one token. In scale mode (many
processes on PostgreSQL) the composition root hands the adapter the store's named leases
(``core.store.leases.NamedLeases``): a process polls only while it holds the lease ``telegram-poll:<bot
id>``, renewed before every call; another takes over once a dead holder's lease lapses (``poll_timeout``
+ ``LEASE_MARGIN`` seconds). Two pollers at once (a lease lapsed during a slow commit) cost a 409 and
some repeats, never a loss: each confirms only what it committed.

The calls go through python-telegram-bot's own ``HTTPXRequest`` (its error mapping: ``Conflict``,
``InvalidToken``, ``RetryAfter``, ``NetworkError``), one connection of its own, and the raw JSON of each
update is parsed one by one (``Bot.get_updates`` parses a batch at once, so one bad update would fail
them all).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlencode

from telegram import Bot
from telegram.error import Conflict, InvalidToken, RetryAfter, TelegramError
from telegram.request import HTTPXRequest

from channels.base import AcceptFn, Parsed
from channels.telegram.config import _TOKEN_SETTING, _bot_token, _file_base_url, _opt_into_timedelta, _scrub
from core.errors import BadRequest, ConfigError, ThreadlineError
from core.pipeline.backoff import backoff_delay
from core.ports import NamedLease
from core.settings import TelegramSettings

log = logging.getLogger(__name__)

ALLOWED_UPDATES = ("message", "callback_query")  # a customer's messages, and presses of our buttons
BATCH_LIMIT = 100  # updates per getUpdates call (Telegram's maximum)
READ_MARGIN = 10.0  # seconds a long poll may take past its timeout before it counts as lost
LEASE_MARGIN = 30.0  # seconds the poll lease outlives one long poll (the commit of its batch)
LEASE_RETRY = 5.0  # seconds between two tries of a process that does not hold the poll lease
NETWORK_BACKOFF = (0.5, 30.0)  # base, cap: network errors, timeouts, 5xx
CONFLICT_BACKOFF = (1.0, 60.0)  # base, cap: 409, another poller or a webhook (slow)
STORE_BACKOFF = (0.2, 10.0)  # base, cap: the store refused a commit

Sleep = Callable[[float], Awaitable[None]]


class TelegramPoller:
    """``getUpdates`` in a loop, each batch committed before it is confirmed (see the module docstring)."""

    def __init__(
        self,
        *,
        url: str,
        token: str,
        bot_id: str,
        timeout: int,
        parse: Callable[[dict[str, Any]], Parsed],
        leases: NamedLease | None = None,
        lease_margin: float = LEASE_MARGIN,
        lease_retry: float = LEASE_RETRY,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._url = url  # <api base url><token>/getUpdates: holds the token, never logged
        self._token = token
        self._bot_id = bot_id
        self._timeout = timeout
        self._parse = parse
        self._leases = leases
        self._lease_ttl = timeout + lease_margin
        self._lease_retry = lease_retry
        self._sleep = sleep
        self.lease_name = f"telegram-poll:{bot_id}"
        self.offset: int | None = None  # the next getUpdates confirms every update below it
        self.skipped = 0  # updates that could not be parsed (logged by id, confirmed, never answered)
        self.refused: str | None = None  # why the poller stopped for good (the token was refused)
        self._request: HTTPXRequest | None = None
        self._task: asyncio.Task[None] | None = None
        self._holding = False  # whether this process holds the poll lease (True without leases)

    def __repr__(self) -> str:
        return f"TelegramPoller(bot_id={self._bot_id!r}, offset={self.offset!r}, running={self.running})"

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    @property
    def holding(self) -> bool:
        """Whether this process polls now (it holds the poll lease, or runs without leases)."""
        return self._holding

    async def start(self, accept: AcceptFn) -> None:
        if self._task is not None:
            raise RuntimeError("the Telegram poller is already running")
        # its own connection: a long poll never holds up a send (PTB's bots keep one apart for it too)
        self._request = HTTPXRequest(connection_pool_size=1, read_timeout=self._timeout + READ_MARGIN)
        await self._request.initialize()
        self._task = asyncio.create_task(self._run(accept), name=f"telegram-poll:{self._bot_id}")
        log.info("telegram polling started (bot %s, long poll %s s)", self._bot_id, self._timeout)

    async def stop(self) -> None:
        """Cancel the long poll (and a commit in progress): nothing uncommitted is confirmed."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        request, self._request = self._request, None
        if request is not None:
            await request.shutdown()
        if self._holding and self._leases is not None:
            self._holding = False
            try:  # another process may take over at once instead of after the lease lapses
                await self._leases.release(self.lease_name)
            except Exception as exc:  # it lapses by itself
                log.warning("telegram poll lease not released (%s)", type(exc).__name__)

    async def _run(self, accept: AcceptFn) -> None:
        failures = 0  # getUpdates calls failed in a row
        refused = 0  # batches the store refused in a row
        while True:
            if not await self._hold_lease():
                await self._sleep(self._lease_retry)
                continue
            try:
                updates = await self._get_updates()
            except InvalidToken:
                self.refused = f"Telegram refused the bot token ({_TOKEN_SETTING}): polling stopped"
                log.error("%s", self.refused)
                return
            except RetryAfter as exc:
                wait = exc.retry_after
                seconds = float(wait) if isinstance(wait, int | float) else wait.total_seconds()
                log.warning("telegram getUpdates rate limited: retry after %g s", seconds)
                await self._sleep(seconds)
                continue
            except Conflict:
                failures += 1
                log.warning(
                    "telegram getUpdates refused (409 Conflict): a webhook is set for this bot, or another "
                    "process polls with its token. Run `threadline setup telegram` with "
                    "THREADLINE_TELEGRAM__MODE=polling to remove the webhook; retrying (attempt %d)",
                    failures,
                )
                await self._sleep(backoff_delay(failures, base=CONFLICT_BACKOFF[0], cap=CONFLICT_BACKOFF[1]))
                continue
            except (TelegramError, _Unreadable) as exc:  # timeouts, connection errors, 5xx, garbage
                failures += 1
                detail = _scrub(str(exc), self._token)
                log.warning("telegram getUpdates failed (%s: %s); retrying", type(exc).__name__, detail)
                await self._sleep(backoff_delay(failures, base=NETWORK_BACKOFF[0], cap=NETWORK_BACKOFF[1]))
                continue
            failures = 0
            if await self._commit(updates, accept):
                refused = 0
            else:  # the rest of the batch is not confirmed: fetched again after a pause
                refused += 1
                await self._sleep(backoff_delay(refused, base=STORE_BACKOFF[0], cap=STORE_BACKOFF[1]))

    async def _hold_lease(self) -> bool:
        """Whether this process may poll now (always, without leases: one serving process on SQLite)."""
        if self._leases is None:
            self._holding = True
            return True
        try:
            held = await self._leases.acquire(self.lease_name, ttl=self._lease_ttl)
        except Exception as exc:  # the store is down: poll nothing until it is back
            log.warning("telegram poll lease unavailable (%s)", type(exc).__name__)
            held = False
        if held != self._holding:
            log.info("telegram polling %s here", "runs" if held else "runs in another process")
        self._holding = held
        return held

    async def _get_updates(self) -> list[Any]:
        """One long poll; the ``offset`` it sends confirms every update committed so far."""
        request = self._request
        assert request is not None  # started
        params: dict[str, Any] = {
            "timeout": self._timeout,
            "limit": BATCH_LIMIT,
            "allowed_updates": json.dumps(list(ALLOWED_UPDATES)),
        }
        if self.offset is not None:
            params["offset"] = self.offset
        result = await request.post(
            url=f"{self._url}?{urlencode(params)}", read_timeout=self._timeout + READ_MARGIN
        )
        if not isinstance(result, list):
            raise _Unreadable("getUpdates did not answer a list")
        return result

    async def _commit(self, updates: list[Any], accept: AcceptFn) -> bool:
        """Commit the batch in order, moving ``offset`` past each committed (or skipped) update. False when
        a commit failed: the rest of the batch is left for the next fetch."""
        for data in updates:
            update_id = data.get("update_id") if isinstance(data, dict) else None
            if not isinstance(update_id, int) or isinstance(update_id, bool):
                self.skipped += 1
                log.warning("telegram update without an update id skipped")
                continue
            if self.offset is not None and update_id < self.offset:
                continue  # confirmed already (Telegram does not send these; a proxy might)
            try:
                parsed = self._parse(data)
            except BadRequest as exc:
                self.skipped += 1
                log.warning("telegram update %s skipped: %s", update_id, exc)
                self.offset = update_id + 1
                continue
            try:
                for message in parsed.messages:
                    accepted = await accept(message)
                    log.info(
                        "telegram update %s committed as inbox %s (duplicate=%s)",
                        update_id,
                        accepted.inbox_id,
                        accepted.duplicate,
                    )
            except Exception as exc:  # SQLAlchemyError above all: not stored, so not confirmed
                log.warning(
                    "telegram update %s not committed (%s); fetched again after a pause",
                    update_id,
                    type(exc).__name__,
                )
                return False
            self.offset = update_id + 1
        return True


class _Unreadable(Exception):
    """getUpdates answered something that is not a list of updates."""


async def delete_webhook(settings: TelegramSettings) -> str:
    """Remove the bot's webhook so that ``getUpdates`` may run (``threadline setup telegram`` in polling
    mode). Pending updates are kept: the poller fetches them. Returns one line (no secrets)."""
    token, bot_id = _bot_token(settings)
    _opt_into_timedelta()
    bot = Bot(token, base_url=settings.api_base_url, base_file_url=_file_base_url(settings.api_base_url))
    try:
        async with bot:
            await bot.delete_webhook(drop_pending_updates=False)
            info = await bot.get_webhook_info()
            username = bot.username
    except InvalidToken:
        raise ConfigError(
            f"Telegram refused the bot token ({_TOKEN_SETTING})", setting=_TOKEN_SETTING
        ) from None
    except TelegramError as exc:
        raise ThreadlineError(f"Telegram deleteWebhook failed: {_scrub(exc.message, token)}") from None
    return (
        f"Telegram bot @{username} (bot {bot_id}) is set up for polling: its webhook is removed, "
        f"{info.pending_update_count} pending update(s) kept for the poller."
    )
