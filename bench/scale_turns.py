"""Part 2 of ``bench.scale``: turns per second of 1 and of 2 worker processes draining the same backlog.

For each worker count, on a fresh database of its own: ``--customers`` customers are bulk-loaded
(``bench.preload``, as first contact makes them), the worker processes (``threadline serve --role
worker``, each its own data dir, the product's defaults: ``worker.concurrency`` 8) start against one fake
LLM that holds every call ``--llm-delay`` seconds (``bench.scale_llm``), and a warm-up batch is answered.
Both fleets stay up; then, in ``--turn-rounds`` rounds (the order alternating), each fleet drains a
backlog of ``--messages`` Telegram messages, made by the real adapter and spread over the customers,
committed through the product's inbox (``core.pipeline.inbox``: group commit and ``NOTIFY``) in one go.
The clock runs from the first commit until no measured row is pending (the database is read every
quarter second): turns per second is messages over that time, the steady rate the one between 10% and
90% answered; the medians over the rounds are reported. Replies are delivered (to a fake Telegram) and
memories written (Mem0 with the LLM, on PostgreSQL) by the same processes at the same time, and each
round waits for them before the next; CPU per turn covers all of it. Each worker's
``threadline_replies_total`` says how the work was shared.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from contextlib import AsyncExitStack, ExitStack
from pathlib import Path
from typing import Any

from sqlalchemy import text

from bench import scale_pg
from bench.corpus import Corpus
from bench.preload import add_customers, customer_ids
from bench.scale_cpu import CpuMeter
from bench.scale_work import (
    counter_sum,
    messages,
    scrape,
    serve,
    start_fakes,
    telegram_settings,
    wait_idle,
)
from core.pipeline.inbox import Inbox
from core.store.db import Database

SAMPLE_S = 0.25
QUIET_CORES = 0.25  # a round is quiet when the rest of the machine took less than this


def crossing(series: list[tuple[float, int]], target: float) -> float | None:
    """When the answered count first reached ``target``, interpolated between samples ``(t, answered)``."""
    previous: tuple[float, int] | None = None
    for t, done in series:
        if done >= target:
            if previous is None or done == previous[1]:
                return t
            t0, d0 = previous
            return t0 + (t - t0) * (target - d0) / (done - d0)
        previous = (t, done)
    return None


def quiet_ratio(runs: list[dict[str, Any]], limit: float = QUIET_CORES) -> dict[str, Any] | None:
    """2 workers over 1 in the rounds where the rest of the machine stayed quiet for both drains (round
    ``i`` of each fleet ran one after the other): the median of those rounds' ratios, or None."""
    one, two = runs[0]["rounds"], runs[1]["rounds"]
    ratios = [
        b["turns_per_s"] / a["turns_per_s"]
        for a, b in zip(one, two, strict=False)
        if a.get("turns_per_s")
        and b.get("turns_per_s")
        and (a.get("others_cores") is not None and a["others_cores"] < limit)
        and (b.get("others_cores") is not None and b["others_cores"] < limit)
    ]
    if not ratios:
        return None
    return {"rounds": len(ratios), "two_over_one": round(statistics.median(ratios), 3), "others_below": limit}


def rates(series: list[tuple[float, int]], total: int) -> dict[str, Any]:
    """Turns per second over the whole drain and between 10% and 90% of ``total`` answered."""
    end = crossing(series, total)
    low, high = crossing(series, 0.1 * total), crossing(series, 0.9 * total)
    found: dict[str, Any] = {"drain_s": round(end, 2) if end else None}
    found["turns_per_s"] = round(total / end, 2) if end else None
    if low is not None and high is not None and high > low:
        found["steady_turns_per_s"] = round(0.8 * total / (high - low), 2)
    return found


async def _answered(db: Database, first_id: int) -> int:
    async with db.read() as session:
        value = await session.scalar(
            text("SELECT count(*) FROM inbox WHERE id >= :first AND status <> 'pending'"), {"first": first_id}
        )
    return int(value or 0)


