"""Self-service linking on proof of ownership, and links the platform itself vouches for.

The worker shows every customer message to ``SelfServiceLinking.intercept`` before the agent:

- **A claim** (``/link ana@example.com``, ``/link +1 555 123 0000``, or "my email is ..." / "my phone
  number is ..."): a one-time code goes to the claimed handle over its own channel (email to the
  address, SMS to the number, a Telegram message to the chat) and the customer is asked to send it back
  here. Only a sender that is vouched for may claim (a platform-attested handle, an email with DMARC
  pass): otherwise a forged ``From:`` could link the forger's phone to someone else's history.
- **The code coming back** on the first channel: compared in constant time with its salted HMAC; five
  wrong tries lock the request, ten minutes expire it. On success the two handles become one customer:
  the claimed handle's customer absorbs the claimant's (a merge, undoable by an admin), or the claimed
  handle simply joins the claimant when it was never seen; the claimed handle is ``verified``.
- **A Telegram shared contact whose user id is the sender's own**: Telegram vouches that the number
  is the sender's, so it is linked as ``platform_attested`` without a code.
- **A channel that vouches for other handles** (``core.ports.Attestor``: the Slack profile email in a
  workspace configured as trusted) is asked once per sender and process; what it vouches for is linked
  as ``platform_attested``, and the message goes on to the agent.

Codes are random (``secrets``), stored only as salted hashes, never logged, and never reach the
conversation log or memory: a message this module handles is stored as a placeholder, and the code's
outbox row is scrubbed once sent. Requests are rate limited per claimed handle and per customer.

``intercept`` runs in the worker on the event loop, so what it matches is bounded: a message longer than
``MAX_COMMAND_CHARS`` (2,000 characters) is neither a /link command nor a code, claims are looked for
in the first ``MAX_CLAIM_SCAN_CHARS`` (4,000) characters only, and every pattern runs in linear time.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import logging
import re
import secrets
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import IdentityError, InvalidAddress
from core.messages import Address, Assurance, SharedContact
from core.ports import Attestor, Handled, IncomingTurn, Notice
from core.store.db import Database
from core.store.models import Identity, LinkChallenge, utcnow
from identity.linking import RANK, IdentityLinks
from identity.normalize import international_phone, normalize_address, normalize_email, normalize_phone

log = logging.getLogger(__name__)

CODE_DIGITS = 6
CODE_TTL = timedelta(minutes=10)
MAX_TRIES = 5
RATE_WINDOW = timedelta(hours=1)
MAX_REQUESTS_PER_CLAIMED_HANDLE = 3
MAX_REQUESTS_PER_CUSTOMER = 5

# what the inbox keeps instead of the message text
STORED_CLAIM = "[link request]"
STORED_CODE = "[verification code]"
STORED_CONTACT = "[shared their own contact]"
# a link challenge row for a contact Telegram attested but that another customer holds: a suggestion only
ATTESTED_CLAIM = "attested"

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
# where a code can be delivered: the claimed handle's own channel
_DELIVERABLE_BY = {"email": "email", "sms": "sms", "telegram": "telegram", "slack": "slack"}


def hash_code(code: str, salt: str) -> str:
    return hmac.new(salt.encode(), code.encode(), hashlib.sha256).hexdigest()


def new_code() -> str:
    return f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"


def mask(address: Address) -> str:
    """Enough of a handle for its owner to recognise it, not enough to read it off a screen."""
    handle = address.handle
    if address.channel == "email":
        local, _, domain = handle.partition("@")
        return f"{local[:1]}***@{domain}"
    if address.channel == "sms":
        return f"the number ending in {handle[-4:]}"
    return f"that {address.channel} account"


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
        self._db = db
        self._links = links
        self._attestors = dict(attestors or {})
        self._attested: set[str] = set()  # senders already asked about in this process
        self._deliverable = frozenset(deliverable)
        self._region = default_region
        self._clock = clock

    async def intercept(self, turn: IncomingTurn) -> Handled | None:
        if turn.shared_contact is not None:
            return await self._contact(turn, turn.shared_contact)
        await self._platform_attested(turn)
        if _code_in(turn.text):
            handled = await self._code(turn)
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

    # ----- a claim: send a code to the claimed handle ----------------------------------------------

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
        if not await self._vouched_for(turn):
            return Handled(
                reply="For your security I can only link addresses in a conversation we can verify. "
                f"Write to us from {mask(claimed)} and send /link with this address there instead.",
                stored_text=STORED_CLAIM,
            )
        if claimed == turn.sender:
            return Handled(
                reply="That is the address you are writing from already.", stored_text=STORED_CLAIM
            )
        if _DELIVERABLE_BY.get(claimed.channel) not in self._deliverable:
            return Handled(
                reply=f"I can't send a code to {mask(claimed)} from here, so I can't link it myself. "
                "Our team can link it for you.",
                stored_text=STORED_CLAIM,
            )
        now = self._clock()
        async with self._db.session() as session:
            holder = await session.scalar(select(Identity).where(Identity.address == str(claimed)))
            if holder is not None and holder.customer_id == turn.customer_id:
                return Handled(reply=f"{mask(claimed)} is already linked to you.", stored_text=STORED_CLAIM)
            since = now - RATE_WINDOW
            per_handle = await session.scalar(
                select(func.count()).where(
                    LinkChallenge.claimed == str(claimed),
                    LinkChallenge.created_at >= since,
                    LinkChallenge.request_inbox_id != turn.inbox_id,
                )
            )
            per_customer = await session.scalar(
                select(func.count()).where(
                    LinkChallenge.customer_id == turn.customer_id,
                    LinkChallenge.created_at >= since,
                    LinkChallenge.request_inbox_id != turn.inbox_id,
                )
            )
            if (per_handle or 0) >= MAX_REQUESTS_PER_CLAIMED_HANDLE or (
                per_customer or 0
            ) >= MAX_REQUESTS_PER_CUSTOMER:
                log.info("inbox %s: link request refused, rate limited", turn.inbox_id)
                return Handled(
                    reply="There have been too many link requests; please try again in an hour.",
                    stored_text=STORED_CLAIM,
                )
            await session.execute(
                update(LinkChallenge)
                .where(
                    LinkChallenge.requester == str(turn.sender),
                    LinkChallenge.status == "pending",
                    LinkChallenge.request_inbox_id != turn.inbox_id,
                )
                .values(status="superseded", finished_at=now)
            )
            code, salt = new_code(), secrets.token_hex(16)
            challenge = await session.scalar(
                select(LinkChallenge).where(LinkChallenge.request_inbox_id == turn.inbox_id)
            )
            if challenge is None:  # a re-run of the same message replaces its code
                challenge = LinkChallenge(request_inbox_id=turn.inbox_id)
                session.add(challenge)
            challenge.customer_id = turn.customer_id
            challenge.requester = str(turn.sender)
            challenge.claimed = str(claimed)
            challenge.code_hash = hash_code(code, salt)
            challenge.salt = salt
            challenge.status = "pending"
            challenge.attempts = 0
            challenge.created_at = now
            challenge.expires_at = now + CODE_TTL
            await session.flush()
            challenge_id = challenge.id
        log.info("inbox %s: link challenge %s sent over %s", turn.inbox_id, challenge_id, claimed.channel)
        minutes = int(CODE_TTL.total_seconds() // 60)
        notice = Notice(
            recipient=claimed,
            text=f"Your verification code is {code}. Someone asked to link this address to their "
            f"{turn.channel} conversation with our support; the code expires in {minutes} minutes. "
            "If that was not you, ignore this message.",
            idempotency_key=f"link-code:{challenge_id}:{turn.inbox_id}",
        )
        return Handled(
            reply=f"I've sent a {CODE_DIGITS}-digit code to {mask(claimed)}. Reply here with the code "
            f"within {minutes} minutes to link it.",
            stored_text=STORED_CLAIM,
            notices=(notice,),
        )

    # ----- the code comes back ---------------------------------------------------------------------

    async def _code(self, turn: IncomingTurn) -> Handled | None:
        match = _code_in(turn.text)
        assert match is not None
        code = match["code"] + match["rest"]
        now = self._clock()
        async with self._db.session() as session:
            challenge = await session.scalar(
                select(LinkChallenge)
                .where(
                    LinkChallenge.requester == str(turn.sender),
                    LinkChallenge.created_at >= now - RATE_WINDOW,
                    LinkChallenge.status.in_(("pending", "locked", "expired")),
                )
                .order_by(LinkChallenge.id.desc())
                .limit(1)
            )
            if challenge is None:
                return None  # six digits with no request behind them: an order number, say
            if challenge.status == "locked":
                return Handled(reply=_LOCKED, stored_text=STORED_CODE)
            if challenge.status == "expired" or challenge.expires_at <= now:
                challenge.status, challenge.finished_at = "expired", challenge.finished_at or now
                return Handled(
                    reply="That code has expired. Send /link again to get a new one.", stored_text=STORED_CODE
                )
            if not hmac.compare_digest(challenge.code_hash, hash_code(code, challenge.salt)):
                challenge.attempts += 1
                log.info(
                    "link challenge %s: wrong code (%d of %d)", challenge.id, challenge.attempts, MAX_TRIES
                )
                if challenge.attempts >= MAX_TRIES:
                    challenge.status, challenge.finished_at = "locked", now
                    return Handled(reply=_LOCKED, stored_text=STORED_CODE)
                left = MAX_TRIES - challenge.attempts
                return Handled(
                    reply=f"That code is not right; {left} {'try' if left == 1 else 'tries'} left.",
                    stored_text=STORED_CODE,
                )
            challenge.status, challenge.finished_at = "verified", now
            challenge_id, claimed = challenge.id, Address.parse(challenge.claimed)
        reason = f"proved ownership with a one-time code (link challenge {challenge_id})"
        linked = await self._attach(turn, claimed, Assurance.VERIFIED, method="code", reason=reason)
        log.info("link challenge %s verified", challenge_id)
        reply = (
            f"Done: {mask(claimed)} is now linked to this conversation."
            if linked
            else "The code is right, but I couldn't link the addresses myself; our team will do it."
        )
        return Handled(reply=reply, stored_text=STORED_CODE)

    # ----- attested by the platform ----------------------------------------------------------------

    async def _contact(self, turn: IncomingTurn, contact: SharedContact) -> Handled | None:
        """A Telegram contact: linked without a code only when it is the sender's own.

        Telegram gives the number in international form, with or without the ``+``: it is never read in
        the default region (``5016001234`` is +501 6001234, not +1 501-600-1234). A number that already
        belongs to another customer is not merged on Telegram's word: it becomes a merge suggestion for
        an admin (``identity.directory``), and the sender is told so.
        """
        if not contact.is_senders_own or not contact.phone:
            return None
        try:
            phone = Address(channel="sms", handle=international_phone(contact.phone))
        except InvalidAddress:
            return None
        async with self._db.session() as session:
            holder = await session.scalar(select(Identity.customer_id).where(Identity.address == str(phone)))
            own = await session.scalar(
                select(Identity.customer_id).where(Identity.address == str(turn.sender))
            )
            own = own or turn.customer_id
            if holder is not None and holder != own:
                await self._suggest(session, turn, own, phone)
                log.info(
                    "inbox %s: a shared contact held by another customer left as a suggestion", turn.inbox_id
                )
                return Handled(
                    reply="Thanks. That number is already on file with us, so our team will check it "
                    "before linking it to this chat.",
                    stored_text=STORED_CONTACT,
                )
        linked = await self._attach(
            turn,
            phone,
            Assurance.PLATFORM_ATTESTED,
            method="telegram_contact",
            reason="Telegram attested the sender's own phone number (shared contact)",
        )
        reply = (
            "Thanks, your phone number is now linked to this chat."
            if linked
            else "Thanks. I couldn't link your phone number myself; our team will look at it."
        )
        return Handled(reply=reply, stored_text=STORED_CONTACT)

    async def _suggest(self, session: AsyncSession, turn: IncomingTurn, own: str, phone: Address) -> None:
        """Record the attested claim (no code, never verifiable by one) for ``merge_suggestions``."""
        existing = await session.scalar(
            select(LinkChallenge).where(LinkChallenge.request_inbox_id == turn.inbox_id)
        )
        if existing is not None:
            return
        now = self._clock()
        session.add(
            LinkChallenge(
                request_inbox_id=turn.inbox_id,
                customer_id=own,
                requester=str(turn.sender),
                claimed=str(phone),
                code_hash="",
                salt="",
                status=ATTESTED_CLAIM,
                attempts=0,
                created_at=now,
                expires_at=now,
                finished_at=now,
            )
        )

    async def _platform_attested(self, turn: IncomingTurn) -> None:
        """Link what the sender's platform vouches for (once per sender and process); never answers."""
        attestor = self._attestors.get(turn.sender.channel)
        key = str(turn.sender)
        if attestor is None or key in self._attested:
            return
        self._attested.add(key)
        for handle in await attestor.attested_handles(turn.sender):
            linked = await self._attach(
                turn,
                handle,
                Assurance.PLATFORM_ATTESTED,
                method=f"{turn.sender.channel}_profile",
                reason=f"the trusted {turn.sender.channel} workspace vouches for this {handle.channel}",
            )
            log.info(
                "inbox %s: a %s handle attested by %s (%s)",
                turn.inbox_id,
                handle.channel,
                turn.sender.channel,
                "linked" if linked else "not linked",
            )

    # ----- helpers -----------------------------------------------------------------------------------

    async def _attach(
        self, turn: IncomingTurn, claimed: Address, assurance: Assurance, *, method: str, reason: str
    ) -> bool:
        """Make ``claimed`` and the sender one customer; the claimed handle at ``assurance`` at least."""
        actor = "customer:self-service"
        try:
            async with self._db.session() as session:
                rows = {
                    row.address: (row.customer_id, Assurance(row.assurance))
                    for row in await session.scalars(
                        select(Identity).where(Identity.address.in_([str(turn.sender), str(claimed)]))
                    )
                }
            own = rows[str(turn.sender)][0] if str(turn.sender) in rows else turn.customer_id
            held_by, held_at = rows.get(str(claimed), (None, None))
            if held_by is not None and held_by != own:
                await self._links.merge(own, held_by, actor=actor, reason=reason)
                own = held_by
            if held_at is None or RANK[held_at] < RANK[assurance]:
                await self._links.link(
                    claimed, own, actor=actor, reason=reason, assurance=assurance, method=method
                )
        except IdentityError as exc:
            log.warning("inbox %s: self-service link failed: %s", turn.inbox_id, type(exc).__name__)
            return False
        return True

    async def _vouched_for(self, turn: IncomingTurn) -> bool:
        if not turn.authenticated:  # the channel does not vouch for this message (a bare From:, the console)
            return False
        async with self._db.session() as session:
            assurance = await session.scalar(
                select(Identity.assurance).where(Identity.address == str(turn.sender))
            )
        return assurance is not None and assurance != Assurance.UNVERIFIED.value

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


_LOCKED = "Too many wrong codes: this link request is locked. Send /link again in an hour."


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
