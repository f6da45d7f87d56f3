"""``download``: one file of a customer's message, fetched from its platform's own hosts, with a byte cap.

Each channel's ``fetch_media`` (``core.ports.MediaFetcher``: a Twilio media URL, a Slack ``url_private``, a
Telegram file path) comes here with the URL, the credentials and the hosts that may be asked:

- The URL is checked BEFORE any request: https on one of the platform's host names, or exactly the origin of
  the configured API base URL (which may be http only on a loopback address: a test's fake). Anything else
  (another host, another port, user:password in the URL) is ``MediaRefused`` and nothing is sent: the
  credentials never reach a host the platform does not own, whatever a message names.
- The credentials (``headers``) go with the first request only. A redirect is followed (at most
  ``MAX_REDIRECTS``) only to a host the platform allows for redirects, and WITHOUT the credentials: Twilio
  answers a media URL with a redirect to a short-lived CDN URL that needs none.
- The size is capped before reading everything: a ``Content-Length`` over ``max_bytes`` is refused without
  reading the body, and the body is counted as it streams in and abandoned at ``max_bytes + 1``, whatever
  the header said (a chunked body has none; a server may lie).
- Errors are mapped in one place: a transport error, a timeout, a 429 or a 5xx is ``MediaUnavailable`` (the
  worker tries the turn again later); any other answer that is not a 200 is ``MediaRefused``.

``MediaRefused``'s message is what the customer is told: the file as they know it (``shown``), never a URL
(a Telegram file URL holds the bot token). Logs carry status codes and exception types, never a URL.
"""

from __future__ import annotations

import asyncio
import logging
import urllib.parse
from collections.abc import Collection, Mapping
from dataclasses import dataclass

import httpx

from core.errors import MediaRefused, MediaUnavailable
from core.media.check import UNKNOWN_TYPE, safe_name, too_large

log = logging.getLogger(__name__)

MAX_REDIRECTS = 3
TIMEOUT = httpx.Timeout(30.0, connect=10.0)  # per connect / read; ``DEADLINE`` bounds the whole file
DEADLINE = 300.0  # seconds for one file, redirects included: a server that drips bytes is given up on
_LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})
_UNAVAILABLE = frozenset({408, 425, 429})


@dataclass(frozen=True, slots=True, kw_only=True)
class Hosts:
    """Where a platform's files may be fetched from: https on one of ``names``, or one of ``origins``
    exactly (scheme, host, port: the configured API base URL, see ``origin_of``)."""

    names: frozenset[str] = frozenset()
    origins: frozenset[tuple[str, str, int]] = frozenset()

    def allow(self, url: httpx.URL) -> bool:
        if url.userinfo or not url.host:
            return False
        if url.scheme == "https" and url.host in self.names:
            return True
        return (url.scheme, url.host, _port(url)) in self.origins


def origin_of(base_url: str) -> frozenset[tuple[str, str, int]]:
    """The origin of a configured API base URL as ``Hosts.origins`` takes it: https anywhere, http only on a
    loopback address (a local fake in tests); nothing for anything else."""
    try:
        url = httpx.URL(base_url.strip())
    except (httpx.InvalidURL, TypeError):
        return frozenset()
    if not url.host or url.userinfo:
        return frozenset()
    if url.scheme == "https" or (url.scheme == "http" and url.host in _LOOPBACK):
        return frozenset({(url.scheme, url.host, _port(url))})
    return frozenset()


def host_of(base_url: str) -> str | None:
    """The host name of a configured https API base URL (its ``names`` entry), or None."""
    parts = urllib.parse.urlsplit(base_url.strip())
    return parts.hostname if parts.scheme == "https" and parts.hostname else None


def shown_as(name: str | None, media_type: str | None) -> str:
    """The file as the customer knows it, for a refusal: its safe name, or "your image" when it had none."""
    if name:
        return safe_name(name, media_type or UNKNOWN_TYPE)
    kind = (media_type or "").split("/", 1)[0].lower()
    kinds = {"image": "your image", "video": "your video", "audio": "your audio message"}
    return kinds.get(kind, "your file")


@dataclass(frozen=True, slots=True, kw_only=True)
class Downloaded:
    data: bytes
    content_type: str | None  # as the last answer declared it (untrusted: ``core.media`` sniffs the bytes)


def new_client() -> httpx.AsyncClient:
    """The client ``download`` wants: no redirects of its own, no proxy or ``.netrc`` credentials from the
    environment (``trust_env=False``: nothing but what the channel hands in is ever sent)."""
    return httpx.AsyncClient(timeout=TIMEOUT, follow_redirects=False, trust_env=False)