async def table_sizes(db: Database) -> dict[str, dict[str, int]]:
    """Rows and bytes on disk (with indexes and TOAST) of every table of the database."""
    async with db.read() as session:
        catalog = "SELECT relname, pg_total_relation_size(relid) FROM pg_stat_user_tables ORDER BY relname"
        tables = list(await session.execute(text(catalog)))
        found = {}
        for name, size in tables:
            rows = await session.scalar(text(f'SELECT count(*) FROM "{name}"'))  # noqa: S608 - catalog names
            found[str(name)] = {"rows": int(rows or 0), "bytes": int(size)}
    return found


async def _backlog(
    db: Database, settings: Any, chats: list[int], corpus: Corpus, first_update: int, bound_s: float
) -> dict[str, Any]:
    """Commit one message per entry of ``chats`` through the inbox and time until all are answered."""
    made = await messages(settings, chats, [corpus.message() for _ in chats], first_update)
    inbox = Inbox(db)
    started_at = time.monotonic()
    accepted = await asyncio.gather(*(inbox.accept(m) for m in made))
    committed_s = time.monotonic() - started_at
    await inbox.aclose()
    first_id = min(a.inbox_id for a in accepted)
    series: list[tuple[float, int]] = []
    done = 0
    while done < len(made) and time.monotonic() - started_at < bound_s:
        await asyncio.sleep(SAMPLE_S)
        done = await _answered(db, first_id)
        series.append((time.monotonic() - started_at, done))
    async with db.read() as session:
        rows = await session.execute(
            text("SELECT status, count(*) FROM inbox WHERE id >= :first GROUP BY status"), {"first": first_id}
        )
        statuses = {str(status): int(n) for status, n in rows}
    return {"committed_s": round(committed_s, 3), "series": series, "statuses": statuses}


class Fleet:
    """One worker count's database (customers preloaded) and its worker processes, up for every round."""

    def __init__(self, workers: int, db: Database, settings: Any, urls: list[str], meter: CpuMeter) -> None:
        self.workers, self.db, self.settings, self.urls, self.meter = workers, db, settings, urls, meter
        self.rounds: list[dict[str, Any]] = []

    async def drain(
        self, chats: list[int], corpus: Corpus, first_update: int, bound_s: float
    ) -> dict[str, Any]:
        """One measured round: the backlog committed, answered, then delivered and remembered."""
        before = [counter_sum(scrape(u), "threadline_replies") for u in self.urls]
        self.meter.start()
        result = await _backlog(self.db, self.settings, chats, corpus, first_update, bound_s)
        after = [counter_sum(scrape(u), "threadline_replies") for u in self.urls]
        idle_s, left = await wait_idle(self.db, bound_s)
        cpu = self.meter.stop()
        fakes_cpu = sum(v for k, v in cpu.items() if k.startswith("fake-"))
        cpu = {k: v for k, v in cpu.items() if not k.startswith("fake-")}
        workers_cpu = sum(v for k, v in cpu.items() if k != "postgres")
        found = {
            **rates(result["series"], len(chats)),
            "committed_s": result["committed_s"],
            "statuses": result["statuses"],
            "replies_per_worker": [round(a - b) for a, b in zip(after, before, strict=True)],
            # every process's CPU from the first commit until replies were delivered and memories written
            "cpu_ms_per_turn": {
                "workers": round(1000 * workers_cpu / len(chats), 2),
                **({"postgres": round(1000 * cpu["postgres"] / len(chats), 2)} if "postgres" in cpu else {}),
            },
            "rest_drained_after_s": idle_s,
            "left_after_drain": left,
            "fakes_cpu_ms_per_turn": round(1000 * fakes_cpu / len(chats), 2),
            "others_cores": self.meter.others_cores,
            "series": [[round(t, 2), n] for t, n in result["series"]],
        }
        self.rounds.append(found)
        return found


