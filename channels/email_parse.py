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
before any pattern runs over it; before the standard library's parser runs, ``_readable`` reads the
raw structure in linear time and refuses a message nested more than ``MAX_MIME_DEPTH`` levels deep
(the parser recurses per level: 3,000 levels raised ``RecursionError``, which is caught too) or with
more than ``MAX_MIME_PARTS`` parts, and cuts header fields whose parsing takes quadratic time in their
length. Parsing runs in a worker thread (``EmailAdapter._parse``).

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
import functools
import hashlib
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from email.message import EmailMessage, Message
from typing import Any, ParamSpec, TypeVar

import authres  # type: ignore[import-untyped]
import authres.arc  # type: ignore[import-untyped]
import authres.dmarc  # type: ignore[import-untyped]

from channels.email_text import MAX_HTML_CHARS, html_to_text, newest_reply
from core.errors import BadRequest, InvalidAddress
from core.messages import Address, Assurance, InboundMessage, ReplyPolicy
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
    """The body as text, clipped (``core.textlimits``) before any pattern runs over it."""
    part = msg.get_body(preferencelist=("plain",))
    if part is not None:
        return clip_text(_decoded(part).strip())
    part = msg.get_body(preferencelist=("html",))
    if part is not None:
        return clip_text(html_to_text(_decoded(part)[:MAX_HTML_CHARS]))
    return ""


# ----- the structure, read before the standard library's parser ----------------------------------

