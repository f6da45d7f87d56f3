"""``MemoryFilter``: recall and listing by category, channel and time, on both backends; no filter changes
nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import SecretStr

from core.memory.local import LocalMemory
from core.memory.platform import PlatformMemory, search_filters
from core.messages import MemoryFilter
from core.settings import LLMSettings
from tests.fakes.mem0_platform import FakeMem0Platform

USER = "cust-a"
OTHER = "cust-b"

# (text, category, channel, created_at)
MEMORIES = [
    ("my router keeps dropping the wifi", "support_history", "sms", datetime(2025, 1, 10, 9, tzinfo=UTC)),
    (
        "the wifi router was replaced last week",
        "operational_state",
        "email",
        datetime(2025, 2, 3, tzinfo=UTC),
    ),
    ("please only text me about the wifi", "special_handling", "sms", datetime(2025, 3, 1, tzinfo=UTC)),
    ("my name is Ana and I live in Porto", "profile", "telegram", datetime(2025, 3, 20, 18, tzinfo=UTC)),
]


def meta(category: str, channel: str) -> dict[str, object]:
    return {
        "category": category,
        "source_channel": channel,
        "source_handle": f"{channel}:x",
        "said_by": "customer",
    }


# ----- the value ---------------------------------------------------------------------------------------


def test_parse_reads_dates_and_date_times_and_empty_values() -> None:
    chosen = MemoryFilter.parse(
        category="profile", channel=" SMS ", since="2025-01-31", until="2025-02-01T09:30"
    )
    assert chosen.category == "profile" and chosen.channel == "sms"
    assert chosen.since == datetime(2025, 1, 31, tzinfo=UTC)
    assert chosen.until == datetime(2025, 2, 1, 9, 30, tzinfo=UTC)
    assert MemoryFilter.parse(category="", channel="", since="", until=None).empty
    offset = MemoryFilter.parse(since="2025-01-31T10:00:00+02:00").since
    assert offset == datetime(2025, 1, 31, 8, tzinfo=UTC)
    assert MemoryFilter.parse(until="2025-01-31T10:00:00Z").until == datetime(2025, 1, 31, 10, tzinfo=UTC)


@pytest.mark.parametrize(
    ("kwargs", "says"),
    [
        ({"category": "vip"}, "profile, support_history, special_handling, operational_state"),
        ({"since": "yesterday"}, "since: not an ISO date"),
        ({"until": "2025-13-01"}, "until: not an ISO date"),
        ({"since": "2025-02-01", "until": "2025-01-01"}, "since must be before until"),
        ({"since": "2025-02-01", "until": "2025-02-01"}, "since must be before until"),
        ({"channel": "not a channel"}, "not a channel name"),
    ],
)
def test_bad_values_are_refused_with_a_reason(kwargs: dict[str, str], says: str) -> None:
    with pytest.raises(ValueError, match=says):
        MemoryFilter.parse(**kwargs)


def test_since_is_inclusive_and_until_exclusive() -> None:
    window = MemoryFilter(since=datetime(2025, 1, 1, tzinfo=UTC), until=datetime(2025, 2, 1, tzinfo=UTC))
    assert window.admits_time(datetime(2025, 1, 1, tzinfo=UTC))
    assert not window.admits_time(datetime(2025, 2, 1, tzinfo=UTC))
    assert not window.admits_time(None)
    assert MemoryFilter().admits_time(None)


# ----- the local backend -----------------------------------------------------------------------------


@pytest.fixture
async def local(tmp_path: Path) -> AsyncIterator[LocalMemory]:
    store = LocalMemory(data_dir=tmp_path / "data", llm=LLMSettings())
    for text, category, channel, created in MEMORIES:
        await store.import_memory(USER, text, metadata=meta(category, channel), created_at=created)
    await store.import_memory(
        OTHER, "my wifi is fine", metadata=meta("support_history", "sms"), created_at=None
    )
    yield store
    await store.aclose()


async def test_local_recall_filters_before_the_limit(local: LocalMemory) -> None:
    [top] = await local.recall(USER, "wifi router", limit=1)
    other = "sms" if top.channel != "sms" else "email"
    [best] = await local.recall(USER, "wifi router", limit=1, filters=MemoryFilter(channel=other))
    assert best.channel == other  # the limit applies to the filtered rows, not before them

    by_category = await local.recall(
        USER, "wifi router", limit=5, filters=MemoryFilter(category="special_handling")
    )
    assert [r.text for r in by_category] == ["please only text me about the wifi"]

    window = MemoryFilter.parse(since="2025-02-03", until="2025-03-20")
    assert {r.text for r in await local.recall(USER, "wifi router", limit=5, filters=window)} == {
        "the wifi router was replaced last week",
        "please only text me about the wifi",
    }
    both = MemoryFilter.parse(channel="sms", since="2025-02-01")
    assert [r.text for r in await local.recall(USER, "wifi", limit=5, filters=both)] == [
        "please only text me about the wifi"
    ]
    assert await local.recall(USER, "wifi", limit=5, filters=MemoryFilter(channel="slack")) == []


async def test_local_no_filter_and_an_empty_filter_change_nothing(local: LocalMemory) -> None:
    plain = await local.recall(USER, "wifi router", limit=3)
    assert [r.id for r in await local.recall(USER, "wifi router", limit=3, filters=MemoryFilter())] == [
        r.id for r in plain
    ]
    assert [r.id for r in await local.list(USER, filters=MemoryFilter())] == [
        r.id for r in await local.list(USER)
    ]


async def test_local_list_filters_newest_first_with_the_original_times(local: LocalMemory) -> None:
    listed = await local.list(USER)
    assert [r.created_at for r in listed] == sorted((m[3] for m in MEMORIES), reverse=True)
    sms = await local.list(USER, filters=MemoryFilter(channel="sms"))
    assert [r.text for r in sms] == [
        "please only text me about the wifi",
        "my router keeps dropping the wifi",
    ]
    early = await local.list(USER, filters=MemoryFilter.parse(until="2025-02-03"))
    assert [r.text for r in early] == ["my router keeps dropping the wifi"]
    assert [r.text for r in await local.list(USER, filters=MemoryFilter(category="profile"))] == [
        "my name is Ana and I live in Porto"
    ]
    # another customer's memory never shows, filtered or not
    assert all(
        r.text != "my wifi is fine" for r in await local.list(USER, filters=MemoryFilter(channel="sms"))
    )


async def test_import_memory_stores_as_is_with_metadata_and_time(local: LocalMemory) -> None:
    [record] = await local.list(USER, filters=MemoryFilter(category="profile"))
    assert record.created_at == datetime(2025, 3, 20, 18, tzinfo=UTC)
    assert (record.channel, record.handle, record.metadata["said_by"]) == (
        "telegram",
        "telegram:x",
        "customer",
    )
    # retention reads the same time: only the memories written before the cutoff go
    assert await local.forget_before(USER, datetime(2025, 2, 1, tzinfo=UTC)) == 1
    assert len(await local.list(USER)) == 3


# ----- the hosted backend ----------------------------------------------------------------------------


@pytest.fixture
def fake() -> Iterator[FakeMem0Platform]:
    with FakeMem0Platform(api_key="m0-key") as server:
        server.sync_add = True
        yield server


@pytest.fixture
async def hosted(fake: FakeMem0Platform, tmp_path: Path) -> AsyncIterator[PlatformMemory]:
    store = PlatformMemory(api_key=SecretStr(fake.api_key), host=fake.url, data_dir=tmp_path, timeout=10)
    for text, category, channel, created in MEMORIES:
        assert await store.import_memory(USER, text, metadata=meta(category, channel), created_at=created)
    yield store
    await store.aclose()


def test_search_filters_are_the_platform_v2_language() -> None:
    assert search_filters(USER, None) == {"user_id": USER}
    assert search_filters(USER, MemoryFilter()) == {"user_id": USER}
    chosen = MemoryFilter.parse(category="profile", channel="sms", since="2025-01-01", until="2025-02-01")
    assert search_filters(USER, chosen) == {
        "AND": [
            {"user_id": USER},
            {"metadata": {"category": "profile", "source_channel": "sms"}},
            {"created_at": {"gte": "2025-01-01T00:00:00+00:00", "lt": "2025-02-01T00:00:00+00:00"}},
        ]
    }


async def test_hosted_recall_sends_the_filters_and_checks_them(
    fake: FakeMem0Platform, hosted: PlatformMemory
) -> None:
    found = await hosted.recall(USER, "wifi router", limit=1, filters=MemoryFilter(channel="email"))
    assert [r.text for r in found] == ["the wifi router was replaced last week"]
    search = [r for r in fake.requests if r["path"] == "/v3/memories/search/"][-1]["json"]
    assert search["filters"] == {"AND": [{"user_id": USER}, {"metadata": {"source_channel": "email"}}]}
    assert search["top_k"] == 1
    # without a filter the call is as before
    await hosted.recall(USER, "wifi", limit=2)
    search = [r for r in fake.requests if r["path"] == "/v3/memories/search/"][-1]["json"]
    assert search == {"query": "wifi", "filters": {"user_id": USER}, "top_k": 2}


async def test_hosted_list_filters_here_with_the_original_times(hosted: PlatformMemory) -> None:
    listed = await hosted.list(USER)
    assert [r.created_at for r in listed] == sorted((m[3] for m in MEMORIES), reverse=True)
    window = await hosted.list(USER, filters=MemoryFilter.parse(channel="sms", since="2025-02-01"))
    assert [r.text for r in window] == ["please only text me about the wifi"]
