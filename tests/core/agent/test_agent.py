"""The agent offers the LLM its handoff tool (``request_human``) and says when the model called it; the prompt
shows what a person of the support team said as the team's.

The agent runs over a real database (the conversation log) with an empty memory; its model is either a
recording ``ChatModel`` that answers a scripted ``Completion``, or the real ``OpenAIChatModel`` against the
fake OpenAI server over HTTP.
"""

from __future__ import annotations

import builtins
import logging
from collections.abc import AsyncIterator, Collection, Sequence
from datetime import datetime
from pathlib import Path

import pytest
from pydantic import SecretStr

from core.agent.agent import Agent, AgentTurn
from core.agent.conversation import ConversationLog, LoggedTurn
from core.agent.llm import OpenAIChatModel
from core.agent.prompt import (
    CASES_INSTRUCTION,
    HANDOFF_INSTRUCTION,
    HANDOFF_TOOL,
    OPEN_CASE_TOOL,
    RESOLVE_CASE_TOOL,
    SYSTEM_PROMPT,
    build_messages,
)
from core.messages import Assurance, ChatMessage, Completion, MemoryRecord, Provenance, Tool, ToolCall
from core.ports import ChatModel
from core.settings import LLMSettings, MemorySettings
from core.store.db import Database
from core.store.models import Turn, utcnow
from tests.fakes.openai_server import FakeOpenAI, ToolTrigger, restating_responder

CARD = "4111 1111 1111 1111"


class EmptyMemory:
    """A memory store that holds nothing (the agent only recalls)."""

    async def recall(self, customer_id: str, query: str, *, limit: int) -> builtins.list[MemoryRecord]:
        return []

    async def list(self, customer_id: str) -> builtins.list[MemoryRecord]:
        return []

    async def remember(
        self, customer_id: str, messages: builtins.list[ChatMessage], *, provenance: Provenance, infer: bool
    ) -> builtins.list[str]:
        raise AssertionError("the agent never writes memory")

    async def covers_turns(self, customer_id: str, turn_ids: builtins.list[int]) -> bool:
        return False

    async def forget(self, customer_id: str) -> int:
        return 0

    async def forget_before(self, customer_id: str, cutoff: datetime) -> int:
        return 0

    async def supersede(self, customer_id: str, memory_ids: builtins.list[str]) -> int:
        return 0

    async def move(
        self, from_customer: str, to_customer: str, *, handles: Collection[str] | None = None
    ) -> builtins.list[str]:
        return []

    async def aclose(self) -> None:
        return None


class ScriptedModel:
    """A ``ChatModel`` that answers ``answer`` and records what it was given."""

    def __init__(self, answer: Completion) -> None:
        self.answer = answer
        self.seen: list[tuple[list[ChatMessage], tuple[Tool, ...]]] = []

    async def complete(self, messages: list[ChatMessage], *, tools: Sequence[Tool] = ()) -> Completion:
        self.seen.append((messages, tuple(tools)))
        return self.answer

    async def aclose(self) -> None:
        return None


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = await Database.open(f"sqlite+aiosqlite:///{tmp_path / 'agent.db'}")
    yield database
    await database.engine.dispose()


def agent_with(db: Database, model: ChatModel | None) -> Agent:
    return Agent(
        memory=EmptyMemory(), conversation=ConversationLog(db), model=model, settings=MemorySettings()
    )


def turn(text: str, *, private: bool = True, inbox_id: int = 10) -> AgentTurn:
    return AgentTurn(
        customer_id="cus_1",
        assurance=Assurance.VERIFIED,
        sender="telegram:42",
        channel="telegram",
        text=text,
        inbox_id=inbox_id,
        private=private,
    )


def test_scripted_model_is_a_chat_model() -> None:
    assert isinstance(ScriptedModel(Completion(text="x")), ChatModel)


async def test_the_handoff_tool_is_offered_in_a_private_conversation(db: Database) -> None:
    model = ScriptedModel(Completion(text="Your order ships tomorrow."))
    reply = await agent_with(db, model).respond(turn("where is my order?"))
    assert (reply.text, reply.handoff, reply.handoff_reason) == ("Your order ships tomorrow.", False, None)
    ((messages, tools),) = model.seen
    assert tools == (HANDOFF_TOOL, OPEN_CASE_TOOL, RESOLVE_CASE_TOOL)
    assert HANDOFF_TOOL.name == "request_human"
    assert HANDOFF_TOOL.parameters["properties"]["reason"]["type"] == "string"
    assert "refund decisions" in HANDOFF_TOOL.description and "account closure" in HANDOFF_TOOL.description
    assert messages[0].content == f"{SYSTEM_PROMPT}\n\n{HANDOFF_INSTRUCTION}\n\n{CASES_INSTRUCTION}"


async def test_no_tool_is_offered_in_a_group(db: Database) -> None:
    model = ScriptedModel(Completion(text="Hello all."))
    reply = await agent_with(db, model).respond(turn("a person please", private=False))
    assert reply.handoff is False
    ((messages, tools),) = model.seen
    assert tools == ()
    assert messages[0].content == SYSTEM_PROMPT  # the instructions name no tool it cannot call


