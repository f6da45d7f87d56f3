"""Value types every part of the hub speaks: addresses, inbound and outbound messages, deliveries.

All are frozen and keyword-only. Provider fields we do not model are kept in ``extras`` rather
than dropped, so an adapter can read them later without a schema change.
What a message carries besides its text (files, buttons, a shared contact) is defined in
``core.message_parts``, the LLM conversation's types in ``core.llm_types`` and the memory's in
``core.memory.values``; all are re-exported here.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from core.errors import InvalidAddress
from core.llm_types import ChatMessage as ChatMessage
from core.llm_types import Completion as Completion
from core.llm_types import ImagePart as ImagePart
from core.llm_types import Role as Role
from core.llm_types import Tool as Tool
from core.llm_types import ToolCall as ToolCall
from core.memory.values import CHANNEL_NAME
from core.memory.values import MEMORY_CATEGORIES as MEMORY_CATEGORIES
from core.memory.values import MemoryCategory as MemoryCategory
from core.memory.values import MemoryFilter as MemoryFilter
from core.memory.values import MemoryRecord as MemoryRecord
from core.memory.values import Provenance as Provenance
from core.memory.values import SaidBy as SaidBy
from core.message_parts import BUTTON_VALUE_MAX_BYTES as BUTTON_VALUE_MAX_BYTES
from core.message_parts import BUTTONS_KEY as BUTTONS_KEY
from core.message_parts import Attachment as Attachment
from core.message_parts import Button as Button
from core.message_parts import FetchedMedia as FetchedMedia
from core.message_parts import MediaRef as MediaRef
from core.message_parts import SharedContact as SharedContact
from core.message_parts import buttons_from as buttons_from


@dataclass(frozen=True, slots=True, kw_only=True)
class Address:
    """A normalised handle on one channel, written ``channel:handle`` (``sms:+15551234567``).

    Construct it through ``identity.normalize`` so the handle is canonical; this type only checks
    the shape.
    """

    channel: str
    handle: str

    def __post_init__(self) -> None:
        if not CHANNEL_NAME.fullmatch(self.channel):
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
