"""Merge suggestions: handles that look like one person split over two live customers.

``merge_suggestions`` finds (a) one Gmail mailbox written two ways (``a.na+x@gmail.com`` ~
``ana@googlemail.com``), and (b, c) a phone or an email address that one customer holds and another
claimed in a link challenge that never completed (``identity.challenges``), or in a Telegram contact
attested by the platform but held by another customer (``identity.attestation``). They are hints for a
human, never merged automatically; nothing here changes anything.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import select

from core.messages import Address
from core.store.db import Database
from core.store.models import Customer, Identity, LinkChallenge
from identity.directory import parse_query
from identity.normalize import EMAIL_CHANNEL, is_email, is_phone

# Link challenges that never completed: the claim is still a hint that the two handles are one person.
# "attested": a Telegram contact attested by the platform but held by another customer (identity.attestation)
OPEN_CLAIM_STATUSES = ("pending", "expired", "locked", "attested")
_GMAIL_DOMAINS = frozenset({"gmail.com", "googlemail.com"})

SuggestionKind = Literal["gmail_variant", "claimed_phone", "claimed_email"]


@dataclass(frozen=True, slots=True, kw_only=True, order=True)
class MergeSuggestion:
    """Two live customers that may be one person: ``address_a`` is a handle of ``customer_a``,
    ``address_b`` one of ``customer_b`` (for a claim: the handle that made it); ``reason`` says why."""

    kind: SuggestionKind
    customer_a: str
    address_a: str
    customer_b: str
    address_b: str
    reason: str


def gmail_mailbox(address: str) -> str | None:
    """The mailbox Gmail delivers ``email:...`` to (dots and ``+tag`` dropped), or None if not Gmail."""
    channel, _, handle = address.partition(":")
    local, at, domain = handle.rpartition("@")
    if channel != EMAIL_CHANNEL or not at or domain.lower() not in _GMAIL_DOMAINS:
        return None
    mailbox = local.split("+", 1)[0].replace(".", "").lower()
    return f"{mailbox}@gmail.com" if mailbox else None


async def merge_suggestions(db: Database, *, default_region: str = "US") -> list[MergeSuggestion]:
    """Handles that look like one person on two live customers, sorted; never acted on here.

    (a) one Gmail mailbox written two ways (``a.na+x@gmail.com`` ~ ``ana@googlemail.com``);
    (b) a phone that is an ``sms:`` handle of one customer and claimed by another in a link challenge
    that never completed (pending, expired or locked); (c) the same for an email address.
    """
    async with db.session() as session:
        live = set(await session.scalars(select(Customer.id).where(Customer.merged_into.is_(None))))
        emails = list(
            await session.execute(
                select(Identity.address, Identity.customer_id).where(Identity.channel == EMAIL_CHANNEL)
            )
        )
        claims = list(
            await session.scalars(
                select(LinkChallenge)
                .where(LinkChallenge.status.in_(OPEN_CLAIM_STATUSES))
                .order_by(LinkChallenge.id)
            )
        )
        claimed = {c.id: parse_query(c.claimed, default_region=default_region) for c in claims}
        wanted = {str(a) for a in claimed.values() if a is not None and (is_phone(a) or is_email(a))}
        holders: dict[str, str] = {}
        if wanted:
            rows = await session.execute(
                select(Identity.address, Identity.customer_id).where(Identity.address.in_(sorted(wanted)))
            )
            holders = {address: customer for address, customer in rows}
    found: dict[tuple[str, ...], MergeSuggestion] = {}
    gmail = _gmail_variants((a, c) for a, c in emails if c in live)
    for suggestion in (*gmail, *_claims_of_held_handles(claims, claimed, holders, live)):
        found.setdefault(_pair(suggestion), suggestion)  # the oldest open claim of a pair speaks for it
    return sorted(found.values())


def _claims_of_held_handles(
    claims: Iterable[LinkChallenge],
    claimed: dict[int, Address | None],
    holders: dict[str, str],
    live: set[str],
) -> Iterable[MergeSuggestion]:
    """A suggestion per open claim of a phone or email that another live customer holds."""
    for claim in claims:
        address = claimed[claim.id]
        holder = holders.get(str(address)) if address is not None else None
        if address is None or holder is None or holder == claim.customer_id:
            continue
        if holder not in live or claim.customer_id not in live:
            continue
        yield MergeSuggestion(
            kind="claimed_phone" if is_phone(address) else "claimed_email",
            customer_a=holder,
            address_a=str(address),
            customer_b=claim.customer_id,
            address_b=claim.requester,
            reason=(
                f"{address} is a handle of {holder}, and {claim.customer_id} claimed it from "
                f"{claim.requester} (link challenge {claim.id}, {claim.status})"
            ),
        )


def _pair(s: MergeSuggestion) -> tuple[str, ...]:
    return (s.kind, s.customer_a, s.address_a, s.customer_b, s.address_b)


def _gmail_variants(emails: Iterable[tuple[str, str]]) -> Iterable[MergeSuggestion]:
    by_mailbox: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for address, customer in emails:
        mailbox = gmail_mailbox(address)
        if mailbox is not None:
            by_mailbox[mailbox].append((address, customer))
    for mailbox, held in by_mailbox.items():
        held.sort()
        for i, (address_a, customer_a) in enumerate(held):
            for address_b, customer_b in held[i + 1 :]:
                if customer_a == customer_b:
                    continue
                yield MergeSuggestion(
                    kind="gmail_variant",
                    customer_a=customer_a,
                    address_a=address_a,
                    customer_b=customer_b,
                    address_b=address_b,
                    reason=f"{address_a} and {address_b} are one Gmail mailbox ({mailbox}): "
                    "Gmail ignores dots and +tags, and googlemail.com is gmail.com",
                )
