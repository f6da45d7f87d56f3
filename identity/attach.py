"""Joining a proven handle to the sender's customer: the one write of self-service linking.

``attach`` is what a verified code (``identity.challenges``) and a platform's word
(``identity.attestation``) both end in: the claimed handle and the sender become one customer, through
``IdentityLinks`` (so the ledger records it, actor ``customer:self-service``, and messages and memories
move along). When another customer holds the claimed handle, the sender's customer is merged into it
(an admin can undo the merge); the handle is then raised to the given assurance, never lowered.
"""

from __future__ import annotations

import logging

from sqlalchemy import select

from core.errors import IdentityError
from core.messages import Address, Assurance, IncomingTurn
from core.store.db import Database
from core.store.models import Identity
from identity.linking import RANK, IdentityLinks

log = logging.getLogger(__name__)

ACTOR = "customer:self-service"


async def attach(
    db: Database,
    links: IdentityLinks,
    turn: IncomingTurn,
    claimed: Address,
    assurance: Assurance,
    *,
    method: str,
    reason: str,
) -> bool:
    """Make ``claimed`` and the sender one customer; the claimed handle at ``assurance`` at least.

    False (logged, nothing raised) when the identity layer refused the change.
    """
    try:
        async with db.session() as session:
            rows = {
                row.address: (row.customer_id, Assurance(row.assurance))
                for row in await session.scalars(
                    select(Identity).where(Identity.address.in_([str(turn.sender), str(claimed)]))
                )
            }
        own = rows[str(turn.sender)][0] if str(turn.sender) in rows else turn.customer_id
        held_by, held_at = rows.get(str(claimed), (None, None))
        if held_by is not None and held_by != own:
            await links.merge(own, held_by, actor=ACTOR, reason=reason)
            own = held_by
        if held_at is None or RANK[held_at] < RANK[assurance]:
            await links.link(claimed, own, actor=ACTOR, reason=reason, assurance=assurance, method=method)
    except IdentityError as exc:
        log.warning("inbox %s: self-service link failed: %s", turn.inbox_id, type(exc).__name__)
        return False
    return True