async def download(
    client: httpx.AsyncClient,
    url: str,
    *,
    platform: str,
    shown: str,
    max_bytes: int,
    hosts: Hosts,
    redirect_hosts: Hosts | None = None,
    headers: Mapping[str, str] | None = None,
) -> Downloaded:
    """The bytes at ``url`` (see the module docstring). ``headers`` (the credentials) go to ``url`` only;
    ``redirect_hosts`` None refuses any redirect."""
    try:
        target = httpx.URL(url)
    except (httpx.InvalidURL, TypeError):
        raise MediaRefused(f"{shown} is not on {platform}'s servers") from None
    if not hosts.allow(target):
        log.warning("%s file refused before any request: not on the platform's hosts", platform)
        raise MediaRefused(f"{shown} is not on {platform}'s servers")
    try:
        async with asyncio.timeout(DEADLINE):
            return await _follow(
                client, target, platform, shown, max_bytes, redirect_hosts, dict(headers or {})
            )
    except (httpx.TimeoutException, TimeoutError) as exc:
        log.warning("%s file not fetched: %s", platform, type(exc).__name__)
        raise MediaUnavailable(f"{shown} could not be fetched from {platform} for now") from None
    except httpx.TransportError as exc:  # connection refused or reset, a broken answer
        log.warning("%s file not fetched: %s", platform, type(exc).__name__)
        raise MediaUnavailable(f"{shown} could not be fetched from {platform} for now") from None


async def _follow(
    client: httpx.AsyncClient,
    target: httpx.URL,
    platform: str,
    shown: str,
    max_bytes: int,
    redirect_hosts: Hosts | None,
    headers: dict[str, str],
) -> Downloaded:
    for hop in range(MAX_REDIRECTS + 1):
        # identity: the bytes are counted as they arrive, not a small gzip that inflates past the cap
        sent = {"accept-encoding": "identity", **(headers if hop == 0 else {})}
        request = client.build_request("GET", target, headers=sent)
        response = await client.send(request, stream=True)
        try:
            if response.is_redirect:
                location = response.headers.get("location", "")
                target = _redirect_target(response.url, location, platform, shown, redirect_hosts)
                continue
            _check_status(response.status_code, platform, shown)
            return Downloaded(
                data=await _capped_body(response, max_bytes, shown),
                content_type=response.headers.get("content-type"),
            )
        finally:
            await response.aclose()
    log.warning("%s file refused: more than %d redirects", platform, MAX_REDIRECTS)
    raise MediaRefused(f"{shown} could not be fetched from {platform}")


def _redirect_target(
    current: httpx.URL, location: str, platform: str, shown: str, allowed: Hosts | None
) -> httpx.URL:
    try:
        target = current.join(location)
    except (httpx.InvalidURL, TypeError):
        target = None
    if target is None or allowed is None or not allowed.allow(target):
        log.warning("%s file refused: redirected to a host that is not the platform's", platform)
        raise MediaRefused(f"{shown} is not on {platform}'s servers")
    return target


def _check_status(status: int, platform: str, shown: str) -> None:
    if status == 200:
        return
    if status >= 500 or status in _UNAVAILABLE:
        log.warning("%s file not fetched: HTTP %d", platform, status)
        raise MediaUnavailable(f"{shown} could not be fetched from {platform} for now")
    if status in (401, 403):
        log.warning("%s file refused: HTTP %d (are the channel's credentials right?)", platform, status)
    else:
        log.info("%s file refused: HTTP %d", platform, status)
    raise MediaRefused(f"{shown} could not be fetched from {platform}")


async def _capped_body(response: httpx.Response, max_bytes: int, shown: str) -> bytes:
    declared = response.headers.get("content-length", "")
    if declared.isascii() and declared.isdigit() and int(declared) > max_bytes:
        raise too_large(shown, max_bytes)  # nothing of the body read
    chunks: list[bytes] = []
    count = 0
    async for chunk in response.aiter_bytes():  # decoded (should a server compress anyway), and counted
        count += len(chunk)
        if count > max_bytes:
            raise too_large(shown, max_bytes)  # the rest is never read: the connection is dropped
        chunks.append(chunk)
    return b"".join(chunks)


def refused_types(content_type: str | None, refused: Collection[str]) -> bool:
    """True when ``content_type`` (a response header) is one of ``refused`` (``text/html``: a login page)."""
    return (content_type or "").split(";", 1)[0].strip().lower() in refused


def _port(url: httpx.URL) -> int:
    return url.port or (443 if url.scheme == "https" else 80)
