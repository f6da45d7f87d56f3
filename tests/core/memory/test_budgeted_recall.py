"""Recall as the agent does it: hybrid ranking in the local backend, the memory block's token budget,
scoping per customer, and the assurance gate kept."""

from __future__ import annotations

import builtins
from collections.abc import AsyncIterator, Collection
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from core.agent.agent import MAX_CANDIDATES, Agent, AgentTurn, candidates_for
from core.agent.prompt import (
    CHARS_PER_TOKEN,
    estimate_tokens,
    fit_memories,
    memory_block,
    memory_header,
    memory_line,
)
from core.errors import MemoryUnavailable
from core.memory.local import LocalMemory
from core.messages import Assurance, ChatMessage, MemoryRecord
from core.settings import LLMSettings, MemorySettings
from tests.core.memory.helpers import provenance

USER = "cust-a"
OTHER = "cust-b"


def said(text: str) -> list[ChatMessage]:
    return [ChatMessage(role="user", content=text)]


@pytest.fixture
async def memory(tmp_path: Path) -> AsyncIterator[LocalMemory]:
    store = LocalMemory(data_dir=tmp_path / "data", llm=LLMSettings())
    yield store
    await store.aclose()


def record(n: int, text: str, *, handle: str = "sms:+15550001111") -> MemoryRecord:
    return MemoryRecord(
        id=f"m{n}",
        text=text,
        channel=handle.split(":", 1)[0],
        handle=handle,
        created_at=datetime(2026, 1, 5, tzinfo=UTC),
    )


# ----- the local backend's ranking, with the real embedder ------------------------------------------


def spread_out(memory: LocalMemory, customer_id: str) -> None:
    """Make every memory of the customer a conversation of its own (a day apart), oldest first as written."""
    store = memory._backend().index
    for day, hit in enumerate(reversed(store.list({"user_id": customer_id})), start=1):
        store.update(hit.id, payload={**hit.payload, "created_at": f"2026-01-{day:02d}T10:00:00+00:00"})


async def test_hybrid_recall_finds_the_exact_keyword_and_the_paraphrase(memory: LocalMemory) -> None:
    for text in (
        "I love pizza with olives",
        "my order number is ZX4471",
        "the router lost wifi again last night",
        "the parcel never showed up at my door",
        "please change my billing address",
        "my daughter starts school in the autumn",
    ):
        await memory.remember(USER, said(text), provenance=provenance(), infer=False)
    spread_out(memory, USER)
    # "ZX4471" means nothing to the embedder; "package ... not delivered" shares no word with "parcel"
    found = await memory.recall(USER, "ZX4471 package not delivered", limit=2)
    assert {r.text for r in found} == {"my order number is ZX4471", "the parcel never showed up at my door"}
    assert all(r.score is not None and r.score > 0 for r in found)
    # stemming: "painting" finds "painted"
    await memory.remember(USER, said("we painted the kitchen green"), provenance=provenance(), infer=False)
    [top] = await memory.recall(USER, "painting", limit=1)
    assert top.text == "we painted the kitchen green"


async def test_hybrid_recall_never_crosses_customers(memory: LocalMemory) -> None:
    await memory.remember(OTHER, said("my order number is ZX4471"), provenance=provenance(), infer=False)
    await memory.remember(USER, said("the router lost wifi"), provenance=provenance(), infer=False)
    found = await memory.recall(USER, "order ZX4471", limit=10)
    assert all("ZX4471" not in r.text for r in found)
    assert {r.text for r in await memory.recall(USER, "router wifi", limit=10)} == {"the router lost wifi"}
    assert [r.text for r in await memory.recall(OTHER, "order ZX4471", limit=10)] == [
        "my order number is ZX4471"
    ]
    assert await memory.recall("cust-nobody", "order ZX4471", limit=10) == []


