"""PlatformMemory: the real ``mem0.AsyncMemoryClient`` against a fake hosted Mem0 over HTTP on 127.0.0.1."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import SecretStr

from core.errors import MemoryUnavailable
from core.memory.platform import PlatformMemory
from core.messages import ChatMessage
from tests.core.memory.helpers import provenance
from tests.fakes.mem0_platform import FakeMem0Platform

USER = "cust-a"
OTHER = "cust-b"


def said(text: str) -> list[ChatMessage]:
    return [ChatMessage(role="user", content=text)]


@pytest.fixture
def fake() -> Iterator[FakeMem0Platform]:
    with FakeMem0Platform(api_key="m0-right-key") as server:
        yield server


@pytest.fixture
async def memory(fake: FakeMem0Platform, tmp_path: Path) -> AsyncIterator[PlatformMemory]:
    store = PlatformMemory(api_key=SecretStr(fake.api_key), host=fake.url, data_dir=tmp_path, timeout=10)
    yield store
    await store.aclose()


def calls(fake: FakeMem0Platform, path: str) -> list[dict[str, object]]:
    return [r for r in fake.requests if r["path"] == path]


async def test_construction_calls_nothing_and_the_ping_runs_once(
    fake: FakeMem0Platform, memory: PlatformMemory
) -> None:
    assert fake.requests == []
    await asyncio.gather(*(memory.list(USER) for _ in range(5)))
    assert len(calls(fake, "/v1/ping/")) == 1
    assert all(r["authorization"] == f"Token {fake.api_key}" for r in fake.requests)


async def test_remember_then_recall_with_provenance(fake: FakeMem0Platform, memory: PlatformMemory) -> None:
    origin = provenance(turn_ids=(4, 5), channel="email", category="special_handling")
    await memory.remember(
        USER,
        [
            ChatMessage(role="user", content="I am hard of hearing, please write"),
            ChatMessage(role="assistant", content="Sure"),
        ],
        provenance=origin,
        infer=True,
    )
    (add,) = calls(fake, "/v3/memories/add/")
    body = add["json"]
    assert isinstance(body, dict)
    assert body["user_id"] == USER and body["infer"] is True and body["metadata"] == origin.as_metadata()
    assert [m["role"] for m in body["messages"]] == ["user", "assistant"]

    found = await memory.recall(USER, "hearing write", limit=3)
    assert [r.text for r in found] == ["I am hard of hearing, please write"]
    record = found[0]
    assert (record.channel, record.category, record.turn_ids) == ("email", "special_handling", (4, 5))
    assert record.message_ids == ("inbox:4", "inbox:5") and record.created_at is not None
    (search,) = calls(fake, "/v3/memories/search/")
    assert search["json"] == {"query": "hearing write", "filters": {"user_id": USER}, "top_k": 3}


async def test_remember_returns_ids_when_the_server_gives_them(
    fake: FakeMem0Platform, memory: PlatformMemory
) -> None:
    assert await memory.remember(USER, said("queued"), provenance=provenance(), infer=True) == []
    fake.sync_add = True
    ids = await memory.remember(USER, said("answered at once"), provenance=provenance(), infer=True)
    assert ids == [m.id for m in fake.memories if m.memory == "answered at once"]


async def test_customers_never_see_each_other(fake: FakeMem0Platform, memory: PlatformMemory) -> None:
    await memory.remember(
        USER, said("alpha likes the blue plan"), provenance=provenance(turn_ids=(1,)), infer=False
    )
    await memory.remember(
        OTHER, said("bravo likes the red plan"), provenance=provenance(turn_ids=(2,)), infer=False
    )
    assert [r.text for r in await memory.recall(OTHER, "likes plan", limit=10)] == [
        "bravo likes the red plan"
    ]
    assert [r.text for r in await memory.list(OTHER)] == ["bravo likes the red plan"]
    assert [r.text for r in await memory.list(USER)] == ["alpha likes the blue plan"]
    assert not await memory.covers_turns(OTHER, [1])


async def test_results_of_another_customer_are_dropped(
    fake: FakeMem0Platform, memory: PlatformMemory
) -> None:
    leaked = {"id": "x", "memory": "someone else's secret", "user_id": OTHER, "metadata": {}}
    fake.push(200, {"results": [leaked]}, path="/v3/memories/search/")
    assert await memory.recall(USER, "secret", limit=5) == []


async def test_list_pages_through_everything_newest_first(
    fake: FakeMem0Platform, memory: PlatformMemory
) -> None:
    texts = [f"fact {i}" for i in range(130)]
    for text in texts:
        await memory.remember(USER, said(text), provenance=provenance(), infer=False)
    listed = await memory.list(USER)
    assert [r.text for r in listed] == list(reversed(texts))
    assert [r["query"] for r in calls(fake, "/v3/memories/")] == [
        {"page": "1", "page_size": "100"},
        {"page": "2", "page_size": "100"},
    ]


async def test_covers_turns(memory: PlatformMemory) -> None:
    await memory.remember(USER, said("modem blinks"), provenance=provenance(turn_ids=(7, 8)), infer=False)
    assert await memory.covers_turns(USER, [8, 100])
    assert not await memory.covers_turns(USER, [9])
    assert not await memory.covers_turns(USER, [])


async def test_forget(fake: FakeMem0Platform, memory: PlatformMemory) -> None:
    await memory.remember(USER, said("one"), provenance=provenance(), infer=False)
    await memory.remember(USER, said("two"), provenance=provenance(), infer=False)
    await memory.remember(OTHER, said("three"), provenance=provenance(), infer=False)
    assert await memory.forget(USER) == 2
    assert await memory.list(USER) == []
    assert [m.memory for m in fake.memories] == ["three"]
    (delete,) = calls(fake, "/v1/memories/")[-1:]
    assert delete["method"] == "DELETE" and delete["query"] == {"user_id": USER}


async def test_infer_failure_falls_back_to_the_user_lines(
    fake: FakeMem0Platform, memory: PlatformMemory
) -> None:
    fake.push(500, path="/v3/memories/add/")
    await memory.remember(
        USER,
        [
            ChatMessage(role="user", content="my parcel is late"),
            ChatMessage(role="assistant", content="checking"),
        ],
        provenance=provenance(),
        infer=True,
    )
    first, second = calls(fake, "/v3/memories/add/")
    assert isinstance(first["json"], dict) and isinstance(second["json"], dict)
    assert first["json"]["infer"] is True
    assert second["json"]["infer"] is False
    assert second["json"]["messages"] == [{"role": "user", "content": "my parcel is late"}]
    assert [m.memory for m in fake.memories] == ["my parcel is late"]


async def test_server_errors_are_memory_unavailable(fake: FakeMem0Platform, memory: PlatformMemory) -> None:
    fake.push(503, path="/v3/memories/search/")
    with pytest.raises(MemoryUnavailable):
        await memory.recall(USER, "anything", limit=3)
    fake.push(500, path="/v3/memories/add/", times=2)
    with pytest.raises(MemoryUnavailable):
        await memory.remember(USER, said("x"), provenance=provenance(), infer=True)


async def test_a_wrong_key_is_memory_unavailable(fake: FakeMem0Platform, tmp_path: Path) -> None:
    memory = PlatformMemory(api_key=SecretStr("m0-wrong-key"), host=fake.url, data_dir=tmp_path, timeout=10)
    try:
        with pytest.raises(MemoryUnavailable):
            await memory.recall(USER, "anything", limit=3)
        with pytest.raises(MemoryUnavailable):
            await memory.remember(USER, said("x"), provenance=provenance(), infer=True)
        assert fake.memories == []
        assert "m0-wrong-key" not in repr(memory)
    finally:
        await memory.aclose()


async def test_an_unreachable_host_is_memory_unavailable(tmp_path: Path) -> None:
    with FakeMem0Platform() as gone:
        url = gone.url
    memory = PlatformMemory(api_key=SecretStr("k"), host=url, data_dir=tmp_path, timeout=5)
    with pytest.raises(MemoryUnavailable):
        await memory.list(USER)
    await memory.aclose()


def test_the_fake_refuses_unscoped_reads(fake: FakeMem0Platform) -> None:
    import httpx

    headers = {"Authorization": f"Token {fake.api_key}"}
    with httpx.Client(base_url=fake.url, headers=headers) as client:
        assert client.post("/v3/memories/", json={"filters": {}}).status_code == 400
        assert (
            client.post("/v3/memories/search/", json={"query": "x", "filters": {"category": "y"}}).status_code
            == 400
        )
        assert client.delete("/v1/memories/").status_code == 400
        assert client.get("/v1/ping/", headers={"Authorization": "Token nope"}).status_code == 401


async def test_recall_applies_the_local_priors_to_the_services_results(memory: PlatformMemory) -> None:
    """Recency and the time prior, as recall on this machine: the service's scores decide, the newer of two
    equal matches comes first, and for a question that asks when, a line that says when gains half."""
    older = replace(provenance(turn_ids=(1,)), said_at=datetime(2026, 1, 5, tzinfo=UTC))
    newer = replace(provenance(turn_ids=(2,)), said_at=datetime(2026, 6, 5, tzinfo=UTC))
    await memory.remember(USER, said("I moved to Oak Street"), provenance=older, infer=False)
    await memory.remember(USER, said("I moved to Elm Street"), provenance=newer, infer=False)
    # equal scores from the service (it lists Oak first): the newer statement first
    found = await memory.recall(USER, "where did I move", limit=5)
    assert [m.text for m in found] == ["I moved to Elm Street", "I moved to Oak Street"]

    await memory.remember(OTHER, said("router box is old"), provenance=provenance(turn_ids=(3,)), infer=False)
    await memory.remember(
        OTHER, said("the router died last week"), provenance=provenance(turn_ids=(4,)), infer=False
    )
    # the service scores "router box is old" higher for both; asking when lifts the line that says when
    asked_when = await memory.recall(OTHER, "When did my router break?", limit=5)
    assert [m.text for m in asked_when] == ["the router died last week", "router box is old"]
    not_when = await memory.recall(OTHER, "router break please", limit=5)
    assert [m.text for m in not_when] == ["router box is old", "the router died last week"]
