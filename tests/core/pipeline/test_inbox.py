"""The inbox's group commit: many webhooks at once share transactions, and each still gets its own
answer: a new row in arrival order, the id of the first copy for a repeat, or its own error."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import func, select

from core.messages import Address, Assurance, InboundMessage
from core.pipeline.inbox import Accepted, Inbox
from core.store.db import Database
from core.store.models import InboxRow


def sms(sid: str, *, extras: dict[str, object] | None = None) -> InboundMessage:
    return InboundMessage(
        channel="sms",
        provider_message_id=sid,
        sender=Address(channel="sms", handle="+15551230000"),
        text=f"message {sid}",
        extras=extras or {},
        sender_assurance=Assurance.PLATFORM_ATTESTED,
        private=True,
    )


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    database = await Database.open(database_url)
    try:
        yield database
    finally:
        await database.aclose()


async def rows(db: Database) -> list[tuple[int, str]]:
    async with db.read() as session:
        found = await session.execute(select(InboxRow.id, InboxRow.provider_message_id).order_by(InboxRow.id))
        return [(int(i), str(p)) for i, p in found]


async def test_concurrent_accepts_share_commits_keep_arrival_order_and_spot_repeats(db: Database) -> None:
    woken: list[int] = []
    inbox = Inbox(db, on_accept=lambda: woken.append(1))
    first = await inbox.accept(sms("SM-old"))  # held before the burst
    sids = [f"SM{i:03d}" for i in range(60)]
    burst = [sms(s) for s in sids] + [sms("SM005"), sms("SM-old"), sms("SM059")]  # three repeats
    results: list[Accepted] = await asyncio.gather(*(inbox.accept(m) for m in burst))

    stored = await rows(db)
    assert [p for _, p in stored] == ["SM-old", *sids]  # one row each, ids in arrival order
    ids = dict((p, i) for i, p in stored)
    assert [r.inbox_id for r in results[:60]] == [ids[s] for s in sids]
    assert not any(r.duplicate for r in results[:60])
    assert results[60:] == [
        Accepted(inbox_id=ids["SM005"], duplicate=True),
        Accepted(inbox_id=first.inbox_id, duplicate=True),
        Accepted(inbox_id=ids["SM059"], duplicate=True),
    ]
    assert 2 <= len(woken) < 61  # the worker is woken per commit, not per message


async def test_one_bad_message_fails_alone(db: Database) -> None:
    inbox = Inbox(db)
    unstorable = sms("SM-bad", extras={"not json": object()})
    outcomes = await asyncio.gather(
        inbox.accept(sms("SM1")), inbox.accept(unstorable), inbox.accept(sms("SM2")), return_exceptions=True
    )
    assert isinstance(outcomes[1], Exception)
    assert isinstance(outcomes[0], Accepted) and isinstance(outcomes[2], Accepted)
    assert [p for _, p in await rows(db)] == ["SM1", "SM2"]
    async with db.read() as session:
        assert await session.scalar(select(func.count()).select_from(InboxRow)) == 2
