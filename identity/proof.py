"""Self-service linking: the interceptor that reads a customer's message for proof of ownership.

The worker shows every customer message to ``SelfServiceLinking.intercept`` before the agent; it reads
the message and hands what it finds on:

- **A claim** (``/link ana@example.com``, ``/link +1 555 123 0000``, or "my email is ..." / "my phone
  number is ..."): a one-time code goes to the claimed handle over its own channel and the customer is
  asked to send it back here (``identity.challenges``). Only a sender that is vouched for may claim:
  otherwise a forged ``From:`` could link the forger's phone to someone else's history.
- **The code coming back** on the first channel (``identity.challenges``): on success the two handles
  become one customer: the claimed handle's customer absorbs the claimant's (a merge, undoable by an
  admin), or the claimed handle simply joins the claimant when it was never seen; the claimed handle is
  ``verified`` (``identity.attach``).
- **A Telegram shared contact whose user id is the sender's own**, and **a channel that vouches for
  other handles** (``core.ports.Attestor``): linked as ``platform_attested`` without a code
  (``identity.attestation``).

Codes are random, stored only as salted hashes, never logged (``identity.codes``), and never reach the
conversation log or memory: a message this layer handles is stored as a placeholder, and the code's
outbox row is scrubbed once sent. Requests are rate limited per claimed handle and per customer.

``intercept`` runs in the worker on the event loop, so what it matches is bounded: a message longer than
``MAX_COMMAND_CHARS`` (2,000 characters) is neither a /link command nor a code, claims are looked for
in the first ``MAX_CLAIM_SCAN_CHARS`` (4,000) characters only, and every pattern runs in linear time.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import datetime

from core.errors import InvalidAddress
from core.messages import Address, Handled, IncomingTurn
from core.ports import Attestor
from core.store.db import Database
from core.store.models import utcnow
from identity.attestation import PlatformAttestation
from identity.challenges import STORED_CLAIM, LinkChallenges
from identity.linking import IdentityLinks
from identity.normalize import normalize_address, normalize_email, normalize_phone

# The patterns run on the event loop, so they are linear (possessive quantifiers, no lazy run followed by
# an optional run) and see a bounded text: a /link command or a code is a short message on its own, and a
# claim ("my email is ...") is looked for near the start of a message only.
MAX_COMMAND_CHARS = 2_000
MAX_CLAIM_SCAN_CHARS = 4_000

# matched whole against the stripped message
_LINK_COMMAND = re.compile(r"/link(?:@\w++)?(?:\s++(?P<target>\S.*))?", re.IGNORECASE)
# the address is the whole run of address characters, followed by whitespace or the end (``_email_target``)
_EMAIL_CLAIM = re.compile(
    r"\bmy\s++e-?mail(?:\s++address)?+\s*+(?:is|:|=)\s*+(?P<target>[^\s,;<>]++)(?=\s|$)",
    re.IGNORECASE,
)
# the number is the run of digits and separators, up to its last digit (``_phone_target``)
_PHONE_CLAIM = re.compile(
    r"\bmy\s++(?:(?:mobile|cell|phone)(?:\s++number)?+|number)\s*+(?:is|:|=)\s*+(?P<target>\+?\d[\d\s().-]*+)",
    re.IGNORECASE,
)
_CODE = re.compile(r"^\s*+(?:/verify(?:@\w++)?\s++)?(?P<code>\d{3})[\s-]?(?P<rest>\d{3})\s*+[.!]?\s*+$")


@dataclass(frozen=True, slots=True)
class _Claim:
    target: str | None  # None: "/link" without an argument
    explicit: bool  # a /link command (answer even when the target is unreadable)


class SelfServiceLinking:
    """``core.ports.Interceptor``: claims, codes and attested contacts, as described above."""

    def __init__(
        self,
        db: Database,
        links: IdentityLinks,
        *,
        deliverable: Collection[str],
        attestors: Mapping[str, Attestor] | None = None,
        default_region: str = "US",
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._challenges = LinkChallenges(db, links, deliverable=deliverable, clock=clock)
        self._attestation = PlatformAttestation(db, links, attestors=attestors or {}, clock=clock)
        self._region = default_region

    async def intercept(self, turn: IncomingTurn) -> Handled | None:
        if turn.shared_contact is not None:
            return await self._attestation.contact(turn, turn.shared_contact)
        await self._attestation.link_vouched(turn)
        code = _code_in(turn.text)
        if code is not None:
            handled = await self._challenges.check(turn, code["code"] + code["rest"])
            if handled is not None:
                return handled
        claim = _claim_in(turn.text)
        if claim is not None:
            handled = await self._claim(turn, claim)
            if handled is not None and not claim.explicit:
                # "my name is Ana and my email is ...": the customer's own words, not a command; what
                # else they say is kept (logged and remembered), as for any message
                return dataclasses.replace(handled, stored_text=turn.text, keep=True)
            return handled
        return None

    async def _claim(self, turn: IncomingTurn, claim: _Claim) -> Handled | None:
        claimed = self._parse_target(claim.target)
        if claimed is None:
            if not claim.explicit:
                return None
            return Handled(
                reply="Send /link followed by the email address or phone number you want to link, "
                "for example /link ana@example.com.",
                stored_text=STORED_CLAIM,
            )
        return await self._challenges.claim(turn, claimed)

    def _parse_target(self, target: str | None) -> Address | None:
        if not target:
            return None
        target = target.strip().strip("<>").rstrip(".!?,;")
        try:
            if ":" in target and target.split(":", 1)[0].lower() in ("email", "sms", "telegram", "slack"):
                return normalize_address(target, default_region=self._region)
            if "@" in target:
                return Address(channel="email", handle=normalize_email(target))
            return Address(channel="sms", handle=normalize_phone(target, self._region))
        except InvalidAddress:
            return None


def _code_in(text: str) -> re.Match[str] | None:
    """``text`` as a verification code ("123456", "123 456", "/verify 123-456"), or ``None``."""
    return _CODE.match(text) if len(text) <= MAX_COMMAND_CHARS else None


def _claim_in(text: str) -> _Claim | None:
    if len(text) <= MAX_COMMAND_CHARS:
        command = _LINK_COMMAND.fullmatch(text.strip())
        if command is not None:
            return _Claim(target=command["target"], explicit=True)
    head = _head(text, MAX_CLAIM_SCAN_CHARS)
    for pattern, target_of in ((_EMAIL_CLAIM, _email_target), (_PHONE_CLAIM, _phone_target)):
        found = pattern.search(head)
        while found is not None:
            target = target_of(found["target"])
            if target is not None:
                return _Claim(target=target, explicit=False)
            found = pattern.search(head, found.start() + 1)
    return None


def _head(text: str, limit: int) -> str:
    """The first ``limit`` characters of ``text``, less the word the cut passes through (if any)."""
    if len(text) <= limit:
        return text
    head = text[:limit]
    if head[-1].isspace() or text[limit].isspace():
        return head
    return head.rsplit(maxsplit=1)[0]


def _email_target(run: str) -> str | None:
    """The address in a run of address characters: trailing ``.!?)`` left out, but one character at least
    after its last ``@`` that has characters on both sides (``x@y``)."""
    at = run.rfind("@", 1, len(run) - 1)
    if at < 0:
        return None
    return run[: max(len(run.rstrip(".!?)")), at + 2)]


def _phone_target(run: str) -> str | None:
    """The number in a run of digits and separators: up to its last digit, seven characters at least."""
    end = len(run)
    while not run[end - 1].isdecimal():
        end -= 1
    number = run[:end]
    return number if len(number.removeprefix("+")) >= 7 else None
