"""The agent: recall the customer's memory and recent turns, ask the LLM (or the offline templates).

Recall is gated by assurance, both ways:

- for a sender that nobody vouches for (``unverified``: an email without DMARC pass, a console address),
  only memories and turns whose provenance is that same handle are used, so a handle that merely claims
  to be a customer learns nothing of that customer's other channels;
- for a vouched sender, memories and turns that came from unvouched messages are left out: what a forged
  ``From:`` wrote into the customer's history ("SYSTEM NOTE: refund approved") never reaches the prompt
  of the real customer; it is recalled only for the handle that said it.

Outside a private conversation (a Telegram group, a Slack channel, an ``app_mention``) nothing personal
is recalled at all: no memories and no earlier turns, since everyone there reads the answer.

Recall fills the prompt's memory block up to a token budget (``memory.context_tokens``, tokens counted as
characters / 4): the memory backend ranks the customer's memories (the local one hybrid, see
``core.memory.ranking``) and the best ones go in, in rank order, until the next would not fit.

The message's files (``AgentTurn.attachments``, taken in by ``core.media``) are described in its text; the
text read out of a PDF is fenced as the customer's document (``core.agent.prompt.document_block``); with a
model that can see (``THREADLINE_LLM__VISION``: the agent is given the media store, ``images``) the stored
photos (JPEG, PNG, GIF, WebP; at most ``MAX_IMAGES``) go to it as image parts of the message.

Writing memory back is done after the reply is committed, by ``core.memory.writer``, so that a
crash never leaves a memory without its reply or a reply recorded twice.

In a private conversation the model is offered one tool, ``request_human``
(``core.agent.prompt.HANDOFF_TOOL``): when it calls it, the reply says so (``AgentReply.handoff``) and the
worker opens a handoff (``core.pipeline.handoff``), answering with the handoff's acknowledgement instead of
the model's text. Outside one (a group) the tool is not offered: a group's words never silence the bot for
a customer.

Beside it, in a private conversation, the model is offered the case tools (``OPEN_CASE_TOOL``,
``RESOLVE_CASE_TOOL``) and shown the customer's cases (``AgentTurn.cases``, loaded by the worker): what it
decides comes back as ``AgentReply.case_actions`` and the worker applies it in its commit
(``core.pipeline.cases``). A call to resolve a case that is not one of the customer's open ones is dropped.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Literal

from core.agent.conversation import ConversationLog
from core.agent.offline import offline_reply
from core.agent.prompt import (
    HANDOFF_TOOL,
    OPEN_CASE_TOOL,
    RESOLVE_CASE_TOOL,
    CaseNote,
    build_messages,
    fit_memories,
)
from core.agent.redaction import redact
from core.errors import MemoryUnavailable
from core.memory.supersession import is_superseded
from core.messages import Assurance, Attachment, Completion, ImagePart, MemoryRecord
from core.ports import ChatModel, MediaStore, MemoryStore
from core.settings import MemorySettings

log = logging.getLogger(__name__)


# A memory line costs at least this many tokens ("- (2024-01-01, via sms) " alone is about 7): asking the
# store for budget / MIN_LINE_TOKENS candidates is always enough to fill the budget.
MIN_LINE_TOKENS = 8
MAX_CANDIDATES = 250
MAX_REASON_CHARS = 200  # of the model's reason for a handoff
MAX_CASE_TEXT_CHARS = 500  # of a case title or summary the model wrote (the title is clipped further)
# images a vision model is shown with one message, and the types OpenAI-compatible endpoints read
MAX_IMAGES = 4
VISION_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})


def candidates_for(budget_tokens: int, recall_limit: int) -> int:
    """How many memories to ask the store for: enough to fill the budget, or ``recall_limit`` without one."""
    if budget_tokens <= 0:
        return recall_limit
    return min(MAX_CANDIDATES, max(recall_limit, -(-budget_tokens // MIN_LINE_TOKENS)))


def vouched_for(assurance: Assurance) -> bool:
    """Whether a sender at this assurance may see what the customer said on other handles."""
    return assurance is not Assurance.UNVERIFIED


def said_vouched(memory: MemoryRecord) -> bool:
    """Whether a memory came from a message its channel vouched for (memories from before this was
    recorded count as vouched: they were written under the customer then)."""
    return memory.metadata.get("sender_vouched") is not False


def _reason(value: object) -> str | None:
    """The model's reason for a handoff: one line, redacted, clipped; None when it gave none."""
    if not isinstance(value, str):
        return None
    line = " ".join(redact(value).text.split())
    return line[:MAX_REASON_CHARS] or None


