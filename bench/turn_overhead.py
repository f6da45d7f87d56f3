"""Turn overhead: from the inbox commit of a customer message to its reply arriving at the platform.

The hub runs in this process, built by ``core.compose.build_hub`` from settings (the wiring ``threadline
serve`` uses) with the Telegram channel pointed at a fake Bot API and the LLM at a fake
OpenAI-compatible server (``bench.fake_llm``: it answers at once), each in its own process. The data
dir first holds ``--customers`` customers with ``--memories`` memories between them (bulk-loaded with
the product's schema, see ``bench.preload``) and ``--history`` earlier exchanges each.

Each measured turn is a Telegram update parsed by the real adapter, then ``hub.accept`` (the inbox
commit); the clock starts when that returns. The worker resolves the customer, the agent recalls from
Mem0 and reads recent turns, calls the LLM, commits the reply to the outbox, and delivery sends it with
python-telegram-bot to the fake, which notes the arrival with ``time.monotonic`` (``CLOCK_MONOTONIC``,
shared by every process on Linux) and reports it on its stdout. Turns run one at a time, to customers
drawn at random; before the next turn the hub is left to finish this one's memory write, so each turn
is measured on an idle hub: this is the overhead of one turn, not a load test.

``python -m bench.turn_overhead --customers 10000 --memories 100000 --turns 300``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import time
from contextlib import ExitStack
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

from bench.common import RESULTS_DIR, Run, exit_cleanly_on_sigterm, summary_ms
from bench.corpus import Corpus
from bench.machine import print_machine
from bench.preload import Loaded, add_customers, add_memories, add_turns, customer_ids, embed_pool, timed
from bench.procs import python_cmd, started
from bench.signing import TELEGRAM_PATH, Secrets, telegram
from channels.base import ChannelAdapter, WebhookRequest
from core.compose import build_hub
from core.messages import InboundMessage
from core.pipeline.hub import Hub
from core.settings import LLMSettings, Settings, TelegramSettings
from core.store.db import Database
from tests.fakes.telegram_api import DEFAULT_TOKEN as TELEGRAM_TOKEN

TELEGRAM_SECRET = "bench-turn-secret_0123456789"  # noqa: S105 - the fake bot's webhook secret
SECRETS = Secrets(
    telegram_secret=TELEGRAM_SECRET, slack_signing_secret="", twilio_auth_token="", public_base_url=""
)


class Arrivals:
    """Replies seen by the fake Bot API, handed from its stdout reader thread to the event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._waiting: dict[int, asyncio.Future[float]] = {}

    def line(self, text: str) -> None:  # runs in the reader thread
        try:
            record = json.loads(text)
            chat_id, arrived = int(record["chat_id"]), float(record["t"])
        except (ValueError, KeyError, TypeError):
            return
        self._loop.call_soon_threadsafe(self._arrived, chat_id, arrived)

    def _arrived(self, chat_id: int, arrived: float) -> None:
        future = self._waiting.pop(chat_id, None)
        if future is not None and not future.done():
            future.set_result(arrived)

    def expect(self, chat_id: int) -> asyncio.Future[float]:
        future: asyncio.Future[float] = self._loop.create_future()
        self._waiting[chat_id] = future
        return future


async def inbound(adapter: ChannelAdapter, update_id: int, chat_id: int, text: str) -> InboundMessage:
    """A Telegram update as the webhook route would hand it over: verified and parsed by the adapter."""
    delivery = telegram(update_id, chat_id, text, SECRETS)
    request = WebhookRequest(
        method="POST",
        path=TELEGRAM_PATH,
        query_string="",
        headers=delivery.headers_at(int(time.time())),
        body=delivery.body,
    )
    await adapter.verify(request)
    (message,) = (await adapter.parse(request)).messages
    return message


async def one_turn(
    hub: Hub,
    adapter: ChannelAdapter,
    arrivals: Arrivals,
    customer: Loaded,
    update_id: int,
    text: str,
    wait_s: float,
) -> float:
    """Seconds from the inbox commit to the reply's arrival at the fake; then waits for the hub to idle."""
    message = await inbound(adapter, update_id, customer.chat_id, text)
    arrived = arrivals.expect(customer.chat_id)
    await hub.accept(message)
    committed = time.monotonic()
    reached = await asyncio.wait_for(arrived, timeout=wait_s)
    await hub.wait_idle(timeout=wait_s, interval=0.01)
    return reached - committed


