"""``core.memory.importer``: reading the three formats (bad rows by line or index, malformed files refused
whole) and writing through a real ``LocalMemory``: provenance, original times, redaction, idempotency."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest

from core.memory.import_formats import MalformedImport, Refused, read_import
from core.memory.importer import Match, MemoryImporter
from core.memory.local import LocalMemory
from core.settings import LLMSettings

CSV = b"""customer,memory,category,channel,created_at
sms:+15551230000,my router keeps dropping the wifi,support_history,sms,2025-01-10T09:00:00Z
sms:+15551230000,,profile,sms,
telegram:42,please only text me after 6pm,,telegram,2025-02-01
telegram:42,I live in Porto,vip,telegram,
telegram:42,my order 1234 is late,,,not a date
cus_unknown,my card is 4111 1111 1111 1111,,,
"""

MEM0 = {
    "results": [
        {
            "id": "m-1",
            "memory": "Customer says they prefer email over phone calls",
            "user_id": "alice@example.com",
            "metadata": {"user_id": "someone-else", "data": "x", "moved_from": "m-0", "team": "blue"},
            "created_at": "2024-11-05T10:00:00-08:00",
        },
        {"id": "m-2", "memory": "Owns a Pixel 8", "user_id": "alice@example.com", "created_at": None},
        {"id": "m-3", "memory": "  ", "user_id": "alice@example.com"},
        {"id": "m-4", "memory": "Lives in Lisbon", "user_id": "not an address"},
        "not a memory",
    ]
}


class FakeCustomers:
    """Customers keyed by reference; an address made into a customer on first use (when ``create``)."""

    def __init__(self) -> None:
        self.made: dict[str, str] = {"cus_known": "cus_known"}
        self.asked: list[tuple[str, bool]] = []

    async def for_reference(self, reference: str, *, create: bool) -> Match:
        self.asked.append((reference, create))
        if reference.startswith("cus_"):
            if reference not in self.made:
                raise Refused("no customer with that id")
            return Match(customer_id=reference)
        if ":" not in reference and "@" not in reference:
            raise Refused("the customer is neither a customer id nor an address (use --customer)")
        address = reference if ":" in reference else f"email:{reference}"
        if address not in self.made and create:
            self.made[address] = f"cus_{len(self.made)}"
        return Match(customer_id=self.made.get(address), address=address)

    async def for_handles(self, handles: Sequence[str], *, create: bool) -> Match:
        return await self.for_reference(handles[0], create=create)


@pytest.fixture
async def memory(tmp_path: Path) -> AsyncIterator[LocalMemory]:
    store = LocalMemory(data_dir=tmp_path / "data", llm=LLMSettings())
    yield store
    await store.aclose()


# ----- reading ---------------------------------------------------------------------------------------


def test_csv_rows_are_read_and_bad_rows_named_by_line() -> None:
    source = read_import(CSV, name="memories.csv")
    assert source.format == "csv"
    assert [(c.where, c.reference) for c in source.candidates] == [
        ("line 2", "sms:+15551230000"),
        ("line 4", "telegram:42"),
        ("line 7", "cus_unknown"),
    ]
    assert [(r.where, r.reason) for r in source.rejected] == [
        ("line 3", "no memory text"),
        ("line 5", "unknown category"),
        ("line 6", "created_at is not an ISO date-time"),
    ]
    first, second, _ = source.candidates
    assert first.metadata == {"category": "support_history", "source_channel": "sms"}
    assert first.created_at == datetime(2025, 1, 10, 9, tzinfo=UTC)
    assert second.metadata["category"] == "special_handling"  # by the keyword rules ("only ... write")
    assert second.created_at == datetime(2025, 2, 1, tzinfo=UTC)


def test_formats_are_told_apart_by_content() -> None:
    assert read_import(CSV).format == "csv"
    assert read_import(json.dumps(MEM0).encode()).format == "mem0"
    assert read_import(json.dumps(MEM0["results"][:2]).encode()).format == "mem0"
    export = {"format": "threadline-export/1", "identities": [], "memories": []}
    assert read_import(json.dumps(export).encode()).format == "threadline"


@pytest.mark.parametrize(
    ("data", "fmt", "says"),
    [
        (b"\xff\xfe\x00garbage", "auto", "not UTF-8"),
        (b'{"memories": [', "auto", "not valid JSON"),
        (b'{"format": "threadline-export/9", "memories": []}', "auto", "must be threadline-export/1"),
        (b'{"format": "threadline-export/1", "memories": {}}', "threadline", "must be lists"),
        (b'{"something": 1}', "mem0", "not a Mem0 export"),
        (b"name,text\nana,hello\n", "csv", "needs a memory column"),
        (b"customer,memory\n", "xml", "unknown format"),
    ],
)
def test_a_malformed_file_is_refused_whole(data: bytes, fmt: str, says: str) -> None:
    with pytest.raises(MalformedImport, match=says):
        read_import(data, fmt)


def test_a_mem0_export_keeps_its_own_metadata_but_never_the_stores_keys() -> None:
    source = read_import(json.dumps(MEM0).encode(), "mem0")
    assert [(r.where, r.reason) for r in source.rejected] == [
        ("memory 3", "no memory text"),
        ("memory 5", "not a memory object"),
    ]
    first = source.candidates[0]
    assert first.metadata == {"team": "blue", "category": "special_handling"}
    assert first.original_id == "m-1" and first.reference == "alice@example.com"
    assert first.created_at == datetime(2024, 11, 5, 18, tzinfo=UTC)


# ----- writing ---------------------------------------------------------------------------------------


async def test_mem0_import_with_provenance_then_nothing_new_on_a_second_run(memory: LocalMemory) -> None:
    customers = FakeCustomers()
    source = read_import(json.dumps(MEM0).encode())
    report = await MemoryImporter(memory, customers).run(source)

    assert (report.imported, report.already_present) == (2, 0)
    assert [(r.where, r.reason) for r in report.refused] == [
        ("memory 3", "no memory text"),
        ("memory 4", "the customer is neither a customer id nor an address (use --customer)"),
        ("memory 5", "not a memory object"),
    ]
    alice = customers.made["email:alice@example.com"]
    records = {r.text: r for r in await memory.list(alice)}
    assert set(records) == {"Customer says they prefer email over phone calls", "Owns a Pixel 8"}
    prefers = records["Customer says they prefer email over phone calls"]
    assert prefers.created_at == datetime(2024, 11, 5, 18, tzinfo=UTC)
    assert (prefers.channel, prefers.handle) == ("email", "email:alice@example.com")
    assert prefers.metadata["imported_from"] == "mem0:m-1" and prefers.metadata["import_key"] == "mem0:m-1"
    assert prefers.metadata["said_by"] == "customer" and prefers.metadata["verified"] is False
    assert prefers.metadata["team"] == "blue" and "moved_from" not in prefers.metadata
    assert prefers.metadata["category"] == "special_handling"
    assert prefers.turn_ids == () and prefers.message_ids == ()
    assert records["Owns a Pixel 8"].created_at is not None  # none given: now

    again = await MemoryImporter(memory, customers).run(source)
    assert (again.imported, again.already_present, len(again.refused)) == (0, 2, 3)
    assert len(await memory.list(alice)) == 2
    assert "nothing was written" not in again.summary()
    assert again.summary() == (
        "imported 0, already present 2, refused 3 (1 no memory text; 1 the customer is neither a customer id "
        "nor an address (use --customer); 1 not a memory object)"
    )


async def test_csv_import_redacts_refuses_unknown_customers_and_is_idempotent(memory: LocalMemory) -> None:
    customers = FakeCustomers()
    report = await MemoryImporter(memory, customers).run(read_import(CSV))
    assert report.imported == 2
    assert sorted((r.where, r.reason) for r in report.refused) == [
        ("line 3", "no memory text"),
        ("line 5", "unknown category"),
        ("line 6", "created_at is not an ISO date-time"),
        ("line 7", "no customer with that id"),
    ]
    [sms] = await memory.list(customers.made["sms:+15551230000"])
    assert (sms.text, sms.channel, sms.category) == (
        "my router keeps dropping the wifi",
        "sms",
        "support_history",
    )
    assert sms.metadata["imported_from"] == "csv" and sms.metadata["import_key"].startswith("sha256:")

    customers.made["cus_unknown"] = "cus_unknown"
    second = await MemoryImporter(memory, customers).run(read_import(CSV))
    assert (second.imported, second.already_present) == (1, 2)
    [card] = await memory.list("cus_unknown")
    assert card.text == "my card is [card number removed]"  # redacted as every memory write


async def test_same_text_twice_in_one_file_is_written_once(memory: LocalMemory) -> None:
    data = b"customer,memory\ntelegram:42,I live in Porto\ntelegram:42,i live   in porto\n"
    report = await MemoryImporter(memory, FakeCustomers()).run(read_import(data))
    assert (report.imported, report.already_present) == (1, 1)


async def test_dry_run_writes_nothing_and_makes_no_customer(memory: LocalMemory) -> None:
    customers = FakeCustomers()
    report = await MemoryImporter(memory, customers, dry_run=True).run(read_import(CSV))
    assert report.imported == 2 and report.summary().startswith("would import 2,")
    assert report.summary().endswith("dry run: nothing was written")
    assert customers.made == {"cus_known": "cus_known"}
    assert all(create is False for _, create in customers.asked)


async def test_a_named_customer_takes_every_memory(memory: LocalMemory) -> None:
    seen: list[int] = []
    report = await MemoryImporter(
        memory, FakeCustomers(), customer="cus_known", progress=lambda r, total: seen.append(r.done)
    ).run(read_import(CSV))
    assert report.imported == 3 and report.customers == {"cus_known"}
    assert seen == [4, 5, 6]  # after each candidate (the three bad rows were counted when read)
    assert len(await memory.list("cus_known")) == 3


async def test_the_address_naming_the_customer_is_the_handle_only_on_its_own_channel(
    memory: LocalMemory,
) -> None:
    data = (
        b"customer,memory,channel\nsms:+15551230000,I moved to Porto,email\nsms:+15551230000,call me Ana,\n"
    )
    customers = FakeCustomers()
    await MemoryImporter(memory, customers).run(read_import(data))
    records = {r.text: r for r in await memory.list(customers.made["sms:+15551230000"])}
    assert (records["I moved to Porto"].channel, records["I moved to Porto"].handle) == ("email", None)
    assert (records["call me Ana"].channel, records["call me Ana"].handle) == ("sms", "sms:+15551230000")