async def test_recall_keeps_provenance_and_leaves_out_expired_memories(memory: LocalMemory) -> None:
    origin = provenance(turn_ids=(11, 12), channel="telegram", category="profile")
    [kept] = await memory.remember(USER, said("my router keeps dropping"), provenance=origin, infer=False)
    [gone] = await memory.remember(USER, said("router promo until May"), provenance=origin, infer=False)
    store = memory._backend().index
    hit = store.get(gone)
    assert hit is not None
    store.update(gone, payload={**hit.payload, "expiration_date": "2020-01-01"})
    found = await memory.recall(USER, "router", limit=10)
    assert [r.id for r in found] == [kept]
    assert found[0].message_ids == ("inbox:11", "inbox:12") and found[0].metadata == origin.as_metadata()


async def test_recall_goes_past_more_expired_memories_than_it_first_sorts(memory: LocalMemory) -> None:
    """Recall sorts the best twice over the limit first; when expired memories use them all up, the
    next in the whole order come back, as they rank there."""
    texts = [f"router problem number {n}: the {word} light blinks" for n, word in enumerate("abcdefghijkl")]
    ids = [
        (await memory.remember(USER, said(text), provenance=provenance(turn_ids=(n,)), infer=False))[0]
        for n, text in enumerate(texts)
    ]
    whole = [r.id for r in await memory.recall(USER, "router light blinks", limit=len(ids))]
    assert sorted(whole) == sorted(ids)
    store = memory._backend().index
    for memory_id in whole[:9]:  # more than twice the limit below
        hit = store.get(memory_id)
        assert hit is not None
        store.update(memory_id, payload={**hit.payload, "expiration_date": "2020-01-01"})
    found = await memory.recall(USER, "router light blinks", limit=2)
    assert [r.id for r in found] == whole[9:11]
    assert [r.id for r in await memory.recall(USER, "router light blinks", limit=5)] == whole[9:]


# ----- the budget ---------------------------------------------------------------------------------


def test_fit_memories_stays_within_the_budget_in_rank_order() -> None:
    memories = [record(i, f"memory number {i} " + "x" * (20 * (i % 3))) for i in range(40)]
    for budget in (20, 50, 100, 333, 1000):
        chosen = fit_memories(memories, budget)
        assert chosen, budget
        assert estimate_tokens(memory_block(chosen)) <= budget
        assert chosen == memories[: len(chosen)]  # the best ones, in order
        one_more = memories[: len(chosen) + 1]
        assert len(chosen) == len(memories) or estimate_tokens(memory_block(one_more)) > budget
    huge = record(99, "y" * 400)
    small = record(100, "short")
    assert fit_memories([small, huge], 40) == [small]
    assert fit_memories([huge, small], 40) == []  # a lower-ranked memory never takes a better one's place
    assert fit_memories(memories, 0) == []
    line = memory_line(small)
    header = memory_header(small)
    assert memory_block([small]) == f"<customer_memory>\n{header}\n{line}\n</customer_memory>"
    assert CHARS_PER_TOKEN == 4


def test_candidates_for_a_budget() -> None:
    assert candidates_for(0, 8) == 8
    assert candidates_for(1000, 8) == 125
    assert candidates_for(40, 8) == 8
    assert candidates_for(10**6, 8) == MAX_CANDIDATES


class ListedMemory:
    """A memory store that answers recall with a fixed list (best first), and records the limits asked."""

    def __init__(self, records: list[MemoryRecord], *, down: bool = False) -> None:
        self.records = records
        self.limits: list[int] = []
        self.down = down

    async def recall(self, customer_id: str, query: str, *, limit: int) -> list[MemoryRecord]:
        self.limits.append(limit)
        if self.down:
            raise MemoryUnavailable("down")
        return self.records[:limit]

    async def list(self, customer_id: str) -> list[MemoryRecord]:
        return list(self.records)

    async def remember(self, *args: Any, **kwargs: Any) -> list[str]:  # pragma: no cover - unused
        return []

    async def covers_turns(self, customer_id: str, turn_ids: builtins.list[int]) -> bool:  # pragma: no cover
        return False

    async def forget(self, customer_id: str) -> int:  # pragma: no cover - unused
        return 0

    async def move(  # pragma: no cover - unused
        self, from_customer: str, to_customer: str, *, handles: Collection[str] | None = None
    ) -> builtins.list[str]:
        return []

    async def aclose(self) -> None:  # pragma: no cover - unused
        return None


