"""Value types every part of the hub speaks: addresses, inbound and outbound messages, deliveries.

All are frozen and keyword-only. Provider fields we do not model are kept in ``extras`` rather
than dropped, so an adapter can read them later without a schema change.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, Literal, Protocol

from core.errors import InvalidAddress
from core.memory.attribution import STATEMENT_METADATA

# a channel is named by its adapter; core checks only the shape of the name (identity.normalize knows
# which channels exist and how each one's handles are written)
_CHANNEL_NAME = re.compile(r"[a-z][a-z0-9_]{0,31}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Address:
    """A normalised handle on one channel, written ``channel:handle`` (``sms:+15551234567``).

    Construct it through ``identity.normalize`` so the handle is canonical; this type only checks
    the shape.
    """

    channel: str
    handle: str

    def __post_init__(self) -> None:
        if not _CHANNEL_NAME.fullmatch(self.channel):
            raise InvalidAddress(f"not a channel name: {self.channel[:40]!r}")
        if not self.handle or self.handle != self.handle.strip():
            raise InvalidAddress(f"empty or padded handle on channel {self.channel!r}")

    def __str__(self) -> str:
        return f"{self.channel}:{self.handle}"

    @classmethod
    def parse(cls, text: str) -> Address:
        """Split ``channel:handle`` without normalising the handle."""
        channel, sep, handle = text.partition(":")
        if not sep:
            raise InvalidAddress("an address is written channel:handle")
        return cls(channel=channel.strip().lower(), handle=handle.strip())


class Assurance(enum.StrEnum):
    """How well we know that a handle belongs to its customer."""

    UNVERIFIED = "unverified"
    PLATFORM_ATTESTED = "platform_attested"
    VERIFIED = "verified"
    ADMIN_LINKED = "admin_linked"


class ReplyPolicy(enum.StrEnum):
    """How the hub may answer a message: ``answer`` with the agent, or ``acknowledge`` it with one fixed
    text at most (``core.pipeline.strangers``), for a sender the channel cannot vouch for and whose reply
    address anyone can write (an email without DMARC pass: answering it would be backscatter)."""

    ANSWER = "answer"
    ACKNOWLEDGE = "acknowledge"


class Control(enum.StrEnum):
    """An opt-out keyword the platform's rules give a meaning (SMS STOP, START, HELP)."""

    STOP = "stop"
    START = "start"
    HELP = "help"


@dataclass(frozen=True, slots=True, kw_only=True)
class SharedContact:
    """A phone number the platform says belongs to an account (a Telegram contact), as the platform wrote
    it (international, perhaps without its ``+``), and whether that account is the sender's own."""

    phone: str
    is_senders_own: bool

    def as_json(self) -> dict[str, Any]:
        return {"phone": self.phone, "is_senders_own": self.is_senders_own}

    @classmethod
    def from_json(cls, value: object) -> SharedContact | None:
        if not isinstance(value, dict) or not isinstance(value.get("phone"), str):
            return None
        return cls(phone=value["phone"], is_senders_own=value.get("is_senders_own") is True)


