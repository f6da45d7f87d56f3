"""Files shared in Slack messages: read from the event, fetched from ``url_private`` with the bot token.

A ``message`` event with subtype ``file_share`` carries ``files``: each with ``id``, ``name``, ``mimetype``,
``size`` and ``url_private`` (``https://files.slack.com/files-pri/T…-F…/name``), which Slack serves to
``Authorization: Bearer <bot token>`` when the app has the ``files:read`` scope
(``channels.slack.manifest``). ``media_refs`` turns them into ``MediaRef``s (the URL is the reference);
``SlackFiles.fetch`` gets the bytes (``channels.media_download``):

- the token is sent only to Slack's file host ``files.slack.com`` or the configured
  ``THREADLINE_SLACK__API_BASE_URL``'s origin (a local fake in tests); a ``url_private`` naming any other
  host (an external file's link, a forged event) is refused and nothing is requested;
- a redirect is followed only within Slack's hosts, without the token;
- without ``files:read`` Slack answers the file URL with its HTML sign-in page and a 200: an HTML answer is
  refused (it would otherwise pass the type check as text), and the log names the missing scope.

A file Slack does not let the bot read (``hidden_by_limit`` on a free workspace, a deleted ``tombstone``)
has no ``url_private``: its reference says so and it is refused as not available.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import httpx
from pydantic import SecretStr

from channels.media_download import Hosts, download, new_client, origin_of, refused_types, shown_as
from core.errors import MediaRefused
from core.messages import FetchedMedia, MediaRef

log = logging.getLogger(__name__)

PLATFORM = "Slack"
FILE_HOSTS = frozenset({"files.slack.com"})
REDIRECT_HOSTS = FILE_HOSTS | frozenset({"slack.com"})
UNREADABLE_PREFIX = "slack-file-unavailable:"  # the reference of a file without ``url_private``
_LOGIN_PAGE_TYPES = frozenset({"text/html", "application/xhtml+xml"})


def media_refs(event: Mapping[str, Any]) -> tuple[MediaRef, ...]:
    """The files of a message event, in their order (what Slack declares of each: untrusted)."""
    files = event.get("files")
    if not isinstance(files, list):
        return ()
    refs: list[MediaRef] = []
    for item in files:
        if not isinstance(item, dict):
            continue
        url, file_id = item.get("url_private"), item.get("id")
        name, mimetype, size = item.get("name"), item.get("mimetype"), item.get("size")
        if isinstance(url, str) and url:
            ref = url
        elif isinstance(file_id, str) and file_id:
            ref = UNREADABLE_PREFIX + file_id
        else:
            continue
        refs.append(
            MediaRef(
                ref=ref,
                name=name if isinstance(name, str) else None,
                media_type=mimetype if isinstance(mimetype, str) else None,
                size=size if isinstance(size, int) and not isinstance(size, bool) and size >= 0 else None,
            )
        )
    return tuple(refs)


class SlackFiles:
    """Fetches shared files for one bot token (``SlackAdapter.fetch_media``)."""

    def __init__(self, bot_token: SecretStr | None, api_base_url: str) -> None:
        self._token = bot_token
        origins = origin_of(api_base_url)
        self._hosts = Hosts(names=FILE_HOSTS, origins=origins)
        self._redirect_hosts = Hosts(names=REDIRECT_HOSTS, origins=origins)
        self._client: httpx.AsyncClient | None = None

    def __repr__(self) -> str:
        return "SlackFiles()"

    async def fetch(self, ref: MediaRef, *, max_bytes: int) -> FetchedMedia:
        shown = shown_as(ref.name, ref.media_type)
        if ref.ref.startswith(UNREADABLE_PREFIX):
            raise MediaRefused(f"{shown} is not available to us on Slack")
        token = self._token.get_secret_value() if self._token is not None else ""
        if not token:
            raise MediaRefused(f"{shown} cannot be fetched here")
        if self._client is None:
            self._client = new_client()
        got = await download(
            self._client,
            ref.ref,
            platform=PLATFORM,
            shown=shown,
            max_bytes=max_bytes,
            hosts=self._hosts,
            redirect_hosts=self._redirect_hosts,
            headers={"authorization": f"Bearer {token}"},
        )
        if refused_types(got.content_type, _LOGIN_PAGE_TYPES):
            log.warning("Slack answered a file with a web page: has the bot token the files:read scope?")
            raise MediaRefused(f"{shown} could not be read from Slack")
        return FetchedMedia(data=got.data, media_type=got.content_type or ref.media_type, name=ref.name)

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()
