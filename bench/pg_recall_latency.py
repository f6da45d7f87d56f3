"""Recall for a customer with a long history on PostgreSQL (scale mode): ``LocalMemory.recall`` over the
PostgreSQL memory index at 100 and at 10,000 memories of ONE customer, with the kept scopes
(``core.memory.pg_scopes``, the product) and with a read of the whole scope on every recall (what the
index did before), side by side in one run.

A fresh database is made on the server (``--database-url``, default the local test server) and dropped
afterwards; one customer per size and variant (the two variants' alike, so that one variant's writes never
reach the scope the other keeps) is loaded through the index's own write path (``PostgresIndex.insert``)
with the product's payload schema and vectors from the real embedder over a pool of distinct texts, then
vacuumed and analysed (``settle``: as autovacuum leaves a table whose rows are mostly old). Two
indexes are open on the same tables, one per variant; each timed round asks one support question of
every size and variant, in a rotating order, so that they meet the same questions and the same moments of
a noisy machine. ``steady``: recalls one after another; ``after_write``: before each recall (untimed) the
customer gets one new memory through ``LocalMemory.remember`` (through the variant's own index), deleted
again after it and that deletion seen by an untimed recall, so the size stays put and each timed recall
follows exactly one new memory (a kept scope reads it by the new rids alone); ``after_delete``: one new
memory written and seen by an untimed recall, then deleted just before the timed one (a kept scope reads
every rid: a row left).

``python -m bench.pg_recall_latency --sizes 100 10000 --queries 200``
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import random
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import psycopg
from numpy.typing import NDArray

from bench.common import RESULTS_DIR, Run, exit_cleanly_on_sigterm, summary_ms
from bench.corpus import Corpus
from bench.machine import print_machine
from bench.memory_search import agent_limit
from bench.preload import Loaded, customer_ids, embed_pool, memory_payload, timed
from bench.recall_latency import growth, recall_ms, write_one
from core.memory.embedder import DIMS
from core.memory.local import LocalMemory
from core.memory.mem0_quirks import COLLECTION
from core.memory.pg_connect import libpq_dsn
from core.memory.pg_index import PostgresIndex
from core.memory.pg_scopes import PgScopeCache
from core.settings import LLMSettings

NAME = "pg_recall_latency"
VARIANTS = ("kept", "read")  # the product's kept scopes; the whole scope read on every recall
MODES = ("steady", "after_write", "after_delete")
DEFAULT_URL = os.environ.get("THREADLINE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
_CHUNK = 500


def load(
    index: PostgresIndex, customer: Loaded, size: int, texts: list[str], vectors: NDArray[Any], *, seed: int
) -> None:
    rng = random.Random(seed)
    now = datetime.now(UTC)
    for start in range(0, size, _CHUNK):
        picks = [rng.randrange(len(texts)) for _ in range(min(_CHUNK, size - start))]
        whens = [now - timedelta(minutes=rng.randint(1, 525_600)) for _ in picks]
        index.insert(
            [vectors[p] for p in picks],
            payloads=[
                memory_payload(customer, texts[p], when, start + i + 1, rng)
                for i, (p, when) in enumerate(zip(picks, whens, strict=True))
            ],
        )


def settle(url: str) -> None:
    """VACUUM ANALYZE the index's rows once loaded: what autovacuum does to a table at rest, and a long
    history is mostly old rows (their pages all-visible, so the rid check reads the index alone)."""
    with psycopg.connect(libpq_dsn(url), autocommit=True) as conn:
        conn.execute("VACUUM (ANALYZE) memory_index_rows")


async def measure(args: argparse.Namespace, url: str, work: Path) -> dict[str, Any]:
    corpus = Corpus(args.seed)
    sizes = sorted(set(args.sizes))
    started_at = time.perf_counter()
    texts = corpus.facts(args.distinct_texts)
    vectors = embed_pool(texts)
    timed(f"embedded {len(texts)} distinct memory texts", started_at)
    # a customer per size and variant, each variant's loaded alike: one variant's writes never reach the
    # scope the other keeps (a kept scope checks only its own customer's changes)
    customers = iter(customer_ids(len(sizes) * len(VARIANTS), seed=args.seed))
    by_size = {variant: {size: next(customers) for size in sizes} for variant in VARIANTS}
    indexes = {
        "kept": PostgresIndex(url, collection_name=COLLECTION, embedding_model_dims=DIMS),
        "read": PostgresIndex(
            url, collection_name=COLLECTION, embedding_model_dims=DIMS, scopes=PgScopeCache(min_rows=10**9)
        ),
    }
    for variant in VARIANTS:
        for size, customer in by_size[variant].items():
            started_at = time.perf_counter()
            await asyncio.to_thread(
                load, indexes[variant], customer, size, texts, vectors, seed=args.seed + size
            )
            timed(f"loaded {size} memories of one customer ({variant})", started_at)
    await asyncio.to_thread(settle, url)
    memories = {
        variant: LocalMemory(
            data_dir=work / variant, llm=LLMSettings(), index=functools.partial(lambda i: i, index)
        )
        for variant, index in indexes.items()
    }
    limit = agent_limit()
    seconds: dict[str, dict[str, dict[int, list[float]]]] = {
        v: {m: {s: [] for s in sizes} for m in MODES} for v in VARIANTS
    }
    first: dict[str, dict[int, float]] = {v: {} for v in VARIANTS}
    turn = 10**6
    try:
        for variant in VARIANTS:
            for size, customer in by_size[variant].items():
                first[variant][size], _ = await recall_ms(
                    memories[variant], customer, corpus.question(), limit
                )
        for mode in MODES:
            for round_ in range(args.warmup + args.queries):
                query = corpus.question()
                shift = round_ % (len(sizes) * len(VARIANTS))
                pairs = [(s, v) for s in sizes for v in VARIANTS]
                for size, variant in pairs[shift:] + pairs[:shift]:
                    memory, customer, index = memories[variant], by_size[variant][size], indexes[variant]
                    written: list[str] = []
                    if mode != "steady":
                        written = await write_one(memory, customer, corpus.fact(), turn)
                        turn += 1
                    if mode == "after_delete":
                        await recall_ms(memory, customer, query, limit)  # untimed: the write is seen
                        for memory_id in written:
                            await asyncio.to_thread(index.delete, memory_id)
                    took, _ = await recall_ms(memory, customer, query, limit)
                    if mode == "after_write":
                        for memory_id in written:
                            await asyncio.to_thread(index.delete, memory_id)
                        await recall_ms(memory, customer, query, limit)  # untimed: the deletion is seen
                    if round_ >= args.warmup:
                        seconds[variant][mode][size].append(took)
    finally:
        for memory in memories.values():
            await memory.aclose()
    results: dict[str, Any] = {"limit": limit}
    for variant in VARIANTS:
        results[variant] = {"first_ms": {str(s): round(t * 1000, 3) for s, t in first[variant].items()}}
        for mode in MODES:
            rows = [{"memories": s, **summary_ms(seconds[variant][mode][s])} for s in sizes]
            results[variant][mode] = {"sizes": rows, **growth(rows)}
    results["kept_over_read_p50"] = {
        mode: {
            str(s): round(
                summary_ms(seconds["kept"][mode][s])["p50_ms"]
                / summary_ms(seconds["read"][mode][s])["p50_ms"],
                3,
            )
            for s in sizes
        }
        for mode in MODES
    }
    return results


def fresh_database(url: str) -> tuple[str, str]:
    """A new empty database on the server of ``url``: (its name, its URL)."""
    name = f"threadline_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(libpq_dsn(url), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base, _, _ = url.rpartition("/")
    return name, f"{base}/{name}"


def drop_database(url: str, name: str) -> None:
    with psycopg.connect(libpq_dsn(url), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Recall latency on PostgreSQL, kept scopes against reads.")
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 10_000], help="one customer's memories")
    parser.add_argument("--queries", type=int, default=200, help="timed recalls per size, variant and kind")
    parser.add_argument("--warmup", type=int, default=10, help="untimed rounds first, for each kind")
    parser.add_argument("--distinct-texts", type=int, default=3_000, help="memory texts embedded for reuse")
    parser.add_argument(
        "--database-url", default=DEFAULT_URL, help="a PostgreSQL server to make a database on"
    )
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)
    if min(args.sizes) < 1:
        parser.error("every size must be at least 1")
    exit_cleanly_on_sigterm()
    machine = print_machine()
    params = {k: v for k, v in vars(args).items() if k not in ("out", "database_url")}
    run = Run(NAME, machine, params)
    run.note(
        "LocalMemory.recall (Mem0 open source over the PostgreSQL memory index and the local ONNX embedder) "
        "with the agent's default limit, one recall at a time, on the local PostgreSQL; 'kept': the "
        "product (core.memory.pg_scopes), 'read': the whole scope read on every recall, as before."
    )
    name, url = fresh_database(args.database_url)
    try:
        with TemporaryDirectory(prefix="bench-pg-recall-") as tmp:
            results = asyncio.run(measure(args, url, Path(tmp)))
    finally:
        drop_database(args.database_url, name)
    for variant in VARIANTS:
        for mode in MODES:
            for row in results[variant][mode]["sizes"]:
                print(
                    f"  {variant} {mode} {row['memories']:>7} memories: "
                    f"p50 {row['p50_ms']} ms, p95 {row['p95_ms']} ms",
                    flush=True,
                )
    run.write(results, args.out)


if __name__ == "__main__":
    main()
