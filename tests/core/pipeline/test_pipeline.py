"""The durable pipeline end to end in one process: inbox → worker → agent (real Mem0 + fake LLM) → outbox.

The channel is a recording sender standing in for a platform adapter; the LLM is the fake
OpenAI-compatible server reached over HTTP by the real ``openai`` client; memory is the real local
Mem0 backend in a temporary data dir.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from core.errors import PermanentDeliveryError, TransientDeliveryError
from core.messages import Address, InboundMessage
from core.pipeline.handoff import FALLBACK_OPENING
from core.pipeline.worker import FALLBACK_REPLY
from core.settings import MemorySettings
from core.store.models import Handoff, InboxRow, MemoryJob, OutboxRow, Turn
from tests.core.harness import make_settings, running_hub
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.recording import RecordingSender
from tests.messages import telegram_message


def tg(user: int, update: int, text: str) -> InboundMessage:
    return telegram_message(update, text, user)


def user_texts(fake: FakeOpenAI) -> list[str]:
    """The last user message of every chat call the fake received, in arrival order."""
    texts = []
    for call in fake.calls:
        if call.get("response_format"):  # Mem0's fact extraction, not a reply
            continue
        texts.append(next(m["content"] for m in reversed(call["messages"]) if m["role"] == "user"))
    return texts


async def test_one_reply_per_message_and_duplicates_are_no_ops(tmp_path: Path) -> None:
    sender = RecordingSender("telegram")
    with FakeOpenAI() as fake:
        async with running_hub(make_settings(tmp_path, llm_url=fake.base_url), sender) as hub:
            first = await hub.accept(tg(42, 1, "my router keeps dropping the wifi"))
            repeat = await hub.accept(tg(42, 1, "my router keeps dropping the wifi"))
            assert repeat.duplicate and repeat.inbox_id == first.inbox_id
            await sender.wait_for(1)
            assert (await hub.wait_idle(timeout=30)) == {"inbox": 0, "outbox": 0, "memory": 0}
            await hub.accept(tg(42, 1, "my router keeps dropping the wifi"))  # a late platform retry
            await hub.wait_idle(timeout=30)
            assert len(sender.sent) == 1
            assert sender.sent[0].idempotency_key == f"reply:{first.inbox_id}"
            assert sender.sent[0].text.startswith("echo: [via telegram] my router")
            assert sender.sent[0].reply_target == {"chat_id": 42}
            assert len(user_texts(fake)) == 1
            async with hub.db.session() as session:
                assert await session.scalar(select(func.count()).select_from(OutboxRow)) == 1
                roles = list(await session.scalars(select(Turn.role).order_by(Turn.id)))
            assert roles == ["customer", "assistant"]


async def test_one_customer_in_order_many_customers_at_once(tmp_path: Path) -> None:
    """The fake holds each call; 20 customers overlap (bounded), one customer's 5 messages do not."""
    sender = RecordingSender("telegram")
    with FakeOpenAI(delay=2.0) as fake:
        settings = make_settings(tmp_path, llm_url=fake.base_url, concurrency=8)
        # memory writes wait for a quiet conversation, so every call the fake sees here is a reply
        quiet = MemorySettings(write_policy="summary", quiet_seconds=600)
        settings = settings.model_copy(update={"memory": quiet})
        async with running_hub(settings, sender) as hub:
            for user in range(100, 120):
                await hub.accept(tg(user, user, f"hello from {user}"))
            await sender.wait_for(20, timeout=60)
            many = fake.max_in_flight
            fake.reset()
            fake.delay = 0.3
            for n in range(5):
                await hub.accept(tg(7, 1000 + n, f"message {n}"))
            await sender.wait_for(25, timeout=60)
            await hub.wait_idle(timeout=30)
            one = fake.max_in_flight
    assert 2 <= many <= 8, f"20 customers should overlap up to the concurrency bound, saw {many}"
    assert one == 1, f"one customer's messages must be answered one at a time, saw {one} in flight"
    assert [t for t in user_texts(fake)] == [f"[via telegram] message {n}" for n in range(5)]
    assert sender.texts_to("telegram:7") == [f"echo: [via telegram] message {n}" for n in range(5)]


