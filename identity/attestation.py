"""Links a platform vouches for: linked as ``platform_attested``, without a code.

- **A Telegram shared contact whose user id is the sender's own** (``PlatformAttestation.contact``):
  Telegram vouches that the number is the sender's. A number another customer already holds is not
  merged on Telegram's word: the claim is recorded as a link challenge with status ``ATTESTED_CLAIM``,
  which ``identity.suggestions`` shows an admin as a merge suggestion, and the sender is told so.
- **A channel that vouches for other handles** (``core.ports.Attestor``: the Slack profile email in a
  workspace configured as trusted, ``PlatformAttestation.link_vouched``): asked once per sender and
  process; what it vouches for is linked, and the message goes on to the agent.

The link itself is ``identity.attach``'s.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import InvalidAddress
from core.messages import Address, Assurance, Handled, IncomingTurn, SharedContact
from core.ports import Attestor
from core.store.db import Database
from core.store.models import Identity, LinkChallenge
from identity.attach import attach
from identity.linking import IdentityLinks
from identity.normalize import international_phone

log = logging.getLogger(__name__)

# what the inbox keeps instead of the message text
STORED_CONTACT = "[shared their own contact]"
# a link challenge row for a contact Telegram attested but that another customer holds: a suggestion only
ATTESTED_CLAIM = "attested"


class PlatformAttestation:
    """Shared contacts and ``Attestor`` channels, as described above."""

    def __init__(
        self,
        db: Database,
        links: IdentityLinks,
        *,
        attestors: Mapping[str, Attestor],
        clock: Callable[[], datetime],
    ) -> None:
        self._db = db
        self._links = links
        self._attestors = dict(attestors)
        self._attested: set[str] = set()  # senders already asked about in this process
        self._clock = clock

    async def contact(self, turn: IncomingTurn, contact: SharedContact) -> Handled | None:
        """A Telegram contact: linked without a code only when it is the sender's own.

        Telegram gives the number in international form, with or without the ``+``: it is never read in
        the default region (``5016001234`` is +501 6001234, not +1 501-600-1234). A number that already
        belongs to another customer is not merged on Telegram's word: it becomes a merge suggestion for
        an admin (``identity.suggestions``), and the sender is told so.
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
        linked = await attach(
            self._db,
            self._links,
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

    async def link_vouched(self, turn: IncomingTurn) -> None:
        """Link what the sender's platform vouches for (once per sender and process); never answers."""
        attestor = self._attestors.get(turn.sender.channel)
        key = str(turn.sender)
        if attestor is None or key in self._attested:
            return
        self._attested.add(key)
        for handle in await attestor.attested_handles(turn.sender):
            linked = await attach(
                self._db,
                self._links,
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
