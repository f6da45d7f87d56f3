"""LocalMemory on the PostgreSQL memory index, as the hosts of a scale setup run it: two ``LocalMemory``
objects with their own data dirs on one database see the same memories, forget and moves included; Mem0
keeps no history file on either host; the tables are made once however many processes open them at once.

Each test gets a fresh database on the local PostgreSQL (skipped with the reason where none answers, a
failure under ``CI=true``). Writes are offline (``infer=False``): no LLM.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from core.compose import build_memory
from core.memory import mem0_oss
from core.memory.local import LocalMemory
from core.memory.pg_connect import libpq_dsn
from core.memory.pg_index import PostgresIndex
from core.messages import ChatMessage, Provenance
from core.settings import LLMSettings, Settings
from tests.core.memory.helpers import files_containing, tables_holding

pytestmark = [pytest.mark.postgres, pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)]

USER = "cust-a"
OTHER = "cust-b"
SMS = "sms:+15551230000"
TELEGRAM = "telegram:42"


def said(text: str) -> list[ChatMessage]:
    return [ChatMessage(role="user", content=text)]


def origin(handle: str, *turn_ids: int) -> Provenance:
    return Provenance(
        channel=handle.split(":", 1)[0],
        handle=handle,
        message_ids=tuple(f"inbox:{t}" for t in turn_ids),
        category="support_history",
        turn_ids=turn_ids,
    )


@dataclass
class Hosts:
    """Two hosts of one scale setup: their own data dirs, one PostgreSQL."""

    one: LocalMemory
    two: LocalMemory
    url: str
    root: Path


def on_postgres(data_dir: Path, url: str) -> LocalMemory:
    return LocalMemory(data_dir=data_dir, llm=LLMSettings(), index=lambda: mem0_oss.postgres_index(url))


@pytest.fixture
async def hosts(database_url: str, tmp_path: Path) -> AsyncIterator[Hosts]:
    one = on_postgres(tmp_path / "host-1", database_url)
    two = on_postgres(tmp_path / "host-2", database_url)
    yield Hosts(one=one, two=two, url=database_url, root=tmp_path)
    await one.aclose()
    await two.aclose()


async def test_what_one_host_writes_the_other_recalls(hosts: Hosts) -> None:
    [memory_id] = await hosts.one.remember(
        USER, said("my router keeps dropping the wifi"), provenance=origin(SMS, 11), infer=False
    )
    found = await hosts.two.recall(USER, "internet connection problem", limit=5)
    assert [(r.id, r.text, r.handle, r.turn_ids) for r in found] == [
        (memory_id, "my router keeps dropping the wifi", SMS, (11,))
    ]
    assert [r.id for r in await hosts.two.list(USER)] == [memory_id]
    assert await hosts.two.covers_turns(USER, [11])
    assert await hosts.two.recall(OTHER, "router wifi", limit=5) == []


async def test_forget_on_one_host_leaves_nothing_for_the_other(hosts: Hosts) -> None:
    canary = "zqcanary7c1forgottenonhostone"
    await hosts.one.remember(USER, said(f"my code word is {canary}"), provenance=origin(SMS, 1), infer=False)
    await hosts.two.remember(USER, said("the router is in the attic"), provenance=origin(SMS, 2), infer=False)
    await hosts.two.remember(OTHER, said("someone else's router"), provenance=origin(SMS, 3), infer=False)
    assert len(await hosts.one.list(USER)) == 2 and tables_holding(hosts.url, canary)

    assert await hosts.one.forget(USER) == 2

    assert await hosts.two.list(USER) == []
    assert await hosts.two.recall(USER, f"code word {canary}", limit=5) == []
    assert not await hosts.two.covers_turns(USER, [1, 2])
    assert tables_holding(hosts.url, canary) == []
    assert files_containing(hosts.root, canary) == []  # nor in either host's data dir
    assert [r.text for r in await hosts.two.list(OTHER)] == ["someone else's router"]


async def test_retention_on_one_host_removes_for_every_host(hosts: Hosts) -> None:
    await hosts.one.remember(USER, said("zqretainedcanary old words"), provenance=origin(SMS, 1), infer=False)
    assert await hosts.two.forget_before(USER, datetime.now(UTC) + timedelta(minutes=1)) == 1
    assert await hosts.one.list(USER) == [] and tables_holding(hosts.url, "zqretainedcanary") == []


async def test_a_move_on_one_host_is_seen_by_the_other(hosts: Hosts) -> None:
    [sms_id] = await hosts.one.remember(
        USER, said("zqmovedcanary the router blinks red"), provenance=origin(SMS, 1), infer=False
    )
    [telegram_id] = await hosts.two.remember(
        USER, said("I prefer email over calls"), provenance=origin(TELEGRAM, 2), infer=False
    )

    assert await hosts.one.move(USER, OTHER, handles=[SMS]) == [sms_id]

    assert [r.id for r in await hosts.two.list(USER)] == [telegram_id]
    [moved] = await hosts.two.list(OTHER)
    assert (moved.id, moved.text, moved.handle, moved.turn_ids) == (
        sms_id,
        "zqmovedcanary the router blinks red",
        SMS,
        (1,),
    )
    assert [r.id for r in await hosts.two.recall(OTHER, "zqmovedcanary router", limit=5)] == [sms_id]
    assert sms_id not in {r.id for r in await hosts.two.recall(USER, "zqmovedcanary router", limit=5)}
    assert await hosts.two.covers_turns(OTHER, [1]) and not await hosts.two.covers_turns(USER, [1])
    assert await hosts.two.move(USER, OTHER, handles=[SMS]) == []  # done: a re-run on any host moves nothing


async def test_mem0_keeps_no_history_on_any_host(hosts: Hosts) -> None:
    canary = "zqhistorycanary5e0"
    [memory_id] = await hosts.one.remember(
        USER, said(f"my locker code is {canary}"), provenance=origin(SMS, 1), infer=False
    )
    memory = hosts.one._backend().memory
    memory.update(memory_id, f"my locker code is still {canary}")
    assert memory.history(memory_id) == []
    with memory.db._lock:
        kept = memory.db.connection.execute("SELECT count(*) FROM history").fetchone()[0]
        messages = memory.db.connection.execute("SELECT count(*) FROM messages").fetchone()[0]
    assert (kept, messages) == (0, 0)
    assert list(hosts.root.rglob("history.db")) == []
    assert files_containing(hosts.root, canary) == []


async def test_build_memory_puts_local_memory_on_the_store_database(
    database_url: str, tmp_path: Path
) -> None:
    memory = build_memory(Settings(data_dir=tmp_path / "data", database_url=database_url))
    assert isinstance(memory, LocalMemory)
    try:
        await memory.remember(USER, said("zqwiredcanary hello"), provenance=origin(SMS, 1), infer=False)
        assert tables_holding(database_url, "zqwiredcanary") == ["memory_index_rows"]
        assert isinstance(memory._backend().index, PostgresIndex)
    finally:
        await memory.aclose()
    assert files_containing(tmp_path, "zqwiredcanary") == []


def test_many_hosts_opening_at_once_make_the_tables_once(database_url: str) -> None:
    """Each index is its own pool, so its own PostgreSQL session: the advisory lock queues them."""

    def open_one(_: int) -> str:
        index = PostgresIndex(database_url, collection_name="memories", embedding_model_dims=4, pool_size=1)
        try:
            return repr(index)
        finally:
            index.close()

    with ThreadPoolExecutor(max_workers=8) as pool:
        opened = list(pool.map(open_one, range(8)))
    assert opened == ["PostgresIndex(collection='memories', vectors='bytea')"] * 8
    with psycopg.connect(libpq_dsn(database_url)) as conn:
        tables = conn.execute(
            "SELECT tablename FROM pg_tables WHERE tablename LIKE %s ORDER BY tablename",
            ("memory\\_index\\_%",),
        ).fetchall()
        triggers = conn.execute(
            "SELECT tgname FROM pg_trigger WHERE tgrelid = 'memory_index_rows'::regclass AND NOT tgisinternal"
            " ORDER BY tgname"
        ).fetchall()
    assert [name for (name,) in tables] == [
        "memory_index_collections",
        "memory_index_departures",
        "memory_index_rows",
        "memory_index_scopes",
        "memory_index_turns",
        "memory_index_upgrades",
    ]
    assert [name for (name,) in triggers] == [
        f"memory_index_scopes_{event}" for event in ("delete", "insert", "truncate", "update")
    ]


def test_a_collection_keeps_its_dimensions(database_url: str) -> None:
    PostgresIndex(database_url, collection_name="memories", embedding_model_dims=4).close()
    with pytest.raises(ValueError, match="4 dimensions"):
        PostgresIndex(database_url, collection_name="memories", embedding_model_dims=8)