@dataclass(frozen=True, slots=True, kw_only=True)
class MediaRef:
    """A file of an inbound message as its platform names it, before the hub holds its bytes.

    ``ref`` is what the channel's ``fetch_media`` needs (a Telegram ``file_id``, a Twilio media URL, a Slack
    file id); ``data`` holds the bytes when they came with the message itself (an email's parts; kept out
    of the inbox row). ``name``, ``media_type`` and ``size`` are what the sender or the platform declared:
    untrusted (``core.media`` counts the size, sniffs the type and makes the name safe).
    """

    ref: str
    name: str | None = None
    media_type: str | None = None
    size: int | None = None
    data: bytes | None = field(default=None, repr=False, compare=False)

    def as_json(self) -> dict[str, Any]:
        """What the inbox row keeps of it (never the bytes)."""
        return {"ref": self.ref, "name": self.name, "media_type": self.media_type, "size": self.size}

    @classmethod
    def from_json(cls, value: object) -> MediaRef | None:
        """A reference the inbox row kept (``as_json``; an older row's plain string ref); None if unusable."""
        if isinstance(value, str) and value:
            return cls(ref=value)
        if not isinstance(value, dict) or not isinstance(value.get("ref"), str) or not value["ref"]:
            return None
        name, media_type, size = value.get("name"), value.get("media_type"), value.get("size")
        return cls(
            ref=value["ref"],
            name=name if isinstance(name, str) else None,
            media_type=media_type if isinstance(media_type, str) else None,
            size=size if isinstance(size, int) and not isinstance(size, bool) else None,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class FetchedMedia:
    """A file's bytes as a channel fetched them, with what the platform said of them (untrusted)."""

    data: bytes = field(repr=False)
    media_type: str | None = None
    name: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Attachment:
    """A file of a message as the hub keeps it (``core.media``): stored once under its ``sha256`` in the
    media store, or refused (``reason``; nothing stored). ``text``: what was read out of it for the agent
    (a PDF's text, redacted and bounded), if anything."""

    name: str
    media_type: str
    size: int
    sha256: str | None = None
    status: Literal["stored", "refused"] = "stored"
    reason: str | None = None
    text: str | None = field(default=None, repr=False)

    @property
    def stored(self) -> bool:
        return self.status == "stored" and self.sha256 is not None


@dataclass(frozen=True, slots=True, kw_only=True)
class InboundMessage:
    """One customer message as a channel adapter parsed it.

    ``provider_message_id`` is the platform's own id for the delivery (Slack ``event_id``,
    Telegram ``update_id``, Twilio ``MessageSid``, email ``Message-ID``); with ``channel`` it is
    the inbox's unique key, so a platform retry is a no-op.
    ``reply_target`` is what the adapter needs to answer (chat id, thread ts, email thread).

    What the core acts on, each declared by the adapter (defaults fail closed):
    ``sender_assurance``: how far the channel vouches for the sender of this very message
    (``platform_attested`` where Slack, Telegram or Twilio authenticate the sender, or an email with DMARC
    pass from our own receiving path; ``unverified`` for a bare email ``From:`` and the console). What an
    unvouched message says is kept under its handle and recalled only for that handle.
    ``private``: a one-to-one conversation; outside one (a group chat, a Slack channel, an ``app_mention``)
    the answer is made without the customer's personal memory, which everyone there would read.
    ``reply_policy``: see ``ReplyPolicy``.
    ``control``: an opt-out keyword (``Control``); ``shared_contact``: a phone number the platform vouches
    for (``SharedContact``). ``extras`` keeps provider fields that only their own channel reads.
    """

    channel: str
    provider_message_id: str
    sender: Address
    text: str
    reply_target: dict[str, Any] = field(default_factory=dict)
    received_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    attachments: tuple[MediaRef, ...] = ()
    sender_assurance: Assurance = Assurance.UNVERIFIED
    private: bool = False
    reply_policy: ReplyPolicy = ReplyPolicy.ANSWER
    control: Control | None = None
    shared_contact: SharedContact | None = None
    extras: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.provider_message_id:
            raise ValueError("provider_message_id is required")
        if self.received_at.tzinfo is None:
            object.__setattr__(self, "received_at", self.received_at.replace(tzinfo=UTC))


BUTTON_VALUE_MAX_BYTES = 64  # Telegram's callback_data limit (Slack allows 2,000): the smaller rules


@dataclass(frozen=True, slots=True)
class Button:
    """A choice offered under a reply where the channel has buttons (Slack Block Kit buttons, a Telegram
    inline keyboard); elsewhere the reply's text says what to type instead.

    A press comes back as an ``InboundMessage`` whose ``text`` is the button's ``label`` and whose
    ``extras["button"]`` is its ``value``. The platform lets a modified client send any value, so the core
    checks a pressed value like any other input (``core.pipeline.ratings.RatingInterception``).
    """

    label: str
    value: str

    def __post_init__(self) -> None:
        if not self.label or not self.value or len(self.value.encode("utf-8")) > BUTTON_VALUE_MAX_BYTES:
            raise ValueError(f"a button needs a label and a value of 1-{BUTTON_VALUE_MAX_BYTES} bytes")


BUTTONS_KEY = "buttons"  # where an outbox row's reply_target keeps its buttons: [[label, value], ...]


def buttons_from(reply_target: Mapping[str, Any]) -> tuple[Button, ...]:
    """The buttons an outbox row's ``reply_target`` holds (``BUTTONS_KEY``); malformed entries skipped."""
    found: list[Button] = []
    raw = reply_target.get(BUTTONS_KEY)
    for item in raw if isinstance(raw, list) else ():
        if isinstance(item, list) and len(item) == 2 and all(isinstance(part, str) for part in item):
            try:
                found.append(Button(item[0], item[1]))
            except ValueError:
                continue
    return tuple(found)


@dataclass(frozen=True, slots=True, kw_only=True)
class OutboundMessage:
    """A reply to send. ``idempotency_key`` is unique per reply and survives retries.

    An adapter that splits a long reply into parts skips the first ``parts_sent`` parts: they went
    out in an earlier attempt that failed part-way (see ``DeliveryError.sent_ids``). ``buttons`` go under
    the last part where the channel has buttons (``Button``) and are ignored elsewhere. ``files``: stored
    files sent with the text (an operator's reply), each one part after the text's; their bytes (or a
    signed link to them) come from the ``core.ports.FileSource`` the delivery binds to the adapter.
    """

    channel: str
    recipient: Address
    text: str
    idempotency_key: str
    reply_target: dict[str, Any] = field(default_factory=dict)
    parts_sent: int = 0
    buttons: tuple[Button, ...] = ()
    files: tuple[Attachment, ...] = ()


class DeliveryStatus(enum.StrEnum):
    """Where an outbound row stands. Ordered: a status never moves backwards."""

    PENDING = "pending"
    SENT = "sent"
    DELIVERED = "delivered"
    FAILED = "failed"


# Platform delivery statuses (Twilio's vocabulary, which covers the others) by rank: a status only
# ever moves to a higher rank, so a late or repeated callback never moves a message backwards.
STATUS_RANK: dict[str, int] = {
    "accepted": 1,
    "scheduled": 1,
    "queued": 1,
    "sending": 2,
    "sent": 3,
    "delivered": 4,
    "undelivered": 4,
    "failed": 4,
    "canceled": 4,
    "read": 5,
}


@dataclass(frozen=True, slots=True, kw_only=True)
class StatusUpdate:
    """A platform's report on a message we sent (a Twilio status callback)."""

    provider_message_id: str
    status: str
    error_code: str | None = None
    # which reply and part this platform message is, when the platform echoes what we told it
    # (the Twilio status callback URL carries them): lets a send that was never recorded be recognised
    idempotency_key: str | None = None
    part_index: int | None = None

    def __post_init__(self) -> None:
        if self.status not in STATUS_RANK:
            raise ValueError(f"unknown delivery status {self.status!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Delivery:
    """What a channel's ``send`` reports: the platform ids of what it sent."""

    provider_message_ids: tuple[str, ...] = ()
    status: DeliveryStatus = DeliveryStatus.SENT


@dataclass(frozen=True, slots=True, kw_only=True)
class Resolution:
    """The identity resolver's answer for one address."""

    customer_id: str
    assurance: Assurance
    created: bool = False


# ----- the agent, the interceptions and memory (used by the ports in core.ports) -----------------------

Role = Literal["system", "user", "assistant"]
SaidBy = Literal["customer", "support_team"]
MemoryCategory = Literal["profile", "support_history", "special_handling", "operational_state"]
MEMORY_CATEGORIES: tuple[MemoryCategory, ...] = (
    "profile",
    "support_history",
    "special_handling",
    "operational_state",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class ImagePart:
    """An image shown to a vision-capable LLM beside a message's text (a customer's photo): its bytes and
    their sniffed type. Bytes are kept out of ``repr``."""

    media_type: str
    data: bytes = field(repr=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class ChatMessage:
    """One message of an LLM conversation: its text, and (a user message, ``THREADLINE_LLM__VISION``) the
    images that go with it, sent as OpenAI ``image_url`` content parts."""

    role: Role
    content: str
    images: tuple[ImagePart, ...] = field(default=(), repr=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class Tool:
    """A function the LLM is offered besides answering (OpenAI function calling): its name, when to call
    it (the model reads ``description``) and the JSON Schema of its arguments (an object schema)."""

    name: str
    description: str
    parameters: dict[str, Any] = field(default_factory=lambda: {"type": "object", "properties": {}})


@dataclass(frozen=True, slots=True, kw_only=True)
class ToolCall:
    """The model called an offered tool. ``arguments`` are the model's own words (they may quote the
    customer): kept out of ``repr`` and never logged."""

    name: str
    arguments: dict[str, Any] = field(default_factory=dict, repr=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class Completion:
    """What the LLM answered: its text (``""`` when it only called tools) and the offered tools it called.
    Never empty: without text it called a tool (``ChatModel.complete`` raises ``LLMError`` otherwise)."""

    text: str
    tool_calls: tuple[ToolCall, ...] = ()

    def called(self, name: str) -> ToolCall | None:
        """The first call to the tool ``name``, if the model made one."""
        return next((call for call in self.tool_calls if call.name == name), None)


@dataclass(frozen=True, slots=True, kw_only=True)
class IncomingTurn:
    """A customer message as the identity layer sees it before the agent does."""

    inbox_id: int
    customer_id: str
    sender: Address
    channel: str
    text: str
    # the channel vouched for this very message (InboundMessage.sender_assurance is not unverified)
    authenticated: bool = False
    # a phone number the platform vouches for (a Telegram contact), as InboundMessage.shared_contact
    shared_contact: SharedContact | None = None
    # the worker's claim on the inbox row (``core.store.leases.Claim.fence``): a side effect the identity
    # layer writes (a proof code) is written only while ``await fence(session)`` is True in its transaction
    fence: Fence | None = field(default=None, compare=False)


class Fence(Protocol):
    """Checks inside the caller's transaction (an ``AsyncSession``) that the work's claim still holds,
    and keeps it held until that transaction ends."""

    async def __call__(self, session: Any, /) -> bool: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class Notice:
    """A message to another handle of the customer (a one-time code to a claimed address).

    ``one_time``: the text is a secret; the outbox keeps it only until it is sent or has failed.
    """

    recipient: Address
    text: str
    idempotency_key: str
    one_time: bool = True


@dataclass(frozen=True, slots=True, kw_only=True)
class Handled:
    """The identity layer answered a message itself: it never reaches the agent.

    ``stored_text`` replaces the message text in the inbox row, so that a code or a claimed address
    does not stay in the store; ``reply`` goes back to the sender; ``notices`` go to other handles.
    ``keep``: the message is also an ordinary customer message ("my name is Ana and my email is ..."):
    it and the reply are logged and remembered like any answered message (never set for a code).
    """

    reply: str | None
    stored_text: str
    notices: tuple[Notice, ...] = ()
    keep: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Provenance:
    """Where a memory came from: the channel, the handle, and our message ids (``inbox:<id>``)."""

    channel: str
    handle: str
    message_ids: tuple[str, ...]
    category: MemoryCategory
    turn_ids: tuple[int, ...] = ()
    # False: from a message nobody vouched for (an email without DMARC pass, the console): recalled only
    # for that same handle, never for the customer's other channels
    sender_vouched: bool = True
    # who said it: the customer, or a person of the support team (an operator's reply during a handoff)
    said_by: SaidBy = "customer"

    def as_metadata(self) -> dict[str, Any]:
        """The memory's metadata: where it came from, who said it, and that nobody checked it."""
        return {
            **STATEMENT_METADATA,
            "said_by": self.said_by,
            "sender_vouched": self.sender_vouched,
            "source_channel": self.channel,
            "source_handle": self.handle,
            "message_ids": list(self.message_ids),
            "turn_ids": list(self.turn_ids),
            "category": self.category,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class MemoryRecord:
    """One memory as recall, list and export return it."""

    id: str
    text: str
    score: float | None = None
    channel: str | None = None
    handle: str | None = None
    message_ids: tuple[str, ...] = ()
    turn_ids: tuple[int, ...] = ()
    category: str | None = None
    created_at: datetime | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        """The memory as ``threadline memory --json`` and an export show it: text, provenance, metadata
        (who said it, whether it was verified), and the recall score when it came from a search."""
        return {
            "id": self.id,
            "text": self.text,
            "score": self.score,
            "category": self.category,
            "channel": self.channel,
            "handle": self.handle,
            "message_ids": list(self.message_ids),
            "turn_ids": list(self.turn_ids),
            "created_at": self.created_at.isoformat() if self.created_at else None,
            "metadata": dict(self.metadata),
        }


def _moment(text: str, name: str) -> datetime:
    """An ISO date (midnight UTC) or date-time (UTC when it has no offset); ``ValueError`` names ``name``."""
    value = text.strip()
    try:
        if len(value) == 10:
            return datetime.combine(date.fromisoformat(value), datetime.min.time(), tzinfo=UTC)
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(
            f"{name}: not an ISO date or date-time (2025-01-31 or 2025-01-31T09:00:00Z): {value[:40]!r}"
        ) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True, kw_only=True)
class MemoryFilter:
    """Which of a customer's memories a recall or a listing keeps (every condition given must hold).

    ``category``: the memory's category (one of ``MEMORY_CATEGORIES``); ``channel``: the channel it came
    from (its ``source_channel``, as ``Provenance.as_metadata`` writes it); ``since`` (inclusive) and
    ``until`` (exclusive): when it was written (``created_at``; a memory without one is left out when
    either is given). Naive times are UTC. ``ValueError`` for an unknown category, a malformed channel
    name or ``since`` not before ``until``.
    """

    category: MemoryCategory | None = None
    channel: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def __post_init__(self) -> None:
        if self.category is not None and self.category not in MEMORY_CATEGORIES:
            raise ValueError(
                f"unknown category {str(self.category)[:40]!r}: use one of {', '.join(MEMORY_CATEGORIES)}"
            )
        if self.channel is not None and not _CHANNEL_NAME.fullmatch(self.channel):
            raise ValueError(f"not a channel name: {self.channel[:40]!r}")
        for name in ("since", "until"):
            moment = getattr(self, name)
            if moment is not None and moment.tzinfo is None:
                object.__setattr__(self, name, moment.replace(tzinfo=UTC))
        if self.since is not None and self.until is not None and self.since >= self.until:
            raise ValueError("since must be before until (since is inclusive, until exclusive)")

    @classmethod
    def parse(
        cls,
        *,
        category: str | None = None,
        channel: str | None = None,
        since: str | None = None,
        until: str | None = None,
    ) -> MemoryFilter:
        """A filter from text (a query string, command-line options); empty values mean no condition."""
        chosen = next((c for c in MEMORY_CATEGORIES if c == category), None)
        if category and chosen is None:
            raise ValueError(f"unknown category {category[:40]!r}: use one of {', '.join(MEMORY_CATEGORIES)}")
        return cls(
            category=chosen,
            channel=channel.strip().lower() if channel and channel.strip() else None,
            since=_moment(since, "since") if since and since.strip() else None,
            until=_moment(until, "until") if until and until.strip() else None,
        )

    @property
    def empty(self) -> bool:
        return self.category is None and self.channel is None and self.since is None and self.until is None

    def metadata(self) -> dict[str, str]:
        """The conditions on the memory's metadata, as equalities of its stored payload."""
        found: dict[str, str] = {}
        if self.category is not None:
            found["category"] = self.category
        if self.channel is not None:
            found["source_channel"] = self.channel
        return found

    def admits_time(self, written: datetime | None) -> bool:
        if self.since is None and self.until is None:
            return True
        if written is None:
            return False
        if written.tzinfo is None:
            written = written.replace(tzinfo=UTC)
        return (self.since is None or written >= self.since) and (self.until is None or written < self.until)

    def admits(self, record: MemoryRecord) -> bool:
        """True when ``record`` meets every condition."""
        return (
            (self.category is None or record.category == self.category)
            and (self.channel is None or record.channel == self.channel)
            and self.admits_time(record.created_at)
        )

    def as_json(self) -> dict[str, str | None]:
        return {
            "category": self.category,
            "channel": self.channel,
            "since": self.since.isoformat() if self.since else None,
            "until": self.until.isoformat() if self.until else None,
        }
