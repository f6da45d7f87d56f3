"""Where a receiver may be: the SSRF guard of the event webhooks.

Whoever holds the admin token registers URLs the hub will call; without a guard that is a way to make
the hub reach what only it can reach (a cloud's metadata service at 169.254.169.254, an admin port on
localhost, the private network). So a receiver's URL must be ``https``, carry no credentials, and its host
must resolve only to public addresses: not loopback, private, link-local, shared (CGNAT), multicast,
reserved or unspecified (an IPv4-mapped IPv6 address counts as the IPv4 one). Every address the name has
must pass, checked at registration and again before each attempt; the attempt then connects to the
address that was checked (``core.events.sender``), so a name that re-resolves elsewhere in between (DNS
rebinding) gains nothing. ``events.allow_private`` lifts the address rule and allows ``http``.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import SplitResult, urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

MAX_URL = 2000
RESOLVE_TIMEOUT = 5.0


class RefusedURL(ValueError):
    """A receiver URL the hub will not call; the message says why (it never names a resolved address)."""


def is_public(ip: IPAddress) -> bool:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast and not ip.is_reserved and not ip.is_unspecified


def checked_url(url: str, *, allow_private: bool) -> SplitResult:
    """``url`` split, if its form is acceptable (scheme, host, no credentials); ``RefusedURL`` if not."""
    if len(url) > MAX_URL:
        raise RefusedURL(f"the URL is longer than {MAX_URL} characters")
    if any(ch.isspace() or ord(ch) < 0x20 for ch in url):
        raise RefusedURL("the URL contains whitespace or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise RefusedURL(f"the URL is not valid ({exc})") from None
    schemes = ("https", "http") if allow_private else ("https",)
    if parts.scheme not in schemes:
        raise RefusedURL(
            "the URL must be https"
            + ("" if allow_private else " (http only with THREADLINE_EVENTS__ALLOW_PRIVATE)")
        )
    if not parts.hostname:
        raise RefusedURL("the URL has no host")
    if parts.username is not None or parts.password is not None:
        raise RefusedURL("the URL must not carry credentials (the signature authenticates the hub)")
    if parts.fragment:
        raise RefusedURL("the URL must not have a fragment")
    if port == 0:
        raise RefusedURL("the URL's port must not be 0")
    return parts


def default_port(parts: SplitResult) -> int:
    return parts.port or (443 if parts.scheme == "https" else 80)


async def resolve(parts: SplitResult, *, allow_private: bool) -> list[IPAddress]:
    """Every address ``parts``' host resolves to, all of them public unless ``allow_private``;
    ``RefusedURL`` when it does not resolve or any address is not public."""
    host = parts.hostname or ""
    try:
        literal: IPAddress | None = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None:
        found = [literal]
    else:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(RESOLVE_TIMEOUT):
                infos = await loop.getaddrinfo(host, default_port(parts), type=socket.SOCK_STREAM)
        except (OSError, TimeoutError, UnicodeError):
            raise RefusedURL(f"the host {host!r} does not resolve") from None
        found = []
        for info in infos:
            address = ipaddress.ip_address(str(info[4][0]).split("%")[0])
            if address not in found:
                found.append(address)
        if not found:
            raise RefusedURL(f"the host {host!r} does not resolve")
    if not allow_private and not all(is_public(address) for address in found):
        raise RefusedURL(
            f"the host {host!r} is or resolves to a loopback, private, link-local or reserved address; "
            "receivers must be public (THREADLINE_EVENTS__ALLOW_PRIVATE=true allows it)"
        )
    return found


async def check(url: str, *, allow_private: bool) -> list[IPAddress]:
    """The whole check of a receiver URL: its form, then where its host resolves."""
    return await resolve(checked_url(url, allow_private=allow_private), allow_private=allow_private)
