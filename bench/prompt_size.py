"""Prompt size: tokens the LLM is sent per turn as one customer's history grows, memory against full history.

The hub runs in this process (``core.compose.build_hub``) with the console channel (what ``threadline chat
--as telegram:…`` uses) and a fake OpenAI-compatible server in a thread (``bench.fake_llm``: support
replies, and Mem0 extractions that keep what the customer said). One customer sends ``--turns`` messages,
one at a time; each reply and memory write finishes before the next message.

Per turn, from the requests the fake LLM actually received:

- ``prompt``: the agent's reply request, i.e. the product's prompt
  (``core/agent/prompt.py`` ``build_messages``:
  instructions, recalled memories, the recent turns, the new message);
- ``extraction``: Mem0's fact-extraction request for the same turn (``infer=True`` memory write), a
  separate cost of the memory;
- ``full_history``: the same prompt format with every earlier turn of the conversation log instead of
  recall and the recent window (no memory block): what a bot without memory sends.

Tokens are characters / 4 (tiktoken is used instead when it is installed and can load ``o200k_base``;
it is not a dependency because it downloads its vocabulary at run time). The budget the target is held
to is the prompt's ceiling by construction: the instructions, the memory block's budget
(``THREADLINE_MEMORY__CONTEXT_TOKENS``), ``recent_turns`` turns clipped to ``MAX_TURN_CHARS`` and a new
message as long.

``python -m bench.prompt_size --turns 1000``
"""

from __future__ import annotations

import argparse
import asyncio
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

from bench.common import RESULTS_DIR, Run, exit_cleanly_on_sigterm
from bench.corpus import Corpus
from bench.fake_llm import support_responder
from bench.machine import print_machine
from channels.console import ConsoleChannel
from core.agent.conversation import ConversationLog
from core.agent.prompt import MAX_MEMORY_CHARS, MAX_TURN_CHARS, SYSTEM_PROMPT, build_messages
from core.compose import build_hub
from core.messages import Address, OutboundMessage
from core.pipeline.hub import Hub
from core.settings import LLMSettings, MemorySettings, Settings, WorkerSettings
from identity.resolver import DatabaseResolver
from tests.fakes.openai_server import FakeOpenAI

SENDER = Address.parse("telegram:424242")
MAX_HISTORY_ROWS = 100_000
FLOOD_OFF = 1_000_000.0  # messages per minute (and burst) for the one sender
Counter = Callable[[str], int]


def token_counter(choice: str) -> tuple[str, Counter]:
    """The counting method and function: ``chars/4``, or tiktoken's ``o200k_base`` when asked and usable."""
    if choice in ("auto", "tiktoken"):
        try:
            import tiktoken  # type: ignore[import-not-found]

            encoding = tiktoken.get_encoding("o200k_base")
        except Exception:
            if choice == "tiktoken":
                raise
        else:
            return "tiktoken o200k_base", lambda text: len(encoding.encode(text))
    return "chars/4", lambda text: math.ceil(len(text) / 4)


def prompt_tokens(messages: Sequence[Any], count: Counter) -> int:
    """Tokens of a chat request's message contents (role and framing overhead left out)."""
    total = 0
    for message in messages:
        content = message["content"] if isinstance(message, dict) else message.content
        total += count(content if isinstance(content, str) else str(content))
    return total


def budget_tokens(settings: MemorySettings, count: Counter) -> int:
    """The product prompt's ceiling: instructions, the memory block's budget (or ``recall_limit`` clipped
    memories without one), the recent turns and a new message, each clipped to ``MAX_TURN_CHARS``."""
    if settings.context_tokens > 0:
        memory = settings.context_tokens
    else:
        line = "- (2026-01-01, via telegram) " + "x" * MAX_MEMORY_CHARS
        memory = count(
            "<customer_memory>\n" + "\n".join([line] * settings.recall_limit) + "\n</customer_memory>"
        )
    turn = "[via telegram] " + "x" * MAX_TURN_CHARS
    return count(SYSTEM_PROMPT) + memory + (settings.recent_turns + 1) * count(turn)


async def full_history_tokens(
    log: ConversationLog, customer_id: str, inbox_id: int, text: str, count: Counter
) -> int:
    earlier = await log.recent(customer_id, MAX_HISTORY_ROWS, before_inbox_id=inbox_id)
    messages = build_messages(text=text, channel="console", memories=(), recent=earlier)
    del messages[1]  # the memory block: a bot without memory has none
    return prompt_tokens(messages, count)


def is_extraction(call: dict[str, Any]) -> bool:
    """Mem0's fact-extraction request (it asks for a JSON object); every other call is the agent's reply."""
    response_format = call.get("response_format")
    return isinstance(response_format, dict) and response_format.get("type") == "json_object"


