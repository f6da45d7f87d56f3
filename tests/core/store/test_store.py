"""The store on SQLite and PostgreSQL: migrations, the inbox's unique key, identities, UTC times."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta, timezone

from sqlalchemy import func, inspect, select

from core.messages import Address, Assurance, InboundMessage
from core.pipeline.inbox import Inbox
from core.store.db import Database, migrate
from core.store.models import Customer, Identity, InboxRow
from identity.resolver import DatabaseResolver


def _message(provider_id: str, text: str = "hello", handle: str = "42") -> InboundMessage:
    return InboundMessage(
        channel="telegram",
        provider_message_id=provider_id,
        sender=Address(channel="telegram", handle=handle),
        text=text,
        reply_target={"chat_id": 42},
        sender_assurance=Assurance.PLATFORM_ATTESTED,
        private=True,
    )


async def test_migrations_create_every_table_and_are_idempotent(database_url: str) -> None:
    db = await Database.open(database_url)
    try:
        await migrate(db.engine)  # a second run is a no-op
        async with db.engine.connect() as conn:
            tables = set(await conn.run_sync(lambda c: inspect(c).get_table_names()))
        assert {
            "customers",
            "identities",
            "inbox",
            "outbox",
            "turns",
            "memory_jobs",
            "identity_ledger",
            "link_challenges",
            "memory_moves",
            "alembic_version",
        } <= tables
    finally:
        await db.aclose()


async def test_migrations_match_the_models(database_url: str) -> None:
    """Alembic's autogenerate finds nothing to add: the migrations build exactly what models.py says."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from core.store.models import Base

    db = await Database.open(database_url)
    try:
        async with db.engine.connect() as conn:
            diff = await conn.run_sync(
                lambda c: compare_metadata(
                    MigrationContext.configure(c, opts={"compare_type": True}), Base.metadata
                )
            )
        assert diff == []
    finally:
        await db.aclose()


async def test_inbox_commits_once_per_provider_id(database_url: str) -> None:
    db = await Database.open(database_url)
    woken: list[int] = []
    inbox = Inbox(db, on_accept=lambda: woken.append(1))
    try:
        first = await inbox.accept(_message("update-1", "my router keeps dropping"))
        again = await inbox.accept(_message("update-1", "my router keeps dropping"))
        other = await inbox.accept(_message("update-2"))
        assert not first.duplicate and again.duplicate and not other.duplicate
        assert again.inbox_id == first.inbox_id
        assert len(woken) == 2  # a duplicate does not wake the worker
        async with db.session() as session:
            rows = list(await session.scalars(select(InboxRow).order_by(InboxRow.id)))
        assert [r.provider_message_id for r in rows] == ["update-1", "update-2"]
        assert rows[0].reply_target == {"chat_id": 42}
        assert rows[0].sender == "telegram:42"
        assert rows[0].status == "pending"
    finally:
        await db.aclose()


async def test_same_provider_id_on_another_channel_is_another_message(database_url: str) -> None:
    db = await Database.open(database_url)
    inbox = Inbox(db)
    try:
        a = await inbox.accept(_message("1"))
        b = await inbox.accept(
            InboundMessage(
                channel="sms",
                provider_message_id="1",
                sender=Address(channel="sms", handle="+15551230000"),
                text="x",
                sender_assurance=Assurance.PLATFORM_ATTESTED,
                private=True,
            )
        )
        assert not a.duplicate and not b.duplicate and a.inbox_id != b.inbox_id
    finally:
        await db.aclose()


async def test_concurrent_duplicates_store_one_row(database_url: str) -> None:
    db = await Database.open(database_url)
    inbox = Inbox(db)
    try:
        results = await asyncio.gather(*(inbox.accept(_message("burst-1")) for _ in range(8)))
        assert sum(not r.duplicate for r in results) == 1
        assert len({r.inbox_id for r in results}) == 1
        async with db.session() as session:
            assert await session.scalar(select(func.count()).select_from(InboxRow)) == 1
    finally:
        await db.aclose()


async def test_times_come_back_as_utc(database_url: str) -> None:
    db = await Database.open(database_url)
    inbox = Inbox(db)
    try:
        sent = datetime(2026, 11, 20, 9, 30, tzinfo=timezone(timedelta(hours=2)))
        accepted = await inbox.accept(
            InboundMessage(
                channel="telegram",
                provider_message_id="tz",
                sender=Address(channel="telegram", handle="42"),
                text="x",
                received_at=sent,
                sender_assurance=Assurance.PLATFORM_ATTESTED,
                private=True,
            )
        )
        async with db.session() as session:
            row = await session.get(InboxRow, accepted.inbox_id)
        assert row is not None
        assert row.received_at == sent
        assert row.received_at.tzinfo is not None and row.received_at.utcoffset() == UTC.utcoffset(None)
    finally:
        await db.aclose()


async def test_resolver_creates_one_customer_per_new_address(database_url: str) -> None:
    db = await Database.open(database_url)
    resolver = DatabaseResolver(db)
    try:
        tg = Address(channel="telegram", handle="42")
        # the handle starts at the channel's word on the message (InboundMessage.sender_assurance)
        first = await resolver.resolve(tg, assurance=Assurance.PLATFORM_ATTESTED)
        again = await resolver.resolve(tg)
        other = await resolver.resolve(Address(channel="telegram", handle="43"))
        mail = await resolver.resolve(
            Address(channel="email", handle="ana@example.com"), assurance=Assurance.UNVERIFIED
        )
        assert first.created and not again.created
        assert first.customer_id == again.customer_id != other.customer_id
        assert first.assurance is Assurance.PLATFORM_ATTESTED
        assert mail.assurance is Assurance.UNVERIFIED  # a From: header is only a claim
        # no word at all (a row stored before messages carried one): unverified, whatever the channel
        assert other.assurance is Assurance.UNVERIFIED
        assert await resolver.lookup(Address(channel="telegram", handle="44")) is None
        assert [str(a) for a in await resolver.addresses_of(first.customer_id)] == ["telegram:42"]
    finally:
        await db.aclose()


async def test_concurrent_first_contact_makes_one_customer(database_url: str) -> None:
    db = await Database.open(database_url)
    resolver = DatabaseResolver(db)
    try:
        address = Address(channel="sms", handle="+15551230000")
        found = await asyncio.gather(*(resolver.resolve(address) for _ in range(6)))
        assert len({r.customer_id for r in found}) == 1
        async with db.session() as session:
            assert await session.scalar(select(func.count()).select_from(Identity)) == 1
            assert await session.scalar(select(func.count()).select_from(Customer)) == 1
    finally:
        await db.aclose()
