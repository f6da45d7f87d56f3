"""Interceptions: what answers a message before the agent does, as a chain of small handlers.

The worker shows every inbox row it claims to the chain, in order; the first link that returns an
``Outcome`` decides what is committed (in one transaction, by the worker) and the agent never sees the
message. A link only decides; it writes nothing itself.

1. ``ControlKeywords``: SMS opt-out keywords (``InboundMessage.control``). STOP records the opt-out and is
   never answered (the platform confirms it), START lifts it, HELP gets ``HELP_REPLY``. None of them is
   logged or remembered.
2. ``Acknowledgement``: a message whose reply policy is ``acknowledge`` (an email without DMARC pass).
   It is logged and remembered as unvouched and answered with the fixed acknowledgement at most, within
   the caps of ``core.pipeline.strangers`` (decided inside the commit).
3. ``IdentityInterception``: the identity layer's ``Interceptor`` (proof codes, claims, attested contacts;
   ``identity.proof``), its ``Handled`` turned into an ``Outcome``.

4. ``HandoffInterception`` (``core.pipeline.handoff_requests``): while a person owns the conversation (or
   one was asked for), a message is kept without a reply; a private message asking for a person opens a
   handoff.
5. ``RatingInterception`` (``core.pipeline.ratings``, added by the worker): a rating button pressed, or a
   digit 1-5 alone, that answers the satisfaction question of a resolved case is stored as its rating and
   thanked.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Protocol

from core.messages import Address, Assurance, Fence, IncomingTurn, Notice, ReplyPolicy, SharedContact
from core.ports import Interceptor
from core.store.models import InboxRow

HELP_REPLY = "This is our support assistant: write your question and we will answer. Reply STOP to opt out."


@dataclass(frozen=True, slots=True, kw_only=True)
class Claimed:
    """An inbox row the worker claimed, with what it knows of its sender."""

    row: InboxRow
    customer_id: str
    sender: Address
    vouched_by: Assurance  # the channel's word on this message's sender
    fence: Fence | None = None  # the worker's claim on the row (``core.store.leases``)

    @property
    def vouched(self) -> bool:
        return self.vouched_by is not Assurance.UNVERIFIED


@dataclass(frozen=True, slots=True, kw_only=True)
class Outcome:
    """What an interception decided; the worker commits all of it in one transaction.

    ``label`` names it in ``/metrics`` and the log. ``reply`` goes back to the sender; ``acknowledge``
    asks for the strangers' fixed acknowledgement instead, when the caps allow one. ``stored_text``
    replaces the row's text (a code never stays in the store). ``notices`` go to other handles. ``keep``:
    the message (as stored) and the reply are logged and remembered like an answered message.
    ``opt_out``: record (True) or lift (False) the sender's opt-out.
    """

    label: str
    reply: str | None = None
    acknowledge: bool = False
    stored_text: str | None = None
    notices: tuple[Notice, ...] = field(default=())
    keep: bool = False
    opt_out: bool | None = None
    # open a waiting handoff, asked for by this ("customer"): ``core.pipeline.handoff``
    handoff: str | None = None
    # (case id, 1-5): the customer's rating of a resolved case (``core.pipeline.cases``)
    case_rating: tuple[int, int] | None = None


class Interception(Protocol):
    """One link of the chain: an ``Outcome`` for a message it answers, None to pass it on."""

    async def __call__(self, message: Claimed) -> Outcome | None: ...


class ControlKeywords:
    _OUTCOMES: ClassVar[dict[str, Outcome]] = {
        "stop": Outcome(label="control", opt_out=True),
        "start": Outcome(label="control", opt_out=False),
        "help": Outcome(label="control", reply=HELP_REPLY),
    }

    async def __call__(self, message: Claimed) -> Outcome | None:
        control = message.row.control
        return self._OUTCOMES.get(control) if control is not None else None


class Acknowledgement:
    async def __call__(self, message: Claimed) -> Outcome | None:
        if message.row.reply_policy != ReplyPolicy.ACKNOWLEDGE.value:
            return None
        return Outcome(label="acknowledgement", acknowledge=True, keep=True)


class IdentityInterception:
    def __init__(self, interceptor: Interceptor) -> None:
        self._interceptor = interceptor

    async def __call__(self, message: Claimed) -> Outcome | None:
        row = message.row
        handled = await self._interceptor.intercept(
            IncomingTurn(
                inbox_id=row.id,
                customer_id=message.customer_id,
                sender=message.sender,
                channel=row.channel,
                text=row.text,
                authenticated=message.vouched,
                shared_contact=SharedContact.from_json(row.shared_contact),
                fence=message.fence,
            )
        )
        if handled is None:
            return None
        return Outcome(
            label="identity",
            reply=handled.reply,
            stored_text=handled.stored_text,
            notices=handled.notices,
            keep=handled.keep,
        )


def chain(
    interceptor: Interceptor | None, *, handoff: Interception | None = None
) -> tuple[Interception, ...]:
    """The links in order: opt-out keywords always first, then strangers, then identity, then handoff."""
    links: list[Interception] = [ControlKeywords(), Acknowledgement()]
    if interceptor is not None:
        links.append(IdentityInterception(interceptor))
    if handoff is not None:
        links.append(handoff)
    return tuple(links)