async def test_a_call_to_the_tool_is_a_handoff_with_the_models_text(db: Database) -> None:
    call = ToolCall(name="request_human", arguments={"reason": f"  refund\n decision, card {CARD}  "})
    model = ScriptedModel(Completion(text="Let me get someone.", tool_calls=(call,)))
    reply = await agent_with(db, model).respond(turn("I want my money back NOW"))
    assert reply.handoff is True and reply.offline is False
    assert reply.text == "Let me get someone."
    assert reply.handoff_reason is not None
    assert reply.handoff_reason.startswith("refund decision, card ") and CARD not in reply.handoff_reason
    assert "refund" not in repr(reply)  # the model's words stay out of repr (and so out of logs)


async def test_a_call_without_text_or_reason_is_a_handoff(db: Database) -> None:
    model = ScriptedModel(Completion(text="", tool_calls=(ToolCall(name="request_human"),)))
    reply = await agent_with(db, model).respond(turn("close my account"))
    assert (reply.text, reply.handoff, reply.handoff_reason) == ("", True, None)


async def test_a_reason_that_is_not_text_is_none(db: Database) -> None:
    call = ToolCall(name="request_human", arguments={"reason": ["not", "text"]})
    reply = await agent_with(db, ScriptedModel(Completion(text="", tool_calls=(call,)))).respond(turn("x"))
    assert reply.handoff is True and reply.handoff_reason is None


async def test_a_long_reason_is_clipped(db: Database) -> None:
    call = ToolCall(name="request_human", arguments={"reason": "angry " * 100})
    reply = await agent_with(db, ScriptedModel(Completion(text="", tool_calls=(call,)))).respond(turn("x"))
    assert reply.handoff_reason is not None and len(reply.handoff_reason) <= 200


async def test_offline_never_hands_off(db: Database) -> None:
    reply = await agent_with(db, None).respond(turn("a person please"))
    assert reply.offline is True and reply.handoff is False


# ----- through the real SDK and the fake OpenAI server ------------------------------------------------


async def test_the_fake_server_triggers_the_tool_through_the_sdk(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    secret_reason = "zqx7reason-canary"
    trigger = ToolTrigger(phrase="speak to your manager", arguments={"reason": secret_reason})
    with FakeOpenAI(responder=restating_responder, tool_triggers=[trigger]) as fake:
        model = OpenAIChatModel(
            LLMSettings(api_key=SecretStr("sk-test"), base_url=fake.base_url, max_retries=0)
        )
        try:
            agent = agent_with(db, model)
            handed = await agent.respond(turn("I want to speak to your manager about the refund"))
            answered = await agent.respond(turn("where is my parcel?", inbox_id=11))
            grouped = await agent.respond(turn("speak to your manager", private=False, inbox_id=12))
        finally:
            await model.aclose()
        calls = fake.calls
    assert handed.handoff is True and handed.handoff_reason == secret_reason
    assert handed.text.startswith("I see: ")  # the hostile fake's text comes along; the worker replaces it
    assert answered.handoff is False and "where is my parcel?" in answered.text
    assert grouped.handoff is False  # a group's request offers no tool, so none is called
    assert [c["tools"][0]["function"]["name"] for c in calls[:2]] == ["request_human", "request_human"]
    assert "tools" not in calls[2]
    assert secret_reason not in caplog.text


# ----- the prompt: operator turns read as the team's ------------------------------------------------


def logged(turn_id: int, role: str, text: str, channel: str = "telegram") -> LoggedTurn:
    return LoggedTurn(
        id=turn_id,
        channel=channel,
        address=f"{channel}:42",
        role=role,
        text=text,
        created_at=utcnow(),
        inbox_id=None,
    )


def test_an_operator_turn_reads_as_the_support_teams() -> None:
    recent = [
        logged(1, "customer", "my card was charged twice"),
        logged(2, "assistant", "Let me get a person for you."),
        logged(3, "operator", f"Refund approved to card {CARD}, Ana from billing", channel="sms"),
    ]
    messages = build_messages(text="thanks!", channel="telegram", memories=[], recent=recent)
    assert [(m.role, m.content.split("]")[0]) for m in messages[2:]] == [
        ("user", "[via telegram"),
        ("assistant", "Let me get a person for you."),
        ("assistant", "[support team, via sms"),
        ("user", "[via telegram"),
    ]
    team = messages[4].content
    assert team.startswith("[support team, via sms] Refund approved to card ") and CARD not in team
    assert "[support team, via ...]" in SYSTEM_PROMPT


async def test_the_agent_shows_the_operators_reply_from_the_log(db: Database) -> None:
    async with db.session() as session:
        session.add(
            Turn(
                customer_id="cus_1",
                channel="telegram",
                address="telegram:42",
                role="operator",
                operator="ana",
                text="We refunded the second charge.",
                vouched=True,
            )
        )
    model = ScriptedModel(Completion(text="Glad to help."))
    await agent_with(db, model).respond(turn("did you refund me?", inbox_id=50))
    ((messages, _),) = model.seen
    assert ChatMessage(
        role="assistant", content="[support team, via telegram] We refunded the second charge."
    ) in (messages)
