"""``TelegramFiles``: a photo or document of a customer's message, fetched by its ``file_id``.

Two steps, as the Bot API has them: ``getFile`` (PTB ``Bot.get_file``) says the file's ``file_size`` and its
``file_path``, then the bytes are read from ``<base file url>/<file_path>`` (``https://api.telegram.org/file/
bot<token>/photos/file_0.jpg``; the tests' fake serves the same path). PTB's own ``File.download_*`` reads a
whole file into memory whatever its size, so the download is ours (``channels.media_download``):

- the size limit holds before anything is read: the size the message declared, then ``getFile``'s
  ``file_size``, then the bytes as they stream in (Telegram may leave ``file_size`` out);
- a file over the 20 MB bots may download (``getFile`` answers 400 "file is too big") is refused as such;
- the URL must be the bot's own file URL (the configured ``THREADLINE_TELEGRAM__API_BASE_URL``'s origin)
  followed by a plain relative path: a ``file_path`` that climbs out (``..``) or is absolute is refused, and
  so is a local path (PTB keeps those as they are, meant for a local Bot API server: it would read our own
  disk). No redirect is followed;
- PTB's errors: ``BadRequest`` (an unknown or expired ``file_id``) and ``Forbidden`` refuse the file; a
  timeout, a network error, a 5xx, a 429 or a refused token (``InvalidToken``: fixable by configuration) make
  it unavailable for now, and the worker tries the turn again.

The file URL holds the bot token: it is never logged, and no error text that leaves here quotes it.
"""

from __future__ import annotations

import logging
import posixpath
from collections.abc import Awaitable, Callable

import httpx
from telegram import Bot
from telegram.error import BadRequest, Forbidden, TelegramError

from channels.media_download import Hosts, download, new_client, origin_of, shown_as
from core.errors import MediaRefused, MediaUnavailable
from core.media.check import too_large
from core.messages import FetchedMedia, MediaRef

log = logging.getLogger(__name__)

PLATFORM = "Telegram"
BOT_DOWNLOAD_LIMIT = 20 * 1024 * 1024  # what getFile lets a bot download ("file is too big" above)
FILE_HOSTS = frozenset({"api.telegram.org"})


class TelegramFiles:
    """Fetches the files of one bot's messages (``TelegramAdapter.fetch_media``)."""

    def __init__(self, ready_bot: Callable[[], Awaitable[Bot]]) -> None:
        self._ready_bot = ready_bot
        self._client: httpx.AsyncClient | None = None

    def __repr__(self) -> str:
        return "TelegramFiles()"

    async def fetch(self, ref: MediaRef, *, max_bytes: int) -> FetchedMedia:
        shown = shown_as(ref.name, ref.media_type)
        if ref.size is not None and ref.size > max_bytes:  # Telegram said so in the update: no call at all
            raise too_large(shown, max_bytes)
        try:
            bot = await self._ready_bot()
            file = await bot.get_file(ref.ref)
        except BadRequest as exc:  # a NetworkError subclass: first
            if "too big" in exc.message.lower():
                raise too_large(shown, BOT_DOWNLOAD_LIMIT) from None
            log.info("telegram getFile refused: %s", type(exc).__name__)
            raise MediaRefused(f"{shown} could not be fetched from Telegram") from None
        except Forbidden:
            log.warning("telegram getFile forbidden")
            raise MediaRefused(f"{shown} could not be fetched from Telegram") from None
        except TelegramError as exc:  # TimedOut, NetworkError (5xx), RetryAfter, InvalidToken, ...
            log.warning("telegram getFile failed: %s", type(exc).__name__)
            raise MediaUnavailable(f"{shown} could not be fetched from Telegram for now") from None
        if file.file_size is not None and file.file_size > max_bytes:
            raise too_large(shown, max_bytes)
        relative = _relative_path(file.file_path, bot.base_file_url)
        if relative is None:
            log.warning("telegram getFile gave a file path outside the bot's file URL; refused")
            raise MediaRefused(f"{shown} is not on Telegram's servers")
        if self._client is None:
            self._client = new_client()
        got = await download(
            self._client,
            f"{bot.base_file_url}/{relative}",
            platform=PLATFORM,
            shown=shown,
            max_bytes=max_bytes,
            hosts=Hosts(names=FILE_HOSTS, origins=origin_of(bot.base_file_url)),
        )
        return FetchedMedia(
            data=got.data,
            media_type=ref.media_type or got.content_type,
            name=ref.name or posixpath.basename(relative),
        )

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()


def _relative_path(file_path: str | None, base_file_url: str) -> str | None:
    """``file_path`` (PTB prefixes it with the bot's file URL) as a plain relative path under that URL:
    segments of letters, digits and ``._-`` only, none of them ``.`` or ``..``; None for anything else."""
    if not file_path:
        return None
    prefix = base_file_url + "/"
    if not file_path.startswith(prefix):
        return None  # a local path (PTB leaves those unprefixed), or something else entirely
    relative = file_path[len(prefix) :]
    for segment in relative.split("/"):
        plain = all(ch.isascii() and (ch.isalnum() or ch in "._-") for ch in segment)
        if segment in ("", ".", "..") or not plain:
            return None
    return relative