async def preload(
    args: argparse.Namespace, settings: Settings, corpus: Corpus
) -> tuple[list[Loaded], dict[str, float]]:
    steps: dict[str, float] = {}
    customers = customer_ids(args.customers, seed=args.seed)
    started_at = time.perf_counter()
    db = await Database.open(settings.resolved_database_url)
    try:
        await add_customers(db, customers)
        steps["customers_s"] = timed(f"{len(customers)} customers", started_at)
        started_at = time.perf_counter()
        rows = await add_turns(db, customers, args.history, corpus)
        steps["turns_s"] = timed(f"{rows} conversation turns", started_at)
    finally:
        await db.aclose()
    started_at = time.perf_counter()
    texts = corpus.facts(args.distinct_texts)
    vectors = embed_pool(texts)
    steps["embedding_s"] = timed(f"embedded {len(texts)} distinct memory texts", started_at)
    started_at = time.perf_counter()
    per_customer = max(1, args.memories // args.customers)
    written = add_memories(settings.data_dir, customers, per_customer, texts, vectors, seed=args.seed)
    steps["memories_s"] = timed(f"{written} memories", started_at)
    steps["memories_written"] = written
    return customers, steps


def hub_settings(data_dir: Path, llm_url: str, telegram_url: str) -> Settings:
    return Settings(
        _env_file=None,  # read no .env: the settings are all given here
        data_dir=data_dir,
        llm=LLMSettings(api_key="sk-bench", base_url=llm_url, timeout=60, max_retries=0),
        telegram=TelegramSettings(
            bot_token=TELEGRAM_TOKEN, secret_token=TELEGRAM_SECRET, api_base_url=telegram_url
        ),
    )


async def measure(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    corpus = Corpus(args.seed)
    with ExitStack() as stack:
        llm_url = stack.enter_context(
            started("fake-llm", python_cmd("bench.fake_servers", "llm"), log_dir=work)
        ).first_line()
        fake = stack.enter_context(
            started("fake-telegram", python_cmd("bench.fake_servers", "telegram", "--arrivals"), log_dir=work)
        )
        settings = hub_settings(work / "data", llm_url, fake.first_line())
        customers, steps = await preload(args, settings, corpus)
        arrivals = Arrivals(asyncio.get_running_loop())
        fake.on_line(arrivals.line)
        hub = await build_hub(settings)
        await hub.start()
        try:
            adapter = hub.senders["telegram"]
            assert isinstance(adapter, ChannelAdapter)
            rng = random.Random(args.seed)
            seconds: list[float] = []
            deadline = time.monotonic() + args.max_seconds
            for i in range(args.warmup + args.turns):
                if time.monotonic() > deadline:
                    break
                customer = rng.choice(customers)
                took = await one_turn(
                    hub, adapter, arrivals, customer, 1_000 + i, corpus.message(), args.turn_timeout
                )
                if i >= args.warmup:
                    seconds.append(took)
            worker = hub.metrics.registry.get_sample_value("threadline_turn_seconds_sum") or 0.0
            worker_n = hub.metrics.registry.get_sample_value("threadline_turn_seconds_count") or 0.0
        finally:
            await hub.stop()
    return {
        "turn": summary_ms(seconds),
        "worker_turn_mean_ms": round(1000 * worker / worker_n, 3) if worker_n else None,
        "preload": steps,
        "stopped_by_time": len(seconds) < args.turns,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Inbox commit to reply at the platform, at scale.")
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument("--memories", type=int, default=100_000, help="spread evenly over the customers")
    parser.add_argument("--history", type=int, default=5, help="earlier exchanges per customer")
    parser.add_argument("--turns", type=int, default=300, help="measured turns")
    parser.add_argument("--warmup", type=int, default=10, help="turns before measuring")
    parser.add_argument("--distinct-texts", type=int, default=3_000)
    parser.add_argument("--turn-timeout", type=float, default=60.0)
    parser.add_argument("--max-seconds", type=float, default=900.0, help="bound on the measured loop")
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)
    if args.customers < 1 or args.memories < args.customers:
        parser.error("--customers must be at least 1 and --memories at least --customers")
    for name in [k for k in os.environ if k.startswith("THREADLINE_")]:
        del os.environ[name]  # the hub reads nothing but the settings given here
    exit_cleanly_on_sigterm()
    machine = print_machine()
    run = Run("turn_overhead", machine, {k: v for k, v in vars(args).items() if k != "out"})
    run.note(
        "LLM: a fake OpenAI-compatible server (tests/fakes/openai_server.py FakeOpenAI with bench.fake_llm's "
        "responder) that answers at once, in its own process: the LLM path, not offline mode. Replies go "
        "through python-telegram-bot to a fake Bot API in its own process. Turns one at a time, each on an "
        "idle hub (the previous turn's memory write finished); memory writes use the LLM (infer=True)."
    )
    with TemporaryDirectory(prefix="bench-turn-") as tmp:
        results = asyncio.run(measure(args, Path(tmp)))
    run.write(results, args.out)
    print(f"turn overhead: p50 {results['turn'].get('p50_ms')} ms, p95 {results['turn'].get('p95_ms')} ms")


if __name__ == "__main__":
    main()
