"""Inbound email: one pure function from raw RFC 5322 bytes + envelope to an ``InboundMessage``.

``parse_email`` is shared by the SMTP listener and the inbound-parse webhook. It returns ``None``
for mail that must never be answered (RFC 3834 and ``reference/channels.md``):

- ``Auto-Submitted`` other than ``no``, ``X-Autoreply`` / ``X-Autorespond``, ``Precedence: bulk|list|junk``;
- any ``List-*`` header (mailing lists);
- a null envelope sender (``<>``, or ``Return-Path: <>``) and delivery reports (``multipart/report``);
- MAILER-DAEMON / postmaster / noreply-style senders, mail from our own address, mail carrying our
  own ``X-Loop``.

It raises ``BadRequest`` (422) for mail it cannot read (no usable ``From`` address).

The text is the ``text/plain`` body (or a rendering of ``text/html`` when there is none), with quoted
history and signatures stripped by mail-parser-reply; when stripping leaves nothing the full text is
kept. The raw message stays in ``extras["raw_mime"]`` for audit.

``extras["sender_authenticated"]`` is ``True`` only when an ``Authentication-Results`` field that our own
receiving path wrote, with our authserv-id (``settings.authserv_id``), says ``dmarc=pass`` with
``header.from`` equal to the ``From`` domain. Anyone can write such a header into their own mail, so
every field naming our id is discarded before one is trusted (RFC 8601 §5), and which one (if any) may
be trusted depends on how the message reached us (``HeaderTrust``):

- ``NONE``: our SMTP listener received it from a peer that is not a trusted relay. The listener is then
  the border of our domain and checks nothing itself, so no field naming our id can be ours: none is
  trusted, the sender is unauthenticated.
- ``RELAY``: the listener received it from one of ``THREADLINE_EMAIL__TRUSTED_RELAYS``, our own MTA that
  checks DMARC and strips forged copies (RFC 8601 §5): its field, the topmost naming our id, is trusted.
- ``PROVIDER``: the signed inbound-parse webhook. The provider is the border; whatever the sender wrote
  sits below the ``Received`` trace field the provider's MTA prepended, so only a field above the first
  ``Received`` is the provider's; every field naming our id below it is discarded. A provider that writes
  no such field above its trace authenticates nobody (fail closed).

Fields of any other authserv-id are claims anyone can write and are always ignored.
"""

from __future__ import annotations

import email
import email.policy
import enum
import hashlib
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from email.message import EmailMessage, Message
from typing import Any

import authres  # type: ignore[import-untyped]
import authres.arc  # type: ignore[import-untyped]
import authres.dmarc  # type: ignore[import-untyped]

from channels.email_text import html_to_text, newest_reply
from core.errors import BadRequest, InvalidAddress
from core.messages import Address, Assurance, InboundMessage, ReplyPolicy

log = logging.getLogger(__name__)

CHANNEL = "email"
# The inbox column holding provider_message_id is 255 characters; longer keys are hashed.
_MAX_PROVIDER_ID = 255
_MSG_ID = re.compile(r"<[^<>\s]+>")
_NOREPLY_LOCALS = frozenset(
    {"mailer-daemon", "postmaster", "noreply", "no-reply", "no_reply", "donotreply", "do-not-reply"}
)
_BULK_PRECEDENCE = frozenset({"bulk", "list", "junk"})
_AUTH_RESULTS = authres.FeatureContext(authres.dmarc, authres.arc)


class HeaderTrust(enum.Enum):
    """Which ``Authentication-Results`` field naming our authserv-id, if any, our receiving path wrote."""

    NONE = "none"
    RELAY = "relay"
    PROVIDER = "provider"


@dataclass(frozen=True, slots=True, kw_only=True)
class ParseContext:
    """What parsing needs to know about us: our address (an addr-spec), the trusted authserv-id."""

    address: str
    normalize: Callable[[str], Address]
    authserv_id: str | None = None

    @property
    def address_key(self) -> str:
        return self.address.strip().lower()


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
    msg = email.message_from_bytes(raw, policy=email.policy.default)
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
    full_text = _body_text(msg) or subject
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
        attachments=_attachment_names(msg),
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
    part = msg.get_body(preferencelist=("plain",))
    if part is not None:
        return _decoded(part).strip()
    part = msg.get_body(preferencelist=("html",))
    if part is not None:
        return html_to_text(_decoded(part))
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


def _attachment_names(msg: EmailMessage) -> tuple[str, ...]:
    names: list[str] = []
    for part in msg.iter_attachments():
        name = part.get_filename()
        if name:
            names.append(str(name))
    return tuple(names)


def _dmarc_pass(
    msg: EmailMessage, from_addr: str | None, authserv_id: str | None, trust: HeaderTrust
) -> bool:
    """DMARC pass, aligned with ``From``, in the one Authentication-Results field our path wrote."""
    if not authserv_id or from_addr is None or trust is HeaderTrust.NONE:
        return False
    ours = _our_results(msg, authserv_id.lower())
    if not ours:
        return False
    position, parsed = ours[0]  # the topmost field naming our id; every other one is discarded
    if trust is HeaderTrust.PROVIDER:
        first_trace = next(
            (index for index, (name, _) in enumerate(msg.raw_items()) if name.lower() == "received"), None
        )
        if first_trace is None or position > first_trace:
            return False  # written by the sender, below the provider's trace (or no trace at all)
    from_domain = from_addr.rpartition("@")[2].lower()
    return any(
        result.method == "dmarc"
        and result.result == "pass"
        and any(
            prop.type == "header" and prop.name == "from" and str(prop.value).lower() == from_domain
            for prop in result.properties
        )
        for result in parsed.results
    )


def _our_results(msg: EmailMessage, authserv_id: str) -> list[tuple[int, Any]]:
    """Every Authentication-Results field that names ``authserv_id`` (readable or not), topmost first,
    with its position among the header fields. An unreadable one naming us still counts (as no pass)."""
    found: list[tuple[int, Any]] = []
    for index, (name, value) in enumerate(msg.raw_items()):
        if name.lower() != "authentication-results":
            continue
        text = " ".join(str(value).split())
        try:
            parsed = _AUTH_RESULTS.parse_value(text)
        except authres.AuthResError:
            if text.split(";", 1)[0].strip().lower() == authserv_id:
                found.append((index, _UNREADABLE))
            continue
        if str(parsed.authserv_id).lower() == authserv_id:
            found.append((index, parsed))
    return found


@dataclass(frozen=True, slots=True)
class _Unreadable:
    results: tuple[Any, ...] = ()


_UNREADABLE = _Unreadable()
