"""The admin's read side, on SQLite and PostgreSQL: search by any spelling of a handle, merge suggestions."""

from __future__ import annotations

import builtins
from collections.abc import AsyncIterator, Collection
from datetime import timedelta

import pytest

from core.messages import Address, ChatMessage, MemoryRecord, Provenance
from core.store.db import Database
from core.store.models import LinkChallenge, utcnow
from identity.directory import ledger_entries, list_customers
from identity.linking import IdentityLinks
from identity.resolver import DatabaseResolver
from identity.suggestions import gmail_mailbox, merge_suggestions

SMS = "sms:+15551230000"


class NoMemory:
    """A memory store with nothing in it: these tests are about our own tables."""

    async def recall(self, customer_id: str, query: str, *, limit: int) -> list[MemoryRecord]:
        return []

    async def remember(
        self, customer_id: str, messages: list[ChatMessage], *, provenance: Provenance, infer: bool
    ) -> list[str]:
        return []

    async def list(self, customer_id: str) -> list[MemoryRecord]:
        return []

    async def covers_turns(self, customer_id: str, turn_ids: builtins.list[int]) -> bool:
        return False

    async def forget(self, customer_id: str) -> int:
        return 0

    async def move(
        self, from_customer: str, to_customer: str, *, handles: Collection[str] | None = None
    ) -> builtins.list[str]:
        return []

    async def aclose(self) -> None:
        return None


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    database = await Database.open(database_url)
    try:
        yield database
    finally:
        await database.aclose()


async def new_customer(db: Database, address: str) -> str:
    return (await DatabaseResolver(db).resolve(Address.parse(address))).customer_id


async def claim(db: Database, customer_id: str, requester: str, claimed: str, status: str) -> None:
    async with db.session() as session:
        session.add(
            LinkChallenge(
                customer_id=customer_id,
                requester=requester,
                claimed=claimed,
                code_hash="0" * 64,
                salt="0" * 32,
                status=status,
                expires_at=utcnow() + timedelta(minutes=10),
            )
        )


async def found(db: Database, search: str | None, **kwargs: bool) -> list[tuple[str, tuple[str, ...]]]:
    page = await list_customers(db, search=search, **kwargs)
    assert page.total == len(page.customers)
    return [(c.id, c.addresses) for c in page.customers]


async def test_search_finds_a_handle_in_any_spelling_and_by_a_piece_of_it(db: Database) -> None:
    ana = await new_customer(db, SMS)
    bea = await new_customer(db, "email:ana@googlemail.com")
    tg = await new_customer(db, "telegram:42")
    await new_customer(db, "telegram:421")

    for spelling in ("(555) 123-0000", "555.123.0000", "+1 555 123 0000", "sms:1-555-123-0000", SMS):
        assert await found(db, spelling) == [(ana, (SMS,))], spelling
    assert await found(db, "1230000") == [(ana, (SMS,))]  # a piece of the number
    assert await found(db, "GoogleMail") == [(bea, ("email:ana@googlemail.com",))]
    assert await found(db, "ANA@GOOGLEMAIL.COM") == [(bea, ("email:ana@googlemail.com",))]
    assert await found(db, "telegram:042") == [(tg, ("telegram:42",))]  # normalised: not telegram:421
    assert await found(db, tg) == [(tg, ("telegram:42",))]  # a customer id
    assert await found(db, "100%_") == []  # LIKE wildcards are literal
    assert await found(db, "(555) 999-0000") == []


async def test_listing_is_newest_first_paged_and_leaves_merged_customers_out_unless_asked(
    db: Database,
) -> None:
    first = await new_customer(db, SMS)
    second = await new_customer(db, "telegram:42")
    third = await new_customer(db, "slack:T01:U01")
    assert [c for c, _ in await found(db, None)] == [third, second, first]
    page = await list_customers(db, limit=1, offset=1)
    assert (page.total, [c.id for c in page.customers]) == (3, [second])

    await IdentityLinks(db, NoMemory()).merge(first, second, actor="admin:test")

    assert await found(db, None) == [(third, ("slack:T01:U01",)), (second, (SMS, "telegram:42"))]
    everyone = await list_customers(db, include_merged=True)
    assert [(c.id, c.merged_into, c.addresses) for c in everyone.customers] == [
        (third, None, ("slack:T01:U01",)),
        (second, None, (SMS, "telegram:42")),
        (first, second, ()),
    ]
    assert await found(db, "(555) 123-0000") == [(second, (SMS, "telegram:42"))]


