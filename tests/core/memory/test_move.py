"""``MemoryStore.move``: both backends (hosted Mem0 through the fake), then what only one of them has."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from core.errors import MemoryUnavailable
from core.memory.local import LocalMemory
from core.memory.platform import PlatformMemory
from core.messages import ChatMessage, MemoryRecord, Provenance
from core.ports import MemoryStore
from core.settings import LLMSettings
from tests.fakes.mem0_platform import FakeMem0Platform

A = "cust-a"
B = "cust-b"
SMS = "sms:+15551230000"
TELEGRAM = "telegram:42"
CANARY = "zqcanary9d41movedaway"


def origin(handle: str, *turn_ids: int) -> Provenance:
    return Provenance(
        channel=handle.split(":", 1)[0],
        handle=handle,
        message_ids=tuple(f"inbox:{t}" for t in turn_ids),
        category="support_history",
        turn_ids=turn_ids,
    )


def said(text: str) -> list[ChatMessage]:
    return [ChatMessage(role="user", content=text)]


def provenance_of(record: MemoryRecord) -> dict[str, Any]:
    """The metadata a memory was stored with (a hosted copy also says where it was moved from)."""
    return {k: v for k, v in record.metadata.items() if k != "moved_from"}


@dataclass
class Backend:
    memory: MemoryStore
    fake: FakeMem0Platform | None = None

    async def keyword_hits(self, customer_id: str, query: str) -> list[str]:
        """Texts a keyword search finds for the customer (local: the FTS index; hosted: its search)."""
        if isinstance(self.memory, LocalMemory):
            store = self.memory._backend().index
            return [
                str(h.payload.get("data")) for h in store.keyword_search(query, 10, {"user_id": customer_id})
            ]
        # hosted Mem0 has no keyword index of its own to ask: its search results that contain a query word
        words = {w.lower() for w in query.split()}
        found = await self.memory.recall(customer_id, query, limit=10)
        return [r.text for r in found if words & {w.lower() for w in r.text.split()}]


@pytest.fixture
def fake() -> Iterator[FakeMem0Platform]:
    with FakeMem0Platform(api_key="m0-move-key") as server:
        yield server


@pytest.fixture(params=["local", "platform"])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    if request.param == "local":
        local = LocalMemory(data_dir=tmp_path / "data", llm=LLMSettings())
        yield Backend(memory=local)
        await local.aclose()
        return
    with FakeMem0Platform(api_key="m0-move-key") as server:
        hosted = PlatformMemory(
            api_key=SecretStr(server.api_key), host=server.url, data_dir=tmp_path, timeout=10
        )
        yield Backend(memory=hosted, fake=server)
        await hosted.aclose()


async def seed(memory: MemoryStore) -> dict[str, Provenance]:
    """A: two SMS memories and one Telegram memory; B: one of its own. Text -> provenance."""
    written = {
        "my router keeps dropping the wifi": origin(SMS, 1),
        "I was billed twice for the router rental": origin(SMS, 2),
        "please write to me on telegram after 6pm": origin(TELEGRAM, 3),
    }
    for text, where in written.items():
        await memory.remember(A, said(text), provenance=where, infer=False)
    await memory.remember(
        B, said("B prefers email for invoices"), provenance=origin("email:b@example.com", 9), infer=False
    )
    return written


async def test_move_everything(backend: Backend) -> None:
    memory = backend.memory
    written = await seed(memory)
    before = {r.id: r for r in await memory.list(A)}

    moved = await memory.move(A, B)

    assert len(moved) == 3
    assert await memory.list(A) == []
    assert await memory.recall(A, "router wifi billed telegram", limit=10) == []
    assert not await memory.covers_turns(A, [1, 2, 3])
    listed = {r.id: r for r in await memory.list(B)}
    assert set(moved) <= set(listed)
    assert {listed[i].text for i in moved} == set(written)
    for i in moved:
        assert provenance_of(listed[i]) == written[listed[i].text].as_metadata()
    assert {r.text for r in listed.values()} == {*written, "B prefers email for invoices"}
    assert await memory.covers_turns(B, [2]) and await memory.covers_turns(B, [9])
    found = await memory.recall(B, "router wifi dropping", limit=1)
    assert [r.text for r in found] == ["my router keeps dropping the wifi"]
    assert (found[0].channel, found[0].handle, found[0].turn_ids) == ("sms", SMS, (1,))
    assert found[0].message_ids == ("inbox:1",)
    if isinstance(memory, LocalMemory):
        assert set(moved) == set(before)  # the same memories, not copies
        assert {listed[i].created_at for i in moved} == {r.created_at for r in before.values()}


async def test_move_one_handle_leaves_the_others(backend: Backend) -> None:
    memory = backend.memory
    written = await seed(memory)

    moved = await memory.move(A, B, handles=[SMS])

    assert len(moved) == 2
    remaining = await memory.list(A)
    assert [(r.text, r.handle) for r in remaining] == [("please write to me on telegram after 6pm", TELEGRAM)]
    assert provenance_of(remaining[0]) == written[remaining[0].text].as_metadata()
    assert not await memory.covers_turns(A, [1, 2])
    assert await memory.covers_turns(A, [3])
    recalled = [r.text for r in await memory.recall(A, "router wifi billed, write on telegram", limit=10)]
    assert recalled == ["please write to me on telegram after 6pm"]
    assert await backend.keyword_hits(A, "router") == []
    assert await memory.covers_turns(B, [1, 2]) and not await memory.covers_turns(B, [3])
    sms_of_b = sorted(r.text for r in await memory.list(B) if r.handle == SMS)
    assert sms_of_b == ["I was billed twice for the router rental", "my router keeps dropping the wifi"]
    assert {r.id for r in await memory.list(B) if r.handle == SMS} == set(moved)


async def test_a_re_run_moves_nothing_twice(backend: Backend) -> None:
    memory = backend.memory
    await seed(memory)
    first = await memory.move(A, B, handles=(SMS,))
    assert await memory.move(A, B, handles=(SMS,)) == []
    assert len(await memory.list(B)) == 3
    rest = await memory.move(A, B)
    assert len(rest) == 1 and not set(rest) & set(first)
    assert await memory.move(A, B) == []
    assert await memory.list(A) == []
    assert len(await memory.list(B)) == 4
    assert len({r.text for r in await memory.list(B)}) == 4


async def test_moving_to_the_same_customer_or_no_handle_is_a_no_op(backend: Backend) -> None:
    memory = backend.memory
    await seed(memory)
    before = sorted((r.id, r.text) for r in await memory.list(A))
    assert await memory.move(A, A) == []
    assert await memory.move(A, A, handles=[SMS]) == []
    assert await memory.move(A, B, handles=[]) == []
    assert await memory.move(A, B, handles=["slack:T1:U1"]) == []
    assert await memory.move("cust-nobody", B) == []
    assert sorted((r.id, r.text) for r in await memory.list(A)) == before
    with pytest.raises(TypeError):
        await memory.move(A, B, handles=SMS)
    if backend.fake is not None:
        assert not [
            r
            for r in backend.fake.requests
            if r["path"].startswith("/v1/memories/") and r["method"] == "DELETE"
        ]


async def test_a_moved_canary_is_gone_from_a_even_for_keyword_search(backend: Backend) -> None:
    memory = backend.memory
    await seed(memory)
    await memory.remember(A, said(f"my code word is {CANARY}"), provenance=origin(TELEGRAM, 7), infer=False)
    assert await backend.keyword_hits(A, CANARY) == [f"my code word is {CANARY}"]

    moved = await memory.move(A, B, handles={TELEGRAM})

    assert len(moved) == 2
    assert await backend.keyword_hits(A, CANARY) == []
    # recall may still rank A's own SMS memories (dense scores are never zero); none of them is the canary
    assert not any(CANARY in r.text for r in await memory.recall(A, f"code word {CANARY}", limit=10))
    assert not any(CANARY in r.text for r in await memory.list(A))
    assert not await memory.covers_turns(A, [7])
    assert await backend.keyword_hits(B, CANARY) == [f"my code word is {CANARY}"]
    assert [r.text for r in await memory.recall(B, f"code word {CANARY}", limit=1)] == [
        f"my code word is {CANARY}"
    ]
    if backend.fake is not None:
        assert [m.scope for m in backend.fake.memories if CANARY in m.memory] == [{"user_id": B}]


# ----- hosted only -----------------------------------------------------------------------------


@pytest.fixture
async def hosted(fake: FakeMem0Platform, tmp_path: Path) -> AsyncIterator[PlatformMemory]:
    store = PlatformMemory(api_key=SecretStr(fake.api_key), host=fake.url, data_dir=tmp_path, timeout=10)
    store.move_waits = (0.0, 0.01)
    yield store
    await store.aclose()


def adds(fake: FakeMem0Platform) -> list[dict[str, Any]]:
    return [r["json"] for r in fake.requests if r["path"] == "/v3/memories/add/"]


async def test_hosted_copies_carry_the_original_id_and_time(
    fake: FakeMem0Platform, hosted: PlatformMemory
) -> None:
    await hosted.remember(A, said("the modem is blinking red"), provenance=origin(SMS, 5), infer=False)
    (original,) = await hosted.list(A)
    (copy_id,) = await hosted.move(A, B)
    (copy,) = await hosted.list(B)
    assert copy.id == copy_id != original.id
    assert copy.metadata == {**original.metadata, "moved_from": original.id}
    assert copy.created_at is not None and original.created_at is not None
    assert int(copy.created_at.timestamp()) == int(original.created_at.timestamp())
    body = adds(fake)[-1]
    assert body["infer"] is False and body["user_id"] == B


async def test_hosted_move_waits_for_queued_copies_and_a_re_run_finishes(
    fake: FakeMem0Platform, hosted: PlatformMemory
) -> None:
    await seed(hosted)
    fake.hold_adds = True
    assert await hosted.move(A, B, handles=[SMS]) == []  # copies still queued: the originals stay
    assert len(await hosted.list(A)) == 3
    assert await hosted.move(A, B, handles=[SMS]) == []  # still queued: a second copy is asked for
    fake.hold_adds = False
    fake.release_adds()
    assert len([m for m in fake.memories if m.scope == {"user_id": B}]) == 5  # B's own, 2 x 2 copies

    moved = await hosted.move(A, B, handles=[SMS])

    assert len(moved) == 2
    assert [r.handle for r in await hosted.list(A)] == [TELEGRAM]
    in_b = await hosted.list(B)
    assert len(in_b) == 3  # the duplicate copies are gone
    assert {r.id for r in in_b if r.handle == SMS} == set(moved)
    assert len(adds(fake)) == 4 + 4  # the seed, then two copies on each of the first two runs


async def test_hosted_move_interrupted_after_the_copies_is_finished_by_a_re_run(
    fake: FakeMem0Platform, hosted: PlatformMemory
) -> None:
    await seed(hosted)
    first, second = sorted(r.id for r in await hosted.list(A) if r.handle == SMS)
    fake.push(500, path=f"/v1/memories/{second}/")
    with pytest.raises(MemoryUnavailable):
        await hosted.move(A, B, handles=[SMS])
    assert {r.id for r in await hosted.list(A) if r.handle == SMS} <= {first, second}
    copies_made = len(adds(fake))

    moved = await hosted.move(A, B, handles=[SMS])

    assert len(adds(fake)) == copies_made  # no copy made twice
    assert [r.handle for r in await hosted.list(A)] == [TELEGRAM]
    assert len([r for r in await hosted.list(B) if r.handle == SMS]) == 2
    assert len(moved) >= 1