# The standard library's parser recurses once per level of nesting (3,000 levels: RecursionError), and
# its header parsers take quadratic time in the length of one field (an address of unclosed quotes, a
# Content-Type of thousands of ";": seconds for 16 KB, hours for a 10 MiB header), once per access. So
# the raw message is read first, in linear time (``_readable``): a message nested deeper than
# MAX_MIME_DEPTH or with more than MAX_MIME_PARTS parts is refused (422, and 550 over SMTP: no retry
# reads it either), as is a header block with more than MAX_PARSED_FIELDS fields of the kinds parsed at
# length (addresses, Content-*, Authentication-Results); a header field is cut to MAX_HEADER_FIELD_CHARS
# (the line length limit of RFC 5322), a Content-Type or Content-Disposition to MAX_PARAMETER_FIELD_CHARS
# and MAX_PARAMETERS parameters. What is cut is junk or an overlong file name; the limits keep a crafted
# message to a few seconds of one worker thread (pure Python: the event loop keeps running).
MAX_MIME_DEPTH = 30
MAX_MIME_PARTS = 100
MAX_HEADER_FIELD_CHARS = 998
MAX_PARAMETER_FIELD_CHARS = 400
MAX_PARAMETERS = 30
MAX_PARSED_FIELDS = 50
_PARAMETER_FIELDS = frozenset({b"content-type", b"content-disposition"})
_PARSED_FIELDS = _PARAMETER_FIELDS | frozenset(
    {b"from", b"sender", b"reply-to", b"to", b"cc", b"bcc", b"authentication-results"}
    | {b"resent-from", b"resent-sender", b"resent-to", b"resent-cc", b"resent-bcc"}
)
# what feedparser takes for a header line (headerRE); anything else ends the header block
_HEADER_LINE = re.compile(rb"From |[\x21-\x39\x3b-\x7e]*+:|[\t ]")
_LINE_END = re.compile(rb"\r\n|\r|\n")
_DASH_LINE = re.compile(rb"(?:\r\n|\r|\n)--")
_BOUNDARY = re.compile(rb"""boundary\s*+=\s*+(?:"([^"]*+)"|([^\s;"]++))""", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class _Level:
    """An open multipart (its boundary, ``None`` when unreadable) or an enclosed message (``None``)."""

    boundary: bytes | None
    digest: bool = False


def _readable(raw: bytes) -> bytes:
    """``raw`` with over-long header fields cut; ``BadRequest`` when its structure is too big to parse.

    Read the way ``email.feedparser`` reads it: a line that is a boundary of an open multipart ends
    whatever was being read (headers included), a header block ends at a blank line or at a line that
    is no header, and a ``message/*`` part (but ``message/delivery-status``) encloses a message, with
    headers of its own, one level deeper (so does a part without Content-Type in a ``multipart/digest``).
    Bodies are skipped from one line starting with ``--`` to the next, and not read at all once no
    multipart is open.
    """
    levels: list[_Level] = []
    parts = 0
    in_headers, in_digest = True, False
    block: list[bytes] = []  # the header lines of the block being read, from block_start
    block_start = 0
    cuts: list[tuple[int, int, bytes]] = []  # (start, end, what replaces raw[start:end])
    position, size = 0, len(raw)
    while position < size:
        if not in_headers:
            if not levels:
                break
            if not raw.startswith(b"--", position):
                dashes = _DASH_LINE.search(raw, position)
                if dashes is None:
                    break
                position = dashes.end() - 2
        ending = _LINE_END.search(raw, position)
        end = ending.end() if ending is not None else size
        line = raw[position:end]
        boundary = _boundary_of(line, levels) if levels and line.startswith(b"--") else None
        if in_headers and boundary is None and line.strip(b"\r\n") and _HEADER_LINE.match(line):
            if not block:
                block_start = position
            block.append(line)
            position = end
            continue
        if in_headers:
            _cut_fields(block, block_start, cuts)
            in_headers = _open_level(block, levels, in_digest)
            in_digest, block = False, []
            # the blank line after a message/* part's headers: the enclosed message's own headers follow
            in_headers = in_headers and boundary is None and not line.strip(b"\r\n")
        if boundary is not None:
            index, closing = boundary
            if closing:
                del levels[index:]
            else:
                in_headers, in_digest = True, levels[index].digest
                del levels[index + 1 :]
                parts += 1
        if len(levels) > MAX_MIME_DEPTH:
            raise BadRequest(f"the message is nested more than {MAX_MIME_DEPTH} levels deep", status=422)
        if parts > MAX_MIME_PARTS:
            raise BadRequest(f"the message has more than {MAX_MIME_PARTS} parts", status=422)
        position = end
    _cut_fields(block, block_start, cuts)
    if not cuts:
        return raw
    pieces: list[bytes] = []
    done = 0
    for start, stop, replacement in cuts:
        pieces += (raw[done:start], replacement)
        done = stop
    pieces.append(raw[done:])
    return b"".join(pieces)


def _cut_fields(block: list[bytes], start: int, cuts: list[tuple[int, int, bytes]]) -> None:
    """Note in ``cuts`` the header ``block`` (at ``start`` in the raw message) with long fields cut."""
    kept = _fields_cut(block)
    if len(kept) != len(block) or any(a is not b for a, b in zip(kept, block, strict=True)):
        cuts.append((start, start + sum(map(len, block)), b"".join(kept)))


def _boundary_of(line: bytes, levels: list[_Level]) -> tuple[int, bool] | None:
    """Which open multipart ``line`` is a boundary of (innermost first), and whether it closes it."""
    mark = line.rstrip(b"\r\n").rstrip(b" \t")[2:]
    for index in range(len(levels) - 1, -1, -1):
        boundary = levels[index].boundary
        if boundary is None:
            continue
        if mark == boundary:
            return index, False
        if mark == boundary + b"--":
            return index, True
    return None


def _open_level(block: list[bytes], levels: list[_Level], in_digest: bool) -> bool:
    """Push what the header ``block`` opens onto ``levels``; whether a header block follows at once."""
    content_type = _field(block, b"content-type")
    if content_type is None:
        kind = b"message/rfc822" if in_digest else b"text/plain"
    else:
        kind = content_type.split(b";", 1)[0].strip().lower()
        kind = kind if kind.count(b"/") == 1 else b"text/plain"
    if kind.startswith(b"multipart/"):
        found = _BOUNDARY.search(content_type or b"")
        if found is not None:
            boundary = (found[1] if found[1] is not None else found[2]).rstrip()
            levels.append(_Level(boundary, digest=kind == b"multipart/digest"))
        elif b"boundary" in (content_type or b"").lower():  # written some other way (RFC 2231): count it
            levels.append(_Level(None))
        return False
    if kind.startswith(b"message/") and kind != b"message/delivery-status":
        levels.append(_Level(None))
        return True
    return False


def _field(block: list[bytes], name: bytes) -> bytes | None:
    """The value of the first field ``name`` in a header block, unfolded (as cut by ``_fields_cut``)."""
    for index, line in enumerate(block):
        if line[:1] not in (b" ", b"\t") and line.split(b":", 1)[0].lower() == name:
            folded = [line]
            for more in block[index + 1 :]:
                if more[:1] not in (b" ", b"\t"):
                    break
                folded.append(more)
            unfolded = b"".join(part.rstrip(b"\r\n") for part in folded)[:MAX_HEADER_FIELD_CHARS]
            return unfolded.split(b":", 1)[1].lstrip(b" \t")
    return None


def _fields_cut(block: list[bytes]) -> list[bytes]:
    """The lines of a header block, every field cut to ``MAX_HEADER_FIELD_CHARS`` (and a Content-Type or
    Content-Disposition before its parameter ``MAX_PARAMETERS`` + 1); ``BadRequest`` when the block has
    more than ``MAX_PARSED_FIELDS`` fields that are parsed at length."""
    kept: list[bytes] = []
    room = 0  # characters the current field may still take
    semicolons = -1  # parameters it may still take (-1: any number)
    parsed = 0
    for line in block:
        if line[:1] not in (b" ", b"\t"):
            name = line.split(b":", 1)[0].strip().lower()
            if name in _PARAMETER_FIELDS:
                room, semicolons = MAX_PARAMETER_FIELD_CHARS, MAX_PARAMETERS
            else:
                room, semicolons = MAX_HEADER_FIELD_CHARS, -1
            if name in _PARSED_FIELDS:
                parsed += 1
        if room <= 0:
            continue
        text = line.rstrip(b"\r\n")
        keep = min(len(text), room)
        if semicolons >= 0 and text.count(b";", 0, keep) > semicolons:
            at = -1
            for _ in range(semicolons + 1):
                at = text.find(b";", at + 1)
            keep, room = at, 0
        elif semicolons >= 0:
            semicolons -= text.count(b";", 0, keep)
        kept.append(line if keep == len(text) else text[:keep] + line[len(text) :])
        room -= keep
    if parsed > MAX_PARSED_FIELDS:
        raise BadRequest(
            f"a header block has more than {MAX_PARSED_FIELDS} fields parsed at length", status=422
        )
    return kept


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
    if parsed is None:
        return False  # unreadable: no pass
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


def _our_results(msg: EmailMessage, authserv_id: str) -> list[tuple[int, Any | None]]:
    """Every Authentication-Results field that names ``authserv_id`` (readable or not), topmost first,
    with its position among the header fields. An unreadable one naming us still counts (None: no pass)."""
    found: list[tuple[int, Any | None]] = []
    for index, (name, value) in enumerate(msg.raw_items()):
        if name.lower() != "authentication-results":
            continue
        text = " ".join(str(value).split())
        try:
            parsed = _AUTH_RESULTS.parse_value(text)
        except authres.AuthResError:
            if text.split(";", 1)[0].strip().lower() == authserv_id:
                found.append((index, None))
            continue
        if str(parsed.authserv_id).lower() == authserv_id:
            found.append((index, parsed))
    return found