async def test_offline_mode_remembers_across_restarts_and_scopes_by_customer(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    sender = RecordingSender("telegram")
    async with running_hub(settings, sender) as hub:
        assert hub.model is None
        await hub.accept(tg(42, 1, "my router keeps dropping the wifi"))
        await sender.wait_for(1)
        await hub.wait_idle(timeout=30)
    assert "Offline mode" in sender.sent[0].text

    sender = RecordingSender("telegram")
    async with running_hub(settings, sender) as hub:  # a new process, the same data dir
        await hub.accept(tg(42, 2, "what was the problem with my internet?"))
        await hub.accept(tg(43, 3, "what was the problem with my internet?"))
        await sender.wait_for(2)
        await hub.wait_idle(timeout=30)
        customer_42 = (await hub.resolver.resolve(Address(channel="telegram", handle="42"))).customer_id
        memories = await hub.memory.list(customer_42)
    [mine] = sender.texts_to("telegram:42")
    [theirs] = sender.texts_to("telegram:43")
    assert "router keeps dropping the wifi" in mine
    assert "router" not in theirs
    texts = sorted(m.text for m in memories)
    assert texts == ["my router keeps dropping the wifi", "what was the problem with my internet?"]
    first = next(m for m in memories if "router" in m.text)
    assert first.channel == "telegram" and first.handle == "telegram:42"
    assert first.message_ids == ("inbox:1",)
    assert first.category == "support_history"


async def test_memory_and_recent_turns_reach_the_prompt_fenced_as_data(tmp_path: Path) -> None:
    sender = RecordingSender("telegram")
    with FakeOpenAI() as fake:
        async with running_hub(make_settings(tmp_path, llm_url=fake.base_url), sender) as hub:
            await hub.accept(tg(42, 1, "my router keeps dropping the wifi"))
            await sender.wait_for(1)
            await hub.wait_idle(timeout=30)
            await hub.accept(tg(42, 2, "is the router issue fixed?"))
            await hub.accept(tg(43, 3, "is the router issue fixed?"))
            await sender.wait_for(3)
            await hub.wait_idle(timeout=30)
    replies = [c for c in fake.calls if not c.get("response_format")]
    by_user = {next(m["content"] for m in reversed(c["messages"]) if m["role"] == "user"): c for c in replies}
    assert len(replies) == 3
    second = [c for c in replies if c is not replies[0]]
    prompt_42 = next(c for c in second if c["messages"][-2]["role"] == "assistant")
    prompt_43 = next(c for c in second if c is not prompt_42)
    fence_42 = prompt_42["messages"][1]["content"]
    assert fence_42.startswith("<customer_memory>") and fence_42.endswith("</customer_memory>")
    assert "router keeps dropping the wifi" in fence_42
    assert any("router keeps dropping" in m["content"] for m in prompt_42["messages"][2:-1])
    joined_43 = " ".join(m["content"] for m in prompt_43["messages"][:-1])
    assert "dropping the wifi" not in joined_43
    assert by_user


async def test_llm_failures_are_retried_then_answered_with_the_fallback(tmp_path: Path) -> None:
    sender = RecordingSender("telegram")
    with FakeOpenAI() as fake:
        fake.push(500, times=2)
        settings = make_settings(tmp_path, llm_url=fake.base_url, max_attempts=3)
        async with running_hub(settings, sender) as hub:
            await hub.accept(tg(42, 1, "hello"))
            await sender.wait_for(1)
            assert sender.sent[0].text == "echo: [via telegram] hello"  # third attempt succeeded
            fake.push(500, times=10)
            await hub.accept(tg(42, 2, "hello again"))
            await sender.wait_for(2)
            await hub.wait_idle(timeout=30)
            # the fallback promises a person, and the handoff it promises is queued (issue 14)
            assert sender.sent[1].text.startswith(FALLBACK_OPENING)
            assert "a person from our team" in sender.sent[1].text
            async with hub.db.session() as session:
                row = await session.scalar(select(InboxRow).where(InboxRow.provider_message_id == "2"))
                handoffs = list(await session.scalars(select(Handoff)))
            assert row is not None and row.status == "done" and row.attempts == 2
            assert [(h.status, h.requested_by, h.inbox_id) for h in handoffs] == [
                ("waiting", "fallback", row.id)
            ]


def test_the_bare_fallback_reply_promises_no_person() -> None:
    """A worker without the handoff service (built bare) queues no handoff: its fallback promises none."""
    words = FALLBACK_REPLY.lower()
    assert not any(promise in words for promise in ("person", "team", "follow up", "agent", "human"))
    assert "saved" in words  # what is true: the message is kept


async def test_delivery_retries_transient_errors_and_stops_on_permanent_ones(tmp_path: Path) -> None:
    sender = RecordingSender("telegram")
    sender.fail_next(TransientDeliveryError("503"), TransientDeliveryError("429", retry_after=0.2))
    async with running_hub(make_settings(tmp_path), sender) as hub:
        await hub.accept(tg(42, 1, "hello"))
        await sender.wait_for(1)
        assert len(sender.attempts) == 3
        sender.fail_next(PermanentDeliveryError("blocked by user"))
        await hub.accept(tg(42, 2, "hello again"))
        await hub.wait_idle(timeout=30)
        await asyncio.sleep(0.3)  # several poll intervals: a failed row must not be tried again
        assert len(sender.attempts) == 4 and len(sender.sent) == 1
        async with hub.db.session() as session:
            statuses = list(await session.scalars(select(OutboxRow.status).order_by(OutboxRow.id)))
        assert statuses == ["sent", "failed"]


async def test_memory_outage_queues_the_write_until_it_is_back(tmp_path: Path) -> None:
    from core.errors import MemoryUnavailable

    sender = RecordingSender("telegram")
    async with running_hub(make_settings(tmp_path), sender) as hub:
        real: Callable[..., Any] = hub.memory.remember
        outage = {"left": 2}

        async def flaky(*args: Any, **kwargs: Any) -> Any:
            if outage["left"]:
                outage["left"] -= 1
                raise MemoryUnavailable("down")
            return await real(*args, **kwargs)

        hub.memory.remember = flaky  # type: ignore[method-assign]
        await hub.accept(tg(42, 1, "my router keeps dropping the wifi"))
        await sender.wait_for(1)  # the reply does not wait for memory
        for _ in range(200):  # the job backs off twice, then is written
            async with hub.db.session() as session:
                if await session.scalar(select(MemoryJob.status)) == "done":
                    break
            await asyncio.sleep(0.05)
        customer = (await hub.resolver.resolve(Address(channel="telegram", handle="42"))).customer_id
        assert [m.text for m in await hub.memory.list(customer)] == ["my router keeps dropping the wifi"]
        async with hub.db.session() as session:
            job = await session.scalar(select(MemoryJob))
        assert job is not None and job.status == "done" and job.attempts == 2


@pytest.mark.parametrize("policy", ["summary"])
async def test_summary_policy_writes_once_when_the_conversation_goes_quiet(
    tmp_path: Path, policy: str
) -> None:
    settings = make_settings(tmp_path)
    # quiet long enough that a loaded machine answers both messages well within it
    settings = settings.model_copy(update={"memory": MemorySettings(write_policy=policy, quiet_seconds=3)})
    sender = RecordingSender("telegram")
    async with running_hub(settings, sender) as hub:
        await hub.accept(tg(42, 1, "my router keeps dropping the wifi"))
        await hub.accept(tg(42, 2, "it started after the storm"))
        await sender.wait_for(2)
        customer = (await hub.resolver.resolve(Address(channel="telegram", handle="42"))).customer_id
        assert await hub.memory.list(customer) == []  # not yet quiet
        for _ in range(300):  # until the quiet period has passed and the summary is written
            if await hub.memory.list(customer):
                break
            await asyncio.sleep(0.1)
        await hub.wait_idle(timeout=30)
        [memory] = await hub.memory.list(customer)
    assert memory.text == "my router keeps dropping the wifi\nit started after the storm"
    assert memory.message_ids == ("inbox:1", "inbox:2")