async def one_turn(
    hub: Hub, console: ConsoleChannel, fake: FakeOpenAI, text: str, wait_s: float
) -> tuple[int, dict[str, Any], dict[str, Any]]:
    """Send one message; once its reply is out and its memory written, returns the inbox id and the
    turn's LLM requests: the reply's and the extraction's (the last of each, should one be retried)."""
    seen = len(fake.calls)
    accepted = await hub.accept(console.message(SENDER, text))
    key = f"reply:{accepted.inbox_id}"

    async def reply() -> None:
        while (await console.delivered.get()).idempotency_key != key:
            continue

    await asyncio.wait_for(reply(), timeout=wait_s)
    deadline = time.monotonic() + wait_s
    while True:
        calls = fake.calls[seen:]
        replies = [c for c in calls if not is_extraction(c)]
        extractions = [c for c in calls if is_extraction(c)]
        if replies and extractions:
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"inbox {accepted.inbox_id}: no memory extraction within {wait_s:g} s")
        await asyncio.sleep(0.01)
    await hub.wait_idle(timeout=wait_s, interval=0.01)
    return accepted.inbox_id, replies[-1], extractions[-1]


async def measure(args: argparse.Namespace, work: Path, count: Counter) -> dict[str, Any]:
    corpus = Corpus(args.seed)
    per_turn: list[dict[str, int]] = []

    async def ignore(reply: OutboundMessage) -> None:
        return None

    with FakeOpenAI(responder=support_responder) as fake:
        settings = Settings(
            _env_file=None,  # read no .env: the settings are all given here
            data_dir=work / "data",
            llm=LLMSettings(api_key="sk-bench", base_url=fake.base_url, timeout=60, max_retries=0),
            # a history of months, sent in minutes: flood control (core.pipeline.flood) would throttle it
            worker=WorkerSettings(sender_rate_per_minute=FLOOD_OFF, sender_burst=int(FLOOD_OFF)),
        )
        console = ConsoleChannel(ignore)
        hub = await build_hub(settings, senders={"console": console})
        await hub.start()
        try:
            deadline = time.monotonic() + args.max_seconds
            customer_id: str | None = None
            for turn in range(1, args.turns + 1):
                if time.monotonic() > deadline:
                    break
                text = corpus.question() if turn % 4 == 0 else corpus.message()
                inbox_id, reply, extraction = await one_turn(hub, console, fake, text, args.turn_timeout)
                if customer_id is None:
                    found = await DatabaseResolver(hub.db).lookup(SENDER)
                    assert found is not None
                    customer_id = found.customer_id
                per_turn.append(
                    {
                        "turn": turn,
                        "prompt": prompt_tokens(reply["messages"], count),
                        "prompt_messages": len(reply["messages"]),
                        "extraction": prompt_tokens(extraction["messages"], count),
                        "full_history": await full_history_tokens(
                            hub.conversation, customer_id, inbox_id, text, count
                        ),
                    }
                )
                if turn in args.checkpoints:
                    row = per_turn[-1]
                    print(
                        f"  turn {turn:>5}: prompt {row['prompt']}, full history {row['full_history']} tokens"
                    )
        finally:
            await hub.stop()
    return {"per_turn": per_turn, "checkpoints": [r for r in per_turn if r["turn"] in args.checkpoints]}


def flatness(per_turn: list[dict[str, int]], budget: int) -> dict[str, Any]:
    """The largest product prompt once the recent window is full (turn 10 on), against the budget, and
    the mean over the last tenth of the turns against the mean over the second tenth (1.0 = flat)."""
    settled = [r["prompt"] for r in per_turn if r["turn"] >= 10]
    if not settled or len(per_turn) < 10:
        return {}
    tenth = len(per_turn) // 10
    second = [r["prompt"] for r in per_turn[tenth : 2 * tenth]]
    last = [r["prompt"] for r in per_turn[-tenth:]]
    return {
        "max_prompt_from_turn_10": max(settled),
        "budget": budget,
        "within_budget": max(settled) <= budget,
        "last_tenth_over_second_tenth": round((sum(last) / len(last)) / (sum(second) / len(second)), 3),
        "full_history_at_last_turn": per_turn[-1]["full_history"],
        "prompt_at_last_turn": per_turn[-1]["prompt"],
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description="Prompt tokens per turn: the product's memory vs full history."
    )
    parser.add_argument("--turns", type=int, default=1_000)
    parser.add_argument("--checkpoints", type=int, nargs="+", default=[10, 30, 100, 300, 1_000])
    parser.add_argument("--tokenizer", choices=["auto", "chars4", "tiktoken"], default="auto")
    parser.add_argument("--turn-timeout", type=float, default=60.0)
    parser.add_argument("--max-seconds", type=float, default=1_800.0, help="bound on the whole loop")
    parser.add_argument("--seed", type=int, default=9)
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)
    exit_cleanly_on_sigterm()
    machine = print_machine()
    method, count = token_counter(args.tokenizer)
    budget = budget_tokens(MemorySettings(), count)
    run = Run(
        "prompt_size", machine, {**{k: v for k, v in vars(args).items() if k != "out"}, "method": method}
    )
    run.note(
        f"Tokens counted as {method}. The product's prompt is the request the agent sent to the fake LLM; "
        "full history is the same format with every earlier turn and no memory block. Budget: the "
        "prompt's ceiling by construction (the default memory budget, recent_turns and "
        "core/agent/prompt.py's clip limit per turn). The sender's flood control is lifted: the history is "
        "sent in minutes."
    )
    with TemporaryDirectory(prefix="bench-prompt-") as tmp:
        results = asyncio.run(measure(args, Path(tmp), count))
    results["summary"] = flatness(results["per_turn"], budget)
    results["tokens"] = method
    run.write(results, args.out)


if __name__ == "__main__":
    main()
