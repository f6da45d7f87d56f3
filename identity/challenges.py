"""Link challenges: a one-time code sent to a claimed handle, and checked when it comes back.

``LinkChallenges.claim`` answers a claim the interceptor (``identity.proof``) has read: only a sender
that is vouched for may claim (a platform-attested handle, an email with DMARC pass), the code goes to
the claimed handle over its own channel (email to the address, SMS to the number, a Telegram message to
the chat) as a ``Notice``, and a ``link_challenges`` row keeps its salted hash (``identity.codes``).
``LinkChallenges.check`` compares a code sent back on the first channel in constant time; five wrong
tries lock the request, ten minutes expire it, and a right one joins the two handles (``identity.attach``:
the claimed handle is ``verified``).

A message handled here is stored as a placeholder (``STORED_CLAIM``, ``STORED_CODE``), never as its text.
"""

from __future__ import annotations

import hmac
import logging
import secrets
from collections.abc import Callable, Collection
from datetime import datetime

from sqlalchemy import func, select, update

from core.errors import ClaimLost
from core.messages import Address, Assurance, Handled, IncomingTurn, Notice
from core.store.db import Database
from core.store.models import Identity, LinkChallenge
from identity.attach import attach
from identity.codes import (
    CODE_DIGITS,
    CODE_TTL,
    MAX_REQUESTS_PER_CLAIMED_HANDLE,
    MAX_REQUESTS_PER_CUSTOMER,
    MAX_TRIES,
    RATE_WINDOW,
    hash_code,
    new_code,
)
from identity.linking import IdentityLinks
from identity.normalize import is_email, is_phone

log = logging.getLogger(__name__)

# what the inbox keeps instead of the message text
STORED_CLAIM = "[link request]"
STORED_CODE = "[verification code]"

_LOCKED = "Too many wrong codes: this link request is locked. Send /link again in an hour."


def mask(address: Address) -> str:
    """Enough of a handle for its owner to recognise it, not enough to read it off a screen."""
    handle = address.handle
    if is_email(address):
        local, _, domain = handle.partition("@")
        return f"{local[:1]}***@{domain}"
    if is_phone(address):
        return f"the number ending in {handle[-4:]}"
    return f"that {address.channel} account"


class LinkChallenges:
    """Codes for claimed handles: sent on a claim, checked when they come back (as described above)."""

    def __init__(
        self,
        db: Database,
        links: IdentityLinks,
        *,
        deliverable: Collection[str],
        clock: Callable[[], datetime],
    ) -> None:
        self._db = db
        self._links = links
        self._deliverable = frozenset(deliverable)
        self._clock = clock

    # ----- a claim: send a code to the claimed handle ----------------------------------------------

    async def claim(self, turn: IncomingTurn, claimed: Address) -> Handled:
        """The answer to ``turn`` claiming ``claimed``: a code on its way, or why not."""
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
        if claimed.channel not in self._deliverable:  # a code goes out on the claimed handle's own channel
            return Handled(
                reply=f"I can't send a code to {mask(claimed)} from here, so I can't link it myself. "
                "Our team can link it for you.",
                stored_text=STORED_CLAIM,
            )
        now = self._clock()
        async with self._db.session() as session:
            if turn.fence is not None and not await turn.fence(session):
                # another process took this message over (this one stalled past its lease): its code
                # stands, and this one must not replace it
                raise ClaimLost(f"inbox {turn.inbox_id} was taken over; no code written")
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

    async def check(self, turn: IncomingTurn, code: str) -> Handled | None:
        """The answer to ``code`` sent back by ``turn``'s sender; None when no recent request is theirs."""
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
        linked = await attach(
            self._db, self._links, turn, claimed, Assurance.VERIFIED, method="code", reason=reason
        )
        log.info("link challenge %s verified", challenge_id)
        reply = (
            f"Done: {mask(claimed)} is now linked to this conversation."
            if linked
            else "The code is right, but I couldn't link the addresses myself; our team will do it."
        )
        return Handled(reply=reply, stored_text=STORED_CODE)

    async def _vouched_for(self, turn: IncomingTurn) -> bool:
        if not turn.authenticated:  # the channel does not vouch for this message (a bare From:, the console)
            return False
        async with self._db.session() as session:
            assurance = await session.scalar(
                select(Identity.assurance).where(Identity.address == str(turn.sender))
            )
        return assurance is not None and assurance != Assurance.UNVERIFIED.value
