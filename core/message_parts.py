"""What a message carries besides its text: the files (``MediaRef`` as the platform names one,
``FetchedMedia`` as a channel fetched it, ``Attachment`` as the hub keeps it), the buttons offered under a
reply (``Button``, kept in an outbox row's ``reply_target`` under ``BUTTONS_KEY``) and a phone number the
platform vouches for (``SharedContact``). Frozen and keyword-only, like every value type
(``core.messages`` re-exports them all).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal


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
