"""Part 3 of ``bench.scale``: how soon a worker process starts on a message a web process committed.

One ``threadline serve --role web`` and one ``--role worker`` on a fresh database, the worker's poll
interval set to ``--wake-poll`` (30 s: only ``NOTIFY`` can wake it in time). Signed Telegram deliveries are
sent to the web process one at a time, each to one of the preloaded customers in turn, with a random
pause (uniform, 0.05-1.05 s) after its reply reached the fake Telegram: a worker's inbox lane polls again
one interval after its last answer, so the pause puts each commit at a random moment of a 1 s poll cycle.
Two measures:

- ``pickup``: the worker's own ``threadline_pickup_seconds`` (the row's commit time to the worker
  starting on it, across processes), the observations of the measured messages only (scraped before and
  after), median and p95 estimated from the histogram's buckets as Prometheus does;
- ``end to end``: the web process's 200 to the reply's arrival at the fake Telegram (the fake LLM
  answers at once), clocked with ``CLOCK_MONOTONIC`` on both sides.

Then the control: the same worker with its ``LISTEN`` connection off (``bench.scale_nolisten``) and the
poll interval at ``--control-poll`` (1 s, the old default), so that only polling finds the messages.
"""

from __future__ import annotations

import asyncio
import json
import queue
import random
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx

from bench import scale_pg
from bench.corpus import Corpus
from bench.preload import add_customers, customer_ids
from bench.scale_work import SECRETS, histogram, minus, quantile, scrape, serve, start_fakes, summary
from bench.signing import TELEGRAM_PATH, telegram
from core.store.db import Database

PICKUP = "threadline_pickup_seconds"


class Arrivals:
    """Replies seen by the fake Telegram (its ``--arrivals`` lines), by chat id."""

    def __init__(self) -> None:
        self._lines: queue.Queue[tuple[int, float]] = queue.Queue()

    def line(self, raw: str) -> None:  # runs in the fake's stdout reader thread
        try:
            record = json.loads(raw)
            self._lines.put((int(record["chat_id"]), float(record["t"])))
        except (ValueError, KeyError, TypeError):
            return

    def wait_for(self, chat_id: int, timeout: float) -> float | None:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                chat, arrived = self._lines.get(timeout=left)
            except queue.Empty:
                return None
            if chat == chat_id:
                return arrived
        return None


def _send(
    web: str, worker: str, arrivals: Arrivals, chats: list[int], count: int, first_update: int, seed: int
) -> dict[str, Any]:
    rng = random.Random(seed)
    corpus = Corpus(seed)
    before = histogram(scrape(worker), PICKUP)
    ends, missing = [], 0
    with httpx.Client(timeout=30) as client:
        for i in range(count):
            chat = chats[i % len(chats)]
            delivery = telegram(first_update + i, chat, corpus.message(), SECRETS)
            response = client.post(
                web + TELEGRAM_PATH, content=delivery.body, headers=delivery.headers_at(int(time.time()))
            )
            acked = time.monotonic()
            response.raise_for_status()
            arrived = arrivals.wait_for(chat, timeout=60)
            if arrived is None:
                missing += 1
            else:
                ends.append(arrived - acked)
            time.sleep(rng.uniform(0.05, 1.05))
    observed = minus(histogram(scrape(worker), PICKUP), before)
    p50, p95 = quantile(observed, 0.5), quantile(observed, 0.95)
    return {
        "messages": count,
        "pickup": {
            "n": int(observed[-1][1]) if observed else 0,
            "p50_ms": round(p50 * 1000, 2) if p50 is not None else None,
            "p95_ms": round(p95 * 1000, 2) if p95 is not None else None,
            "buckets": [["+Inf" if le == float("inf") else le, int(n)] for le, n in observed],
        },
        "end_to_end": summary(ends),
        "replies_missing": missing,
    }


def measure(args: Any, work: Path, dbs: scale_pg.Databases) -> dict[str, Any]:
    database_url = dbs.create("wake")
    scale_pg.migrate(database_url, work / "data-migrate")
    customers = customer_ids(args.wake_customers, seed=args.seed)

    async def preload() -> None:
        db = await Database.open(database_url, run_migrations=False)
        try:
            await add_customers(db, customers)
        finally:
            await db.aclose()

    asyncio.run(preload())
    chats = [c.chat_id for c in customers]
    arrivals = Arrivals()
    found: dict[str, Any] = {}
    with ExitStack() as stack:
        children = start_fakes(stack, work, 0.0, arrivals=True)
        fakes = {k: c.first_line() for k, c in children.items()}
        children["telegram"].on_line(arrivals.line)
        web_env = scale_pg.hub_env(database_url, work / "data-web", fakes)
        web, _ = serve(stack, work, "wake-web", "web", web_env)
        cases = [
            ("notify", None, args.wake_poll, args.wake_messages),
            ("poll_only", "bench.scale_nolisten", args.control_poll, args.control_messages),
        ]
        for n, (name, module, poll, count) in enumerate(cases):
            if count <= 0:
                continue
            with ExitStack() as worker_stack:
                extra = {"THREADLINE_WORKER__POLL_INTERVAL": str(poll)}
                env = scale_pg.hub_env(database_url, work / f"data-{name}", fakes, extra)
                worker, _ = serve(worker_stack, work, f"wake-worker-{name}", "worker", env, module=module)
                _send(web, worker, arrivals, chats, args.wake_warmup, 10_000 + 1_000_000 * n, args.seed)
                result = _send(web, worker, arrivals, chats, count, 500_000 + 1_000_000 * n, args.seed + n)
            found[name] = {"poll_interval_s": poll, **result}
            pickup = result["pickup"]
            print(
                f"wake-up ({name}, poll {poll} s): pickup p50 {pickup['p50_ms']} ms "
                f"p95 {pickup['p95_ms']} ms; "
                f"end to end {result['end_to_end']}",
                flush=True,
            )
    return found
