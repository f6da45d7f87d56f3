"""Memory search at scale: recall latency through the product's ``LocalMemory.recall`` as memories grow.

One data dir per size (default 1k, 10k, 100k memories, 10 per customer). ``--queries`` rounds are
timed: in each, one support question is asked of every size (in a rotating order, each time for a
random customer of that store), so that every size meets the same questions and the same moments of a
noisy machine. A recall asks for as many memories as the agent does with the default settings
(``core.agent.agent.candidates_for``: enough candidates to fill the prompt's memory budget). A recall is the
whole product path: a hop to a worker thread, Mem0's ``search`` (query embedding with the local ONNX
model, the vector search scoped to the customer, the FTS5 keyword search, Mem0's scoring) and our
record conversion. The query embedding
alone is timed too, since it is a fixed part of every recall.

Memories are bulk-loaded into the vector store with the product's schema (``bench.preload``).

The hosted ``platform`` backend is measured only against ``tests/fakes/mem0_platform.py`` in its own
process and only at ``--platform-size`` memories: that figure is our client (``PlatformMemory`` over
``mem0.AsyncMemoryClient`` over loopback HTTP) plus a local fake that scans a dict, not Mem0's service,
whose latency depends on its network and servers and cannot be measured from this machine.

``python -m bench.memory_search --sizes 1000 10000 100000 --queries 300``
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import numpy as np
from numpy.typing import NDArray
from pydantic import SecretStr

from bench.common import RESULTS_DIR, Run, exit_cleanly_on_sigterm, summary_ms
from bench.corpus import Corpus
from bench.fake_servers import MEM0_KEY
from bench.machine import print_machine
from bench.preload import Loaded, add_memories, customer_ids, embed_pool, timed
from bench.procs import python_cmd, started
from core.agent.agent import candidates_for
from core.memory.embedder import shared_embedder
from core.memory.local import LocalMemory
from core.memory.platform import PlatformMemory
from core.messages import ChatMessage, Provenance
from core.ports import MemoryStore
from core.settings import LLMSettings, MemorySettings


async def time_recalls(
    memory: MemoryStore, customers: list[Loaded], queries: list[str], limit: int, seed: int
) -> tuple[list[float], float]:
    """Seconds per recall, and the mean number of memories returned."""
    rng = random.Random(seed)
    seconds: list[float] = []
    found = 0
    for query in queries:
        customer = rng.choice(customers)
        started_at = time.perf_counter()
        records = await memory.recall(customer.customer_id, query, limit=limit)
        seconds.append(time.perf_counter() - started_at)
        found += len(records)
    return seconds, found / max(1, len(queries))


@dataclass
class Store:
    """One data dir holding ``size`` memories, and what its recalls took."""

    size: int
    customers: list[Loaded]
    memory: LocalMemory
    load_s: float
    seconds: list[float] = field(default_factory=list)
    found: int = 0

    def row(self) -> dict[str, Any]:
        return {
            "memories": self.size,
            "customers": len(self.customers),
            "load_s": round(self.load_s, 1),
            "mean_results": round(self.found / max(1, len(self.seconds)), 2),
            **summary_ms(self.seconds),
        }


def agent_limit() -> int:
    """How many memories the agent asks the store for with the default settings."""
    settings = MemorySettings()
    return candidates_for(settings.context_tokens, settings.recall_limit)


async def load_stores(
    args: argparse.Namespace, work: Path, texts: list[str], vectors: NDArray[np.float32]
) -> list[Store]:
    """One data dir per size, each with the first ``size / per_customer`` customers' memories."""
    everyone = customer_ids(max(args.sizes) // args.per_customer, seed=args.seed)
    stores = []
    for size in sorted(set(args.sizes)):
        data_dir = work / f"local-{size}"
        customers = everyone[: size // args.per_customer]
        started_at = time.perf_counter()
        add_memories(data_dir, customers, args.per_customer, texts, vectors, seed=args.seed + size)
        load_s = timed(f"loaded {size} memories", started_at)
        stores.append(Store(size, customers, LocalMemory(data_dir=data_dir, llm=LLMSettings()), load_s))
    return stores


async def interleaved(
    stores: list[Store], args: argparse.Namespace, corpus: Corpus, limit: int
) -> list[float]:
    """Rounds of one query asked of every store (in a rotating order), then embedded alone: each size
    sees the same queries and the same moments of a noisy machine. Returns the embedding times."""
    rng = random.Random(args.seed)
    embedder = shared_embedder()
    embedding: list[float] = []
    for round_ in range(args.warmup + args.queries):
        query = corpus.question()
        measured = round_ >= args.warmup
        shift = round_ % len(stores)
        for store in stores[shift:] + stores[:shift]:
            customer = rng.choice(store.customers)
            started_at = time.perf_counter()
            records = await store.memory.recall(customer.customer_id, query, limit=limit)
            if measured:
                store.seconds.append(time.perf_counter() - started_at)
                store.found += len(records)
        started_at = time.perf_counter()
        embedder.embed_one(query)
        if measured:
            embedding.append(time.perf_counter() - started_at)
    return embedding


async def measure_local(args: argparse.Namespace, work: Path, corpus: Corpus) -> dict[str, Any]:
    limit = agent_limit()
    started_at = time.perf_counter()
    texts = corpus.facts(args.distinct_texts)
    vectors = embed_pool(texts)
    pool_s = timed(f"embedded {len(texts)} distinct memory texts", started_at)
    stores: list[Store] = []
    try:
        stores = await load_stores(args, work, texts, vectors)
        embedding = await interleaved(stores, args, corpus, limit)
    finally:
        for store in stores:
            await store.memory.aclose()
    rows = [store.row() for store in stores]
    for row in rows:
        print(f"  {row['memories']:>7} memories: p50 {row['p50_ms']} ms, p95 {row['p95_ms']} ms", flush=True)
    return {
        "limit": limit,
        "sizes": rows,
        "query_embedding": summary_ms(embedding),
        "pool_embedding_s": round(pool_s, 1),
        **_growth(rows),
    }


def _growth(rows: list[dict[str, Any]]) -> dict[str, Any]:
    by_size = {row["memories"]: row for row in rows}
    if 10_000 in by_size and 100_000 in by_size:
        return {"p95_growth_10k_to_100k": round(by_size[100_000]["p95_ms"] / by_size[10_000]["p95_ms"], 3)}
    if len(rows) >= 2:
        return {"p95_growth_smallest_to_largest": round(rows[-1]["p95_ms"] / rows[0]["p95_ms"], 3)}
    return {}


async def measure_platform(args: argparse.Namespace, work: Path, corpus: Corpus) -> dict[str, Any]:
    with started("fake-mem0", python_cmd("bench.fake_servers", "mem0"), log_dir=work) as fake:
        host = fake.first_line()
        memory = PlatformMemory(api_key=SecretStr(MEM0_KEY), host=host, data_dir=work / "platform")
        customers = customer_ids(max(1, args.platform_size // args.per_customer), seed=args.seed + 1)
        try:
            started_at = time.perf_counter()
            for c in customers:
                for turn in range(args.per_customer):
                    provenance = Provenance(
                        channel="telegram",
                        handle=c.address,
                        message_ids=(f"inbox:{turn}",),
                        category="support_history",
                        turn_ids=(turn,),
                    )
                    await memory.remember(
                        c.customer_id,
                        [ChatMessage(role="user", content=corpus.fact())],
                        provenance=provenance,
                        infer=False,
                    )
            load_s = timed(f"added {len(customers) * args.per_customer} memories to the fake", started_at)
            limit = agent_limit()
            await time_recalls(memory, customers, [corpus.question() for _ in range(args.warmup)], limit, 1)
            queries = [corpus.question() for _ in range(args.queries)]
            seconds, mean_found = await time_recalls(memory, customers, queries, limit, seed=2)
        finally:
            await memory.aclose()
    return {
        "memories": len(customers) * args.per_customer,
        "customers": len(customers),
        "load_s": round(load_s, 1),
        "mean_results": round(mean_found, 2),
        **summary_ms(seconds),
    }


async def measure(args: argparse.Namespace, work: Path, run: Run) -> dict[str, Any]:
    corpus = Corpus(args.seed)
    results: dict[str, Any] = {"local": await measure_local(args, work, corpus)}
    if args.platform_size > 0:
        results["platform"] = await measure_platform(args, work, corpus)
        run.note(
            "platform: our client (PlatformMemory, mem0.AsyncMemoryClient) against "
            "tests/fakes/mem0_platform.py "
            "in its own process on loopback, at one size only. It is not Mem0's service (unreachable from "
            "here, and its latency is its network's and servers'); the fake scans a dict, so larger sizes "
            "would measure the fake."
        )
    else:
        results["platform"] = {"left_out": "--platform-size 0"}
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Recall latency of the local memory backend as it grows.")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000, 100_000])
    parser.add_argument("--per-customer", type=int, default=10)
    parser.add_argument("--queries", type=int, default=300, help="timed recalls per size")
    parser.add_argument("--warmup", type=int, default=20, help="untimed recalls per size first")
    parser.add_argument("--distinct-texts", type=int, default=3_000, help="memory texts embedded for reuse")
    parser.add_argument("--platform-size", type=int, default=1_000, help="0 leaves the platform backend out")
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)
    if min(args.sizes) < args.per_customer:
        parser.error("every size must hold at least one customer")
    exit_cleanly_on_sigterm()
    machine = print_machine()
    run = Run("memory_search", machine, {k: v for k, v in vars(args).items() if k != "out"})
    run.note(
        "local: LocalMemory.recall (Mem0 open source over our SQLite vector store and the local ONNX "
        "embedder) with the agent's default limit, one recall at a time; memories bulk-loaded with the "
        "product's payload schema, "
        "vectors from the real embedder over a pool of distinct texts."
    )
    with TemporaryDirectory(prefix="bench-memory-") as tmp:
        results = asyncio.run(measure(args, Path(tmp), run))
    run.write(results, args.out)


if __name__ == "__main__":
    main()
