"""Signed, expiring links to stored files: how a platform that takes media by URL (Twilio MMS) fetches a
file the hub sends.

A link is ``<THREADLINE_PUBLIC_BASE_URL>/media/<sha256>?expires=<unix seconds>&sig=<hex>`` where ``sig`` is
HMAC-SHA256 over ``"<sha256>.<expires>"``. ``core.web.media`` serves it: a wrong or missing signature and
a link past ``expires`` are 403 (compared in constant time), a file the hub did not send (or has forgotten)
is 404. The link names no customer and carries no secret; whoever holds it may fetch that one file until
it expires (``THREADLINE_ATTACHMENTS__LINK_MINUTES``, an hour by default), as with Twilio's own media URLs.

The key is derived from the Twilio auth token (HMAC-SHA256 of it over a fixed label): Twilio is the only
platform that fetches by URL, every process of the hub already has the token (so a web process verifies
what a worker process signed), and there is no new secret to keep. Without SMS there are no links
(``links_for`` is ``None``) and the route answers 404 to everything. Rotating the token voids the links
made before, which only matters for an MMS not yet fetched.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import re
import time
from collections.abc import Callable

from core.settings import Settings

_LABEL = b"threadline media links v1"
_SHA256 = re.compile(r"[0-9a-f]{64}")
_EXPIRES = re.compile(r"[0-9]{1,12}")
_SIG = re.compile(r"[0-9a-f]{64}")
MEDIA_PATH = "/media"


class Verdict(enum.Enum):
    VALID = "valid"
    EXPIRED = "expired"
    FORGED = "forged"  # malformed, or a signature we did not make


class MediaLinks:
    """Makes and checks the signed links of one hub (the key never appears in a repr or a log line)."""

    def __init__(
        self,
        key: bytes,
        *,
        base_url: str,
        minutes: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not key:
            raise ValueError("a media link key is needed")
        self._key = key
        self._base = base_url.rstrip("/")
        self._seconds = minutes * 60
        self._clock = clock

    def __repr__(self) -> str:
        return f"MediaLinks(base_url={self._base!r}, minutes={self._seconds // 60})"

    def signature(self, sha256: str, expires: int) -> str:
        return hmac.new(self._key, f"{sha256}.{expires}".encode("ascii"), hashlib.sha256).hexdigest()

    def url(self, sha256: str) -> str:
        """A link to the file of ``sha256``, valid for the configured minutes from now."""
        if not _SHA256.fullmatch(sha256):
            raise ValueError("not a sha256 digest")
        expires = int(self._clock()) + self._seconds
        return f"{self._base}{MEDIA_PATH}/{sha256}?expires={expires}&sig={self.signature(sha256, expires)}"

    def verify(self, sha256: str, expires: str | None, sig: str | None) -> Verdict:
        """Whether a request's ``expires`` and ``sig`` are ours for ``sha256`` and still good."""
        if not (expires and sig and _SHA256.fullmatch(sha256) and _EXPIRES.fullmatch(expires)):
            return Verdict.FORGED
        expected = self.signature(sha256, int(expires))
        if not _SIG.fullmatch(sig) or not hmac.compare_digest(expected.encode(), sig.encode()):
            return Verdict.FORGED
        if int(expires) < self._clock():
            return Verdict.EXPIRED
        return Verdict.VALID


def link_key(secret: str) -> bytes:
    """The signing key derived from ``secret`` (the Twilio auth token)."""
    return hmac.new(secret.encode("utf-8"), _LABEL, hashlib.sha256).digest()


def links_for(settings: Settings) -> MediaLinks | None:
    """The links of a hub configured with ``settings``; ``None`` without SMS (nothing fetches by URL)."""
    token = settings.twilio.auth_token
    secret = token.get_secret_value() if token is not None else ""
    if not secret or not settings.public_base_url:
        return None
    return MediaLinks(
        link_key(secret), base_url=settings.public_base_url, minutes=settings.attachments.link_minutes
    )