def test_gmail_mailbox_ignores_dots_tags_and_googlemail() -> None:
    assert gmail_mailbox("email:a.na+x@gmail.com") == "ana@gmail.com"
    assert gmail_mailbox("email:ana@googlemail.com") == "ana@gmail.com"
    assert gmail_mailbox("email:a.na@example.com") is None
    assert gmail_mailbox("sms:+15551230000") is None
    assert gmail_mailbox("email:+x@gmail.com") is None


async def test_merge_suggestions_name_both_customers_the_addresses_and_why(db: Database) -> None:
    links = IdentityLinks(db, NoMemory())
    dotted = await new_customer(db, "email:a.na+x@gmail.com")
    await links.link(Address.parse("email:an.a@gmail.com"), dotted, actor="admin:test")  # same customer
    plain = await new_customer(db, "email:ana@googlemail.com")
    await new_customer(db, "email:a.na@example.com")  # not Gmail: dots matter there
    await new_customer(db, "email:ana@example.com")
    phone = await new_customer(db, SMS)
    claimant = await new_customer(db, "telegram:42")
    await claim(db, claimant, "telegram:42", SMS, "expired")
    await claim(db, claimant, "telegram:42", SMS, "locked")  # the same pair: one suggestion
    await claim(db, phone, SMS, SMS, "pending")  # its own handle: nothing to suggest
    spelled = await new_customer(db, "slack:T01:U01")
    await claim(db, spelled, "slack:T01:U01", "sms:+1 (555) 123-0000", "pending")
    verified = await new_customer(db, "telegram:43")
    await claim(db, verified, "telegram:43", SMS, "verified")  # completed: no longer a hint
    await claim(db, verified, "telegram:43", SMS, "superseded")
    mailbox = await new_customer(db, "email:bea@example.com")
    asker = await new_customer(db, "telegram:44")
    await claim(db, asker, "telegram:44", "email:bea@example.com", "locked")
    await claim(db, asker, "telegram:44", "email:nobody@example.com", "pending")  # nobody has it

    suggestions = await merge_suggestions(db)

    assert [(s.kind, s.customer_a, s.address_a, s.customer_b, s.address_b) for s in suggestions] == sorted(
        [
            ("claimed_email", mailbox, "email:bea@example.com", asker, "telegram:44"),
            ("claimed_phone", phone, SMS, claimant, "telegram:42"),
            ("claimed_phone", phone, SMS, spelled, "slack:T01:U01"),
            ("gmail_variant", dotted, "email:a.na+x@gmail.com", plain, "email:ana@googlemail.com"),
            ("gmail_variant", dotted, "email:an.a@gmail.com", plain, "email:ana@googlemail.com"),
        ]
    )
    by_kind = {s.kind: s.reason for s in suggestions}
    assert "one Gmail mailbox (ana@gmail.com)" in by_kind["gmail_variant"]
    [by_phone] = [s for s in suggestions if s.customer_b == claimant]
    assert f"{SMS} is a handle of {phone}, and {claimant} claimed it from telegram:42" in by_phone.reason
    assert "expired" in by_phone.reason  # the oldest open claim of the pair

    # suggestions are hints only: nothing was merged, and a merge makes the Gmail ones go away
    assert (await list_customers(db)).total == 10
    await links.merge(plain, dotted, actor="admin:test")
    assert [s.kind for s in await merge_suggestions(db)] == [
        "claimed_email",
        "claimed_phone",
        "claimed_phone",
    ]


async def test_the_ledger_of_an_address_includes_the_merges_that_moved_it(db: Database) -> None:
    links = IdentityLinks(db, NoMemory())
    source = await new_customer(db, SMS)
    target = await new_customer(db, "telegram:42")
    merged = await links.merge(source, target, actor="admin:test", reason="one person")

    entries = await ledger_entries(db, address=Address.parse(SMS))
    assert [(e.kind, e.customer_id, e.from_customer_id) for e in entries] == [
        ("create", source, None),
        ("merge", target, source),
    ]
    assert entries[-1].id == merged.event_id
    about_target = await ledger_entries(db, customer_id=target)
    assert [(e.kind, e.address) for e in about_target] == [("create", "telegram:42"), ("merge", None)]
    assert [e.kind for e in await ledger_entries(db, customer_id=target, limit=1)] == ["merge"]