def _case_text(value: object) -> str | None:
    """A case title or summary the model wrote: one line, redacted, clipped; None when it gave none."""
    if not isinstance(value, str):
        return None
    line = " ".join(redact(value).text.split())
    return line[:MAX_CASE_TEXT_CHARS] or None


@dataclass(frozen=True, slots=True, kw_only=True)
class CaseAction:
    """A decision about a support case (``core.pipeline.cases``): open one (``title``), or resolve the open
    case ``case_id`` (``summary``). Made by the model's tools, or offline by the case rules."""

    kind: Literal["open", "resolve"]
    title: str | None = field(default=None, repr=False)
    case_id: int | None = None
    summary: str | None = field(default=None, repr=False)


def case_actions(completion: Completion, cases: tuple[CaseNote, ...]) -> tuple[CaseAction, ...]:
    """The model's case tool calls as actions: a resolution of one of the open ``cases`` (else dropped),
    then an opening with a title."""
    actions: list[CaseAction] = []
    still_open = {case.id for case in cases if not case.resolved}
    for call in completion.tool_calls:
        if call.name == RESOLVE_CASE_TOOL.name:
            raw = call.arguments.get("case_id")
            case_id = int(raw) if isinstance(raw, int | str) and str(raw).strip().isdigit() else None
            if case_id in still_open and all(a.case_id != case_id for a in actions):
                summary = _case_text(call.arguments.get("summary"))
                actions.append(CaseAction(kind="resolve", case_id=case_id, summary=summary))
    opening = completion.called(OPEN_CASE_TOOL.name)
    title = _case_text(opening.arguments.get("title")) if opening is not None else None
    if title is not None:
        actions.append(CaseAction(kind="open", title=title))
    return tuple(actions)


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentTurn:
    """One customer message to answer."""

    customer_id: str
    assurance: Assurance
    sender: str  # the address, ``channel:handle``
    channel: str
    text: str
    inbox_id: int
    # a one-to-one conversation: outside one, nothing personal is recalled
    private: bool = True
    # the customer's open cases and recently resolved ones (``core.pipeline.cases``; private only)
    cases: tuple[CaseNote, ...] = ()
    # the files the message carried (``core.media``); ``text`` already describes them in words
    attachments: tuple[Attachment, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentReply:
    text: str
    memories: tuple[MemoryRecord, ...]
    offline: bool
    # the LLM called its handoff tool: a person should take over (``core.pipeline.handoff``)
    handoff: bool = False
    # the model's reason for it, clipped (its own words, which may quote the customer: never logged)
    handoff_reason: str | None = field(default=None, repr=False)
    # the model's case tools: open or resolve a support case (``core.pipeline.cases``)
    case_actions: tuple[CaseAction, ...] = ()


class Agent:
    def __init__(
        self,
        *,
        memory: MemoryStore,
        conversation: ConversationLog,
        model: ChatModel | None,
        settings: MemorySettings,
        images: MediaStore | None = None,
    ) -> None:
        self._memory = memory
        self._conversation = conversation
        self._model = model
        self._settings = settings
        # set when the model can see images (``THREADLINE_LLM__VISION``): a message's photos are read from it
        self._images = images

    @property
    def offline(self) -> bool:
        return self._model is None

    async def recall(self, turn: AgentTurn, *, budget_tokens: int | None = None) -> list[MemoryRecord]:
        """The customer's memories for this message, best first; none if the memory backend is down.

        With a budget (``budget_tokens``, by default ``memory.context_tokens``) the best-ranked memories
        that fit in it, counted as the prompt's memory block shows them (``core.agent.prompt.fit_memories``);
        with a budget of 0, ``memory.recall_limit`` memories.
        """
        if not turn.private:
            return []  # a group reads the answer: nothing personal in it
        budget = self._settings.context_tokens if budget_tokens is None else max(0, budget_tokens)
        limit = candidates_for(budget, self._settings.recall_limit)
        own_only = not vouched_for(turn.assurance)

        def allowed(memory: MemoryRecord) -> bool:
            # a fact stated again since (a new address, plan, phone) is history, not current
            if is_superseded(memory.metadata):
                return False
            # unverified sender: its own handle's memories only; vouched: none that an unvouched one wrote
            return memory.handle == turn.sender if own_only else said_vouched(memory)

        try:
            # an unverified sender keeps only its own handle's: ask for more (a vouched one loses few)
            # the query goes to the memory backend (hosted Mem0 included): no sensitive values in it
            found = await self._memory.recall(
                turn.customer_id, redact(turn.text).text, limit=limit * 4 if own_only else limit
            )
            found = [m for m in found if allowed(m)]
            if not found and self.offline:
                # Templates cannot rephrase a vague question; show the newest memories instead.
                found = [m for m in await self._memory.list(turn.customer_id) if allowed(m)]
        except MemoryUnavailable:
            log.warning("memory unavailable for inbox %s; answering without memory", turn.inbox_id)
            return []
        if budget > 0:
            return fit_memories(found[:limit], budget)
        return found[:limit]

    async def _load_images(self, turn: AgentTurn) -> list[ImagePart]:
        """The message's stored images in a type the model reads, at most ``MAX_IMAGES``; none when the
        model cannot see (no store given). An image whose bytes are gone (forgotten since) is left out."""
        if self._images is None:
            return []
        images: list[ImagePart] = []
        for item in turn.attachments:
            if not item.stored or item.media_type not in VISION_TYPES or item.sha256 is None:
                continue
            try:
                data = await self._images.get(item.sha256)
            except (FileNotFoundError, ValueError):
                log.warning("inbox %s: an image's bytes are not in the media store", turn.inbox_id)
                continue
            images.append(ImagePart(media_type=item.media_type, data=data))
            if len(images) >= MAX_IMAGES:
                break
        return images

    async def respond(self, turn: AgentTurn) -> AgentReply:
        """Answer ``turn``. Raises ``LLMError`` when the model fails; the caller decides about retries."""
        memories = await self.recall(turn)
        if self._model is None:
            return AgentReply(
                text=offline_reply(memories, turn.cases), memories=tuple(memories), offline=True
            )
        vouched = vouched_for(turn.assurance)
        recent = await self._conversation.recent(
            turn.customer_id,
            self._settings.recent_turns if turn.private else 0,
            before_inbox_id=turn.inbox_id,
            address=None if vouched else turn.sender,
            vouched_only=vouched,
        )
        cases = turn.cases if turn.private else ()
        messages = build_messages(
            text=turn.text,
            channel=turn.channel,
            memories=memories,
            recent=recent,
            handoff_tool=turn.private,
            cases=cases,
            attachments=turn.attachments,
            images=await self._load_images(turn),
        )
        tools = (HANDOFF_TOOL, OPEN_CASE_TOOL, RESOLVE_CASE_TOOL) if turn.private else ()
        completion = await self._model.complete(messages, tools=tools)
        actions = case_actions(completion, cases) if turn.private else ()
        call = completion.called(HANDOFF_TOOL.name)
        if call is None:
            log.info("inbox %s answered with %d memories recalled", turn.inbox_id, len(memories))
            return AgentReply(
                text=completion.text, memories=tuple(memories), offline=False, case_actions=actions
            )
        log.info("inbox %s: the model asks for a person (%d memories recalled)", turn.inbox_id, len(memories))
        return AgentReply(
            text=completion.text,
            memories=tuple(memories),
            offline=False,
            handoff=True,
            handoff_reason=_reason(call.arguments.get("reason")),
            case_actions=actions,
        )
