"""Outbound email: the reply message (threading and loop headers), the per-recipient cap, SMTP errors.

A reply carries ``From`` our address, ``To`` the customer, ``Subject`` ``Re: <subject>`` (never
``Re: Re:``), ``Date``, our own ``Message-ID``, ``In-Reply-To: <parent>``, ``References: <parent
references> <parent>`` (RFC 5322 §3.6.4), and the RFC 3834 loop guards ``Auto-Submitted:
auto-replied``, ``X-Auto-Response-Suppress: All`` and ``X-Loop: <our address>``.

Files (an operator's reply) are MIME attachments of the same message (``multipart/mixed``: the text
first, then each file with its checked media type and safe name, base64), so a reply with files is still
one message, one part of the outbox row.

Our Message-ID is derived from the outbox row's idempotency key, so it is fixed before the first
attempt and the same on every retry: a retry after a lost ``250`` carries the same id, and mail
clients show one message.
"""

from __future__ import annotations

import hashlib
import re
import time
import unicodedata
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Any

import aiosmtplib

from channels.limits import LocalLimits
from core.errors import DeliveryError, PermanentDeliveryError, TransientDeliveryError
from core.messages import Attachment
from core.ports import SharedLimits

_RE_PREFIX = re.compile(r"^(?:\s*re\s*(?:\[\d+\])?\s*:\s*)+", re.IGNORECASE)
_MSG_ID = re.compile(r"<[^<>\s]+>")
# RFC 5322 lets References be shortened; keep the thread root and the most recent ids.
_MAX_REFERENCES = 20
NEW_SUBJECT = "Your message to support"
MAX_SUBJECT_CHARS = 200
# control characters (CR, LF, NUL, ...), format characters (zero-width, bidi), line and paragraph separators
_UNPRINTABLE = frozenset({"Cc", "Cf", "Zl", "Zp"})


def clean_subject(subject: str | None) -> str:
    """A customer's subject as one line of printable text: control and invisible format characters
    (a CR/LF decoded from ``=?utf-8?q?...=0D=0A...?=`` would be header injection, and the email package
    refuses it) become spaces, runs of whitespace one space, and it is cut to ``MAX_SUBJECT_CHARS``."""
    text = (subject or "")[: MAX_SUBJECT_CHARS * 4]
    text = "".join(" " if unicodedata.category(c) in _UNPRINTABLE else c for c in text)
    return " ".join(text.split())[:MAX_SUBJECT_CHARS]


def reply_subject(subject: str | None) -> str:
    """``Re: <subject>`` without stacking prefixes (``Re: RE: Re[2]: x`` → ``Re: x``), cleaned."""
    base = _RE_PREFIX.sub("", clean_subject(subject)).strip()
    return f"Re: {base}" if base else "Re: your message"


def message_id_for(idempotency_key: str, domain: str) -> str:
    """Our Message-ID for the reply with this idempotency key: stable across retries."""
    digest = hashlib.sha256(idempotency_key.encode()).hexdigest()[:32]
    return f"<{digest}.threadline@{domain}>"


def build_reply(
    *,
    from_header: str,
    loop_address: str,
    to: str,
    text: str,
    message_id: str,
    reply_target: dict[str, Any],
    now: datetime | None = None,
    files: Sequence[tuple[Attachment, bytes]] = (),
) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = from_header
    msg["To"] = to
    parent = _one_id(reply_target.get("message_id"))
    subject = reply_target.get("subject")
    if parent is not None or subject:
        msg["Subject"] = reply_subject(subject if isinstance(subject, str) else None)
    else:
        msg["Subject"] = NEW_SUBJECT
    msg["Date"] = format_datetime(now or datetime.now(UTC))
    msg["Message-ID"] = message_id
    if parent is not None:
        references = [ref for ref in _id_list(reply_target.get("references")) if ref != parent]
        if len(references) >= _MAX_REFERENCES:
            references = references[:1] + references[-(_MAX_REFERENCES - 2) :]
        msg["In-Reply-To"] = parent
        msg["References"] = " ".join([*references, parent])
    msg["Auto-Submitted"] = "auto-replied"
    msg["X-Auto-Response-Suppress"] = "All"
    msg["X-Loop"] = loop_address
    msg.set_content(text)
    for file, data in files:
        maintype, _, subtype = file.media_type.partition("/")
        msg.add_attachment(
            data,
            maintype=maintype or "application",
            subtype=subtype or "octet-stream",
            filename=file.name,
        )
    return msg


def _one_id(value: object) -> str | None:
    found = _MSG_ID.findall(value) if isinstance(value, str) else []
    return found[0] if found else None


def _id_list(value: object) -> list[str]:
    if isinstance(value, str):
        return list(_MSG_ID.findall(value))
    if isinstance(value, list | tuple):
        return [found for item in value if (found := _one_id(item)) is not None]
    return []


class ReplyCap:
    """At most ``limit`` replies per recipient in any ``window`` seconds.

    Counted in ``core.ports.SharedLimits``: this process's own until ``bind`` hands in the database's,
    so that several processes together still send at most ``limit`` (the database stores the key, which
    holds the address, hashed).
    """

    def __init__(
        self,
        limit: int,
        *,
        window: float = 3600.0,
        clock: Callable[[], float] = time.monotonic,
        limits: SharedLimits | None = None,
    ) -> None:
        self._limit = limit
        self._window = window
        self._limits: SharedLimits = limits if limits is not None else LocalLimits(clock=clock)

    def bind(self, limits: SharedLimits) -> None:
        """Count in ``limits`` from now on (the database's: shared by every process)."""
        self._limits = limits

    async def reserve(self, recipient: str) -> float | None:
        """Take a slot for ``recipient``: its stamp, or ``None`` when the cap is reached."""
        return await self._limits.reserve(_cap_key(recipient), limit=self._limit, window=self._window)

    async def release(self, recipient: str, stamp: float) -> None:
        """Give back a slot whose send failed."""
        await self._limits.release(_cap_key(recipient), stamp)


def _cap_key(recipient: str) -> str:
    return f"email:reply-cap:{recipient.strip().lower()}"


def delivery_error(exc: Exception) -> DeliveryError:
    """Map an aiosmtplib (or socket) failure: 5xx → permanent; 4xx, timeouts, connections → transient.

    Messages name the SMTP code only: the server's text may quote addresses.
    """
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        codes = [refused.code for refused in exc.recipients]
        if codes and all(400 <= code < 500 for code in codes):
            return TransientDeliveryError(f"recipient deferred by the relay ({codes[0]})")
        return PermanentDeliveryError(f"recipient refused by the relay ({codes[0] if codes else '5xx'})")
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        if exc.code >= 500:
            return PermanentDeliveryError(f"the relay refused the message ({exc.code})")
        return TransientDeliveryError(f"the relay deferred the message ({exc.code})")
    if isinstance(exc, aiosmtplib.SMTPNotSupported):
        return PermanentDeliveryError("the relay does not support what the settings ask for")
    return TransientDeliveryError(f"could not reach the relay ({type(exc).__name__})")
