"""Inbound email: one pure function from raw RFC 5322 bytes + envelope to an ``InboundMessage``.

``parse_email`` is shared by the SMTP listener and the inbound-parse webhook. It returns ``None``
for mail that must never be answered (RFC 3834 and ``reference/channels.md``):

- ``Auto-Submitted`` other than ``no``, ``X-Autoreply`` / ``X-Autorespond``, ``Precedence: bulk|list|junk``;
- any ``List-*`` header (mailing lists);
- a null envelope sender (``<>``, or ``Return-Path: <>``) and delivery reports (``multipart/report``);
- MAILER-DAEMON / postmaster / noreply-style senders, mail from our own address, mail carrying our
  own ``X-Loop``.

It raises ``BadRequest`` (422; the SMTP listener answers 550, so the sender does not retry) for mail it
cannot read: no usable ``From`` address, or a structure too big to parse (see below).

The text is the ``text/plain`` body (or a rendering of ``text/html`` when there is none), with quoted
history and signatures stripped by mail-parser-reply; when stripping leaves nothing the full text is
kept. The raw message stays in ``extras["raw_mime"]`` for audit.

Everything here is bounded, because a message may be 10 MiB and is shaped by its sender: the body text
is clipped to ``core.textlimits.MAX_TEXT_CHARS`` (an HTML body to ``MAX_HTML_CHARS`` before rendering)
before any pattern runs over it; before the standard library's parser runs, ``_readable``
(``channels.email_structure``) reads the raw structure in linear time and refuses a message nested more
than ``MAX_MIME_DEPTH`` levels deep (the parser recurses per level: 3,000 levels raised
``RecursionError``, which is caught too) or with more than ``MAX_MIME_PARTS`` parts, and cuts header
fields whose parsing takes quadratic time in their length. Parsing runs in a worker thread
(``EmailAdapter._parse``).

``extras["sender_authenticated"]`` is ``True`` only when an ``Authentication-Results`` field that our own
receiving path wrote, with our authserv-id (``settings.authserv_id``), says ``dmarc=pass`` with
``header.from`` equal to the ``From`` domain; which field that may be depends on how the message reached
us (``HeaderTrust``). Both live in ``channels.email_auth``; ``HeaderTrust`` is importable from here too.
"""

from __future__ import annotations

import email
import email.policy
import functools
import hashlib
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from email.message import EmailMessage, Message
from typing import Any, ParamSpec, TypeVar

from channels.email_auth import HeaderTrust as HeaderTrust
from channels.email_auth import _dmarc_pass
from channels.email_structure import _readable
from channels.email_text import MAX_HTML_CHARS, html_to_text, newest_reply
from core.errors import BadRequest, InvalidAddress
from core.messages import Address, Assurance, InboundMessage, MediaRef, ReplyPolicy
from core.textlimits import clip_text

log = logging.getLogger(__name__)

CHANNEL = "email"
# The inbox column holding provider_message_id is 255 characters; longer keys are hashed.
_MAX_PROVIDER_ID = 255
_MSG_ID = re.compile(r"<[^<>\s]+>")
_NOREPLY_LOCALS = frozenset(
    {"mailer-daemon", "postmaster", "noreply", "no-reply", "no_reply", "donotreply", "do-not-reply"}
)
_BULK_PRECEDENCE = frozenset({"bulk", "list", "junk"})


@dataclass(frozen=True, slots=True, kw_only=True)
class ParseContext:
    """What parsing needs to know about us: our address (an addr-spec), the trusted authserv-id."""

    address: str
    normalize: Callable[[str], Address]
    authserv_id: str | None = None

    @property
    def address_key(self) -> str:
        return self.address.strip().lower()


_P = ParamSpec("_P")
_R = TypeVar("_R")