async def _fleet(
    astack: AsyncExitStack,
    stack: ExitStack,
    args: Any,
    work: Path,
    database_url: str,
    fakes: dict[str, str],
    workers: int,
    pg_pid: int | None,
    fake_pids: dict[str, int],
) -> Fleet:
    customers = customer_ids(args.customers, seed=args.seed)
    db = await Database.open(database_url, run_migrations=False)
    astack.push_async_callback(db.aclose)
    await add_customers(db, customers)
    urls, pids = [], {}
    for i in range(workers):
        env = scale_pg.hub_env(database_url, work / f"data-w{workers}-{i}", fakes)
        url, child = serve(stack, work, f"worker-{workers}-{i}", "worker", env)
        urls.append(url)
        pids[f"worker-{i}"] = child.proc.pid
    meter = CpuMeter(pids | ({"postgres": pg_pid} if pg_pid else {}) | fake_pids)
    fleet = Fleet(workers, db, telegram_settings(database_url, work / "data-bench"), urls, meter)
    chats = [c.chat_id for c in customers]
    warm = [chats[i % len(chats)] for i in range(args.turns_warmup * workers)]
    await _backlog(db, fleet.settings, warm, Corpus(args.seed), 1_000, args.drain_timeout)
    await wait_idle(db, args.drain_timeout)
    return fleet


def summary(fleet: Fleet) -> dict[str, Any]:
    """The medians of a worker count's rounds, and its rounds."""
    rounds = fleet.rounds

    def median(key: str) -> float | None:
        values = [r[key] for r in rounds if r.get(key) is not None]
        return round(statistics.median(values), 2) if values else None

    cpu = {
        name: round(statistics.median(r["cpu_ms_per_turn"][name] for r in rounds), 2)
        for name in rounds[0]["cpu_ms_per_turn"]
    }
    return {
        "workers": fleet.workers,
        "turns_per_s": median("turns_per_s"),
        "steady_turns_per_s": median("steady_turns_per_s"),
        "drain_s": median("drain_s"),
        "rest_drained_after_s": median("rest_drained_after_s"),
        "others_cores": median("others_cores"),
        "replies_per_worker": [sum(r["replies_per_worker"][i] for r in rounds) for i in range(fleet.workers)],
        "cpu_ms_per_turn": cpu,
        "rounds": rounds,
    }


async def _measure(args: Any, work: Path, urls: dict[int, str], pg_pid: int | None) -> dict[str, Any]:
    async with AsyncExitStack() as astack:
        stack = astack.enter_context(ExitStack())
        children = start_fakes(stack, work, args.llm_delay)
        fakes = {k: c.first_line() for k, c in children.items()}
        fake_pids = {f"fake-{k}": c.proc.pid for k, c in children.items()}
        fleets = []
        for n, url in urls.items():
            fleets.append(await _fleet(astack, stack, args, work, url, fakes, n, pg_pid, fake_pids))
        chats = [c.chat_id for c in customer_ids(args.customers, seed=args.seed)]
        measured = [chats[i % len(chats)] for i in range(args.messages)]
        for round_no in range(args.turn_rounds):
            order = fleets if round_no % 2 == 0 else fleets[::-1]
            for fleet in order:
                corpus = Corpus(args.seed + 100 * round_no + fleet.workers)
                first_update = 100_000 * (round_no + 1)
                run = await fleet.drain(measured, corpus, first_update, args.drain_timeout)
                print(
                    f"turns round {round_no + 1}: {fleet.workers} worker(s) {run['turns_per_s']} turns/s "
                    f"(steady {run.get('steady_turns_per_s')}) over {run['drain_s']} s; replies per worker "
                    f"{run['replies_per_worker']}; CPU ms per turn {run['cpu_ms_per_turn']}; "
                    f"others took {run['others_cores']} cores",
                    flush=True,
                )
        sizes = await table_sizes(fleets[0].db)
    runs = [summary(fleet) for fleet in fleets]
    runs[0]["table_sizes"] = sizes
    one, two = runs[0].get("turns_per_s"), runs[1].get("turns_per_s")
    return {
        "llm_delay_s": args.llm_delay,
        "messages": args.messages,
        "customers": args.customers,
        "rounds": args.turn_rounds,
        "runs": runs,
        "two_over_one": round(two / one, 3) if one and two else None,
        "quiet": quiet_ratio(runs),
    }


def measure(args: Any, work: Path, dbs: scale_pg.Databases, pg_pid: int | None) -> dict[str, Any]:
    urls = {workers: dbs.create(f"turns{workers}") for workers in (1, 2)}
    for url in urls.values():
        scale_pg.migrate(url, work / "data-migrate")
    return asyncio.run(_measure(args, work, urls, pg_pid))