def agent_with(store: ListedMemory, **settings: Any) -> Agent:
    return Agent(memory=store, conversation=None, model=None, settings=MemorySettings(**settings))  # type: ignore[arg-type]


def turn(assurance: Assurance = Assurance.ADMIN_LINKED, sender: str = "sms:+15550001111") -> AgentTurn:
    return AgentTurn(
        customer_id=USER, assurance=assurance, sender=sender, channel="sms", text="router?", inbox_id=1
    )


async def test_the_agent_fills_the_memory_block_up_to_the_budget() -> None:
    records = [record(i, f"the customer said thing number {i}, with some more words") for i in range(300)]
    store = ListedMemory(records)
    agent = agent_with(store)  # default budget: memory.context_tokens
    chosen = await agent.recall(turn())
    default_budget = MemorySettings().context_tokens
    assert estimate_tokens(memory_block(chosen)) <= default_budget
    assert len(chosen) > MemorySettings().recall_limit  # the budget, not the old count, governs
    assert [m.id for m in chosen] == [f"m{i}" for i in range(len(chosen))]  # best first, none skipped
    assert estimate_tokens(memory_block(records[: len(chosen) + 1])) > default_budget  # it is full
    for budget in (100, 500, 2000):
        chosen = await agent.recall(turn(), budget_tokens=budget)
        assert chosen and estimate_tokens(memory_block(chosen)) <= budget
    assert store.limits[-1] == candidates_for(2000, MemorySettings().recall_limit)


async def test_without_a_budget_the_recall_limit_counts() -> None:
    store = ListedMemory([record(i, f"memory {i}") for i in range(50)])
    chosen = await agent_with(store, context_tokens=0, recall_limit=5).recall(turn())
    assert [m.id for m in chosen] == ["m0", "m1", "m2", "m3", "m4"]


async def test_an_unverified_sender_still_sees_its_own_handle_only() -> None:
    mine, theirs = "email:ana@example.com", "sms:+15550001111"
    records = [record(i, f"memory {i}", handle=mine if i % 3 == 0 else theirs) for i in range(60)]
    store = ListedMemory(records)
    chosen = await agent_with(store).recall(turn(Assurance.UNVERIFIED, sender=mine), budget_tokens=200)
    assert chosen and all(m.handle == mine for m in chosen)
    assert estimate_tokens(memory_block(chosen)) <= 200
    assert store.limits == [4 * candidates_for(200, MemorySettings().recall_limit)]


async def test_a_memory_outage_recalls_nothing() -> None:
    assert await agent_with(ListedMemory([], down=True)).recall(turn()) == []


def test_the_block_groups_memories_under_one_header_per_day_and_channel() -> None:
    may_1, may_2 = datetime(2026, 5, 1, 9, tzinfo=UTC), datetime(2026, 5, 2, 9, tzinfo=UTC)

    def said(n: int, text: str, channel: str, at: datetime | None) -> MemoryRecord:
        return MemoryRecord(id=f"g{n}", text=text, channel=channel, handle=f"{channel}:x", created_at=at)

    ranked = [
        said(1, "wants the blue one", "email", may_2),
        said(2, "ordered a lamp", "sms", may_1 + timedelta(minutes=2)),
        said(3, "asked about lamps", "sms", may_1),
        said(4, "no time", "sms", None),
    ]
    block = memory_block(ranked)
    assert block.splitlines() == [
        "<customer_memory>",
        "earlier, via sms:",
        "- no time",
        "2026-05-01, via sms:",  # oldest first, the date and channel once for the group
        "- asked about lamps",
        "- ordered a lamp",
        "2026-05-02, via email:",
        "- wants the blue one",
        "</customer_memory>",
    ]
    # the budget counts a header once: 30 memories of one day and channel fit where per-line headers did not
    same_day = [said(10 + i, f"memory {i:02d} " + "x" * 40, "sms", may_1) for i in range(30)]
    budget = estimate_tokens(memory_block(same_day))
    assert fit_memories(same_day, budget) == same_day
    assert fit_memories(same_day, budget - 1) == same_day[:29]
    assert budget * CHARS_PER_TOKEN < sum(
        len(memory_line(m)) + len("2026-05-01, via sms: ") for m in same_day
    )