def _unreadable_when_too_deep(parse: Callable[_P, _R]) -> Callable[_P, _R]:
    """``RecursionError`` (a structure deeper than ``_readable`` counted) is a message we cannot read."""

    @functools.wraps(parse)
    def guarded(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return parse(*args, **kwargs)
        except RecursionError as exc:
            raise BadRequest("the message is nested too deeply to be read", status=422) from exc

    return guarded


@_unreadable_when_too_deep
def parse_email(
    raw: bytes,
    *,
    mail_from: str | None,
    recipients: Sequence[str],
    context: ParseContext,
    trust: HeaderTrust,
) -> InboundMessage | None:
    """Parse one message; ``None`` for noise that must never be answered.

    ``mail_from`` is the envelope sender (``"<>"`` or ``""`` for the null sender; ``None`` when the
    transport did not say), ``recipients`` the envelope recipients, ``trust`` how it reached us.
    """
    msg = email.message_from_bytes(_readable(raw), policy=email.policy.default)
    assert isinstance(msg, EmailMessage)  # policy.default builds EmailMessage
    from_addr = _from_address(msg)
    reason = _noise_reason(msg, from_addr=from_addr, mail_from=mail_from, context=context)
    if reason is not None:
        log.info("email dropped as noise: %s", reason)
        return None
    if from_addr is None:
        raise BadRequest("the message has no readable From address", status=422)
    try:
        sender = context.normalize(f"{CHANNEL}:{from_addr}")
    except InvalidAddress as exc:
        raise BadRequest("the From address is not a valid email address", status=422) from exc

    message_id = _first_id(_header(msg, "Message-ID"))
    references = _ids(_header(msg, "References")) or _ids(_header(msg, "In-Reply-To"))[:1]
    recipient = recipients[0].strip().lower() if recipients else context.address_key
    subject = _header_text(_header(msg, "Subject"))
    full_text = _body_text(msg) or clip_text(subject)
    text = newest_reply(full_text) or full_text
    own_id = message_id or f"<sha256:{hashlib.sha256(raw).hexdigest()}>"
    authenticated = _dmarc_pass(msg, from_addr, context.authserv_id, trust)
    return InboundMessage(
        channel=CHANNEL,
        provider_message_id=_provider_id(own_id, recipient),
        sender=sender,
        text=text,
        reply_target={
            "message_id": message_id,
            "references": references,
            "subject": subject,
            "to": sender.handle,
        },
        attachments=_attachments(msg),
        sender_assurance=Assurance.PLATFORM_ATTESTED if authenticated else Assurance.UNVERIFIED,
        private=True,
        # anyone can write any From: line: without DMARC pass, one fixed acknowledgement at most
        reply_policy=ReplyPolicy.ANSWER if authenticated else ReplyPolicy.ACKNOWLEDGE,
        extras={
            "thread_id": references[0] if references else own_id,
            "in_reply_to": _first_id(_header(msg, "In-Reply-To")),
            "raw_mime": raw.decode("utf-8", errors="replace"),
            "sender_authenticated": authenticated,
        },
    )


def _noise_reason(
    msg: EmailMessage, *, from_addr: str | None, mail_from: str | None, context: ParseContext
) -> str | None:
    """Why this message must not be answered, or ``None``. Reasons name rules, never addresses."""
    auto = _header_text(_header(msg, "Auto-Submitted")).split(";")[0].strip().lower()
    if auto and auto != "no":
        return "auto-submitted"
    if _header(msg, "X-Autoreply") is not None or _header(msg, "X-Autorespond") is not None:
        return "auto-reply header"
    if any(name.lower().startswith("list-") for name in msg):
        return "mailing list"
    if _header_text(_header(msg, "Precedence")).strip().lower() in _BULK_PRECEDENCE:
        return "bulk precedence"
    if mail_from is not None and mail_from.strip() in ("", "<>"):
        return "null envelope sender"
    if _header_text(_header(msg, "Return-Path")).strip() == "<>":
        return "null return path"
    if msg.get_content_type() == "multipart/report":
        return "delivery report"
    senders = [from_addr, _address_of(_header(msg, "Sender")), mail_from]
    for candidate in senders:
        if candidate and _is_robot(candidate):
            return "robot sender"
    if from_addr is not None and from_addr.lower() == context.address_key:
        return "our own address"
    for loop in _all_headers(msg, "X-Loop"):
        if _header_text(loop).strip().strip("<>").strip().lower() == context.address_key:
            return "our own X-Loop"
    return None


def _is_robot(address: str) -> bool:
    local = address.strip().strip("<>").rpartition("@")[0].lower().split("+")[0]
    return local in _NOREPLY_LOCALS or local.startswith(("noreply", "no-reply", "donotreply"))


def _header(msg: EmailMessage, name: str) -> Any:
    """A header as the email package parses it, or None when it cannot be parsed (an address decoded
    from ``=?utf-8?q?...=0D=0A...?=`` carries a CR or LF, which the package refuses with ValueError)."""
    try:
        return msg.get(name)
    except (ValueError, TypeError, IndexError, LookupError, AttributeError):
        return None


def _all_headers(msg: EmailMessage, name: str) -> list[Any]:
    try:
        return list(msg.get_all(name) or ())
    except (ValueError, TypeError, IndexError, LookupError, AttributeError):
        return []


def _header_text(value: Any) -> str:
    return "" if value is None else str(value)


def _from_address(msg: EmailMessage) -> str | None:
    return _address_of(_header(msg, "From"))


def _address_of(header: Any) -> str | None:
    """The first addr-spec of an address header, or ``None`` when there is none readable."""
    if header is None:
        return None
    try:
        addresses = header.addresses
    except (AttributeError, IndexError, TypeError, ValueError):
        return None
    for address in addresses:
        spec = str(address.addr_spec).strip()
        if "@" in spec and not spec.startswith("@") and not spec.endswith("@"):
            return spec
    return None


def _ids(value: Any) -> list[str]:
    return _MSG_ID.findall(_header_text(value))


def _first_id(value: Any) -> str | None:
    found = _ids(value)
    if found:
        return found[0]
    text = _header_text(value).strip()
    return f"<{text}>" if text and " " not in text else None


def _provider_id(message_id: str, recipient: str) -> str:
    key = f"{message_id}|{recipient}"
    if len(key) <= _MAX_PROVIDER_ID:
        return key
    return f"sha256:{hashlib.sha256(key.encode('utf-8', errors='replace')).hexdigest()}"


def _body_text(msg: EmailMessage) -> str:
    """The body as text, clipped (``core.textlimits``) before any pattern runs over it."""
    part = msg.get_body(preferencelist=("plain",))
    if part is not None:
        return clip_text(_decoded(part).strip())
    part = msg.get_body(preferencelist=("html",))
    if part is not None:
        return clip_text(html_to_text(_decoded(part)[:MAX_HTML_CHARS]))
    return ""


def _decoded(part: Message) -> str:
    try:
        content = part.get_content()  # type: ignore[attr-defined]
    except (LookupError, UnicodeError, ValueError):
        content = None
    if isinstance(content, str):
        return content
    payload = part.get_payload(decode=True)
    return payload.decode("utf-8", errors="replace") if isinstance(payload, bytes) else ""


def _attachments(msg: EmailMessage) -> tuple[MediaRef, ...]:
    """The message's attached parts, their bytes carried to the media store at accept time
    (``core.media.intake.MediaIntake.keep_inline``); the name and type are the sender's word (untrusted)."""
    found: list[MediaRef] = []
    for index, part in enumerate(msg.iter_attachments()):
        payload = part.get_payload(decode=True)
        if not isinstance(payload, bytes):
            continue  # a message/rfc822 part or an undecodable one: not a file
        name = part.get_filename()
        found.append(
            MediaRef(
                ref=f"part:{index}",
                name=str(name) if name else None,
                media_type=part.get_content_type(),
                size=len(payload),
                data=payload,
            )
        )
    return tuple(found)
