"""LocalMemory: Mem0 open source on our SQLite store and local embedder, end to end in ``tmp_path``."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from core.compose import build_memory
from core.errors import MemoryUnavailable
from core.memory.local import LocalMemory
from core.memory.platform import PlatformMemory
from core.messages import ChatMessage
from core.ports import MemoryStore
from core.settings import LLMSettings, MemorySettings, Settings
from tests.core.memory.helpers import files_containing, provenance
from tests.fakes.openai_server import FakeOpenAI

USER = "cust-a"
OTHER = "cust-b"


def said(text: str) -> list[ChatMessage]:
    return [ChatMessage(role="user", content=text)]


@pytest.fixture
async def memory(tmp_path: Path) -> AsyncIterator[LocalMemory]:
    store = LocalMemory(data_dir=tmp_path / "data", llm=LLMSettings())
    yield store
    await store.aclose()


@pytest.fixture
def fake_llm() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as fake:
        yield fake


def llm_at(fake: FakeOpenAI) -> LLMSettings:
    return LLMSettings(api_key=SecretStr("sk-test"), base_url=fake.base_url, max_retries=0, timeout=10)


def extraction(*facts: str) -> Any:
    return lambda request: json.dumps({"memory": [{"text": fact} for fact in facts]})


async def test_remember_as_is_then_recall_with_provenance(memory: LocalMemory) -> None:
    origin = provenance(turn_ids=(11, 12), channel="telegram", category="profile")
    ids = await memory.remember(
        USER,
        [
            ChatMessage(role="user", content="my router keeps dropping the wifi"),
            ChatMessage(role="assistant", content="I am sorry, let me check your line"),
        ],
        provenance=origin,
        infer=False,
    )
    assert len(ids) == 1  # the assistant's line is not a memory of the customer
    found = await memory.recall(USER, "internet connection problem", limit=5)
    assert [r.text for r in found] == ["my router keeps dropping the wifi"]
    record = found[0]
    assert record.id == ids[0]
    assert record.score is not None and record.score > 0
    assert (record.channel, record.handle, record.category) == ("telegram", origin.handle, "profile")
    assert record.message_ids == ("inbox:11", "inbox:12") and record.turn_ids == (11, 12)
    assert record.created_at is not None
    assert record.metadata == origin.as_metadata()


async def test_recall_ranks_the_relevant_memory_first(memory: LocalMemory) -> None:
    for text in (
        "I love pizza with olives",
        "my invoice was charged twice this month",
        "the router lost wifi",
    ):
        await memory.remember(USER, said(text), provenance=provenance(), infer=False)
    found = await memory.recall(USER, "billing problem with a double charge", limit=1)
    assert [r.text for r in found] == ["my invoice was charged twice this month"]
    assert await memory.recall(USER, "   ", limit=5) == []


async def test_customers_never_see_each_other(memory: LocalMemory) -> None:
    await memory.remember(
        USER, said("alpha customer router wifi drops"), provenance=provenance(), infer=False
    )
    await memory.remember(OTHER, said("bravo customer prefers email"), provenance=provenance(), infer=False)
    query = "customer router wifi email"
    assert [r.text for r in await memory.recall(USER, query, limit=10)] == [
        "alpha customer router wifi drops"
    ]
    assert [r.text for r in await memory.recall(OTHER, query, limit=10)] == ["bravo customer prefers email"]
    assert [r.text for r in await memory.list(OTHER)] == ["bravo customer prefers email"]
    assert [r.text for r in await memory.list(USER)] == ["alpha customer router wifi drops"]
    assert await memory.recall("cust-nobody", "router", limit=10) == []
    assert await memory.list("cust-nobody") == []


async def test_list_is_everything_newest_first(memory: LocalMemory) -> None:
    texts = [f"note number {i} about the account" for i in range(25)]
    for text in texts:
        await memory.remember(USER, said(text), provenance=provenance(), infer=False)
    listed = await memory.list(USER)
    assert [r.text for r in listed] == list(reversed(texts))


async def test_covers_turns(memory: LocalMemory) -> None:
    await memory.remember(
        USER, said("the modem is blinking"), provenance=provenance(turn_ids=(5, 6)), infer=False
    )
    assert await memory.covers_turns(USER, [6, 40])
    assert not await memory.covers_turns(USER, [7])
    assert not await memory.covers_turns(OTHER, [5, 6])
    assert not await memory.covers_turns(USER, [])


async def test_infer_without_an_llm_stores_the_turn_as_is(memory: LocalMemory) -> None:
    ids = await memory.remember(USER, said("please call me after 6pm"), provenance=provenance(), infer=True)
    assert len(ids) == 1
    assert [r.text for r in await memory.list(USER)] == ["please call me after 6pm"]


async def test_infer_uses_the_llm_extraction(tmp_path: Path, fake_llm: FakeOpenAI) -> None:
    fake_llm.responder = extraction("Customer's router drops wifi every evening", "Customer prefers SMS")
    memory = LocalMemory(data_dir=tmp_path, llm=llm_at(fake_llm))
    try:
        origin = provenance(turn_ids=(3,))
        ids = await memory.remember(
            USER,
            [
                ChatMessage(role="user", content="ugh, the wifi dies every evening. text me, don't call"),
                ChatMessage(role="assistant", content="Noted."),
            ],
            provenance=origin,
            infer=True,
        )
        assert len(ids) == 2
        listed = await memory.list(USER)
        assert {r.text for r in listed} == {
            "Customer's router drops wifi every evening",
            "Customer prefers SMS",
        }
        assert all(r.metadata == origin.as_metadata() for r in listed)
        assert await memory.covers_turns(USER, [3])
        (call,) = fake_llm.calls
        assert call["response_format"] == {"type": "json_object"}
        assert "wifi dies every evening" in json.dumps(call["messages"])
    finally:
        await memory.aclose()


@pytest.mark.parametrize(
    "failure",
    [
        pytest.param(lambda fake: fake.push(500), id="http-500"),
        pytest.param(lambda fake: setattr(fake, "responder", lambda _: "sure! here you go"), id="not-json"),
        pytest.param(lambda fake: setattr(fake, "responder", lambda _: '{"facts": 3}'), id="wrong-json"),
    ],
)
async def test_infer_falls_back_to_the_turn_as_is(tmp_path: Path, fake_llm: FakeOpenAI, failure: Any) -> None:
    failure(fake_llm)
    memory = LocalMemory(data_dir=tmp_path, llm=llm_at(fake_llm))
    try:
        ids = await memory.remember(
            USER,
            [
                ChatMessage(role="user", content="my parcel never arrived"),
                ChatMessage(role="assistant", content="Oh no"),
            ],
            provenance=provenance(turn_ids=(9,)),
            infer=True,
        )
        assert len(ids) == 1
        assert [r.text for r in await memory.list(USER)] == ["my parcel never arrived"]
        assert await memory.covers_turns(USER, [9])
        assert len(fake_llm.calls) == 1
    finally:
        await memory.aclose()


async def test_forget_erases_everything_of_the_customer(tmp_path: Path, fake_llm: FakeOpenAI) -> None:
    canary, survivor = "zqcanary7f3a9czebra", "zqsurvivor51bravo"
    fake_llm.responder = extraction(f"Customer code word is {canary}")
    data = tmp_path / "data"
    first = LocalMemory(data_dir=data, llm=llm_at(fake_llm))
    await first.remember(
        USER, said(f"my code word is {canary}"), provenance=provenance(turn_ids=(1,)), infer=True
    )
    await first.remember(USER, said(f"again: {canary}"), provenance=provenance(turn_ids=(2,)), infer=False)
    await first.remember(
        OTHER, said(f"mine is {survivor}"), provenance=provenance(turn_ids=(3,)), infer=False
    )
    assert len(await first.list(USER)) == 2
    await first.aclose()
    assert files_containing(data, canary)  # the grep sees what is there

    second = LocalMemory(data_dir=data, llm=llm_at(fake_llm))
    assert await second.forget(USER) == 2
    assert await second.list(USER) == []
    assert await second.recall(USER, f"code word {canary}", limit=10) == []
    assert not await second.covers_turns(USER, [1, 2])
    assert [r.text for r in await second.list(OTHER)] == [f"mine is {survivor}"]
    assert await second.forget(USER) == 0
    await second.aclose()

    assert files_containing(data, canary) == []
    assert files_containing(data, survivor)


async def test_two_stores_open_the_same_data_dir_at_once(tmp_path: Path) -> None:
    server = LocalMemory(data_dir=tmp_path, llm=LLMSettings())
    cli = LocalMemory(data_dir=tmp_path, llm=LLMSettings())
    try:
        await server.remember(USER, said("written by the server"), provenance=provenance(), infer=False)
        await cli.remember(USER, said("written by the cli"), provenance=provenance(), infer=False)
        assert {r.text for r in await cli.list(USER)} == {"written by the server", "written by the cli"}
        assert {r.text for r in await server.list(USER)} == {"written by the server", "written by the cli"}
    finally:
        await server.aclose()
        await cli.aclose()


async def test_backend_failures_are_memory_unavailable(tmp_path: Path) -> None:
    blocked = tmp_path / "not-a-dir"
    blocked.write_text("a file where the data dir should be")
    memory = LocalMemory(data_dir=blocked, llm=LLMSettings())
    with pytest.raises(MemoryUnavailable):
        await memory.recall(USER, "anything", limit=3)
    with pytest.raises(MemoryUnavailable):
        await memory.remember(USER, said("x"), provenance=provenance(), infer=True)
    await memory.aclose()
    with pytest.raises(MemoryUnavailable, match="closed"):
        await memory.list(USER)


def test_build_memory_picks_the_backend(tmp_path: Path) -> None:
    local: MemoryStore = build_memory(Settings(data_dir=tmp_path))
    assert isinstance(local, LocalMemory)
    hosted = build_memory(
        Settings(data_dir=tmp_path, memory=MemorySettings(backend="platform", api_key=SecretStr("m0-key")))
    )
    assert isinstance(hosted, PlatformMemory)
    assert "m0-key" not in repr(hosted)


async def test_close_waits_for_a_write_still_running_in_its_thread(tmp_path: Path) -> None:
    """A hub that stops cancels its memory lane while a write runs in a worker thread; closing Mem0's
    connections under that thread crashed the process (a segfault in SQLite). ``aclose`` waits for it."""
    import asyncio
    import threading
    import time

    from core.memory import mem0_oss

    events: list[str] = []
    started = threading.Event()

    class SlowIndex:
        def __init__(self) -> None:
            self._inner = mem0_oss.sqlite_index(tmp_path / "data")

        def insert(self, *args: Any, **kwargs: Any) -> None:
            started.set()
            time.sleep(0.5)
            self._inner.insert(*args, **kwargs)
            events.append("inserted")

        def close(self) -> None:
            events.append("closed")
            self._inner.close()

        def __getattr__(self, name: str) -> Any:
            return getattr(self._inner, name)

    store = LocalMemory(data_dir=tmp_path / "data", llm=LLMSettings(), index=SlowIndex)  # type: ignore[arg-type]
    said = [ChatMessage(role="user", content="my router is red")]
    write = asyncio.create_task(store.remember("cus_1", said, provenance=provenance(), infer=False))
    while not started.is_set():
        await asyncio.sleep(0.01)
    write.cancel()  # the lane is cancelled; the thread goes on
    await store.aclose()
    assert events == ["inserted", "closed"]
    with pytest.raises(MemoryUnavailable):
        await store.list("cus_1")
