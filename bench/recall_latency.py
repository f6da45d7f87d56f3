"""Recall for a customer with a long history: ``LocalMemory.recall`` at 100 and at 10,000 memories of ONE
customer, side by side in one run.

One data dir holds one customer per size (default 100 and 10,000 memories), bulk-loaded with the
product's schema (``bench.preload``). Recall scores every memory of the customer it is asked about
(``core.memory.ranking``), so its cost follows that customer's memory count; ``bench.memory_search``
grows the store with 10 memories per customer and does not show it.

Each timed round asks one support question of every size, in a rotating order, so that each size meets
the same questions and the same moments of a noisy machine. Two kinds of rounds:

- ``steady``: recalls one after another, nothing written in between;
- ``after_write``: before each recall (untimed) the customer gets one new memory through the product's
  write path (``LocalMemory.remember``, ``infer=False``), and after it that memory is deleted again
  (untimed), so the size stays put. This is a conversation's pattern: a turn writes, the next one recalls.

A recall is the whole product path with the agent's default limit: a hop to a worker thread, the query
embedding (local ONNX model), the index's recall signals, ranking, and the payloads of the returned
memories. The first recall of each customer after opening the store is reported on its own (``first``).

``python -m bench.recall_latency --sizes 100 10000 --queries 300``; ``--page docs/benchmarks.md`` also
writes this benchmark's section of that page (between ``<!-- recall_latency:begin -->`` and
``<!-- recall_latency:end -->``, or before the page's closing "Rendered" line the first time).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

from bench.common import RESULTS_DIR, Run, exit_cleanly_on_sigterm, summary_ms
from bench.corpus import Corpus
from bench.machine import print_machine
from bench.memory_search import agent_limit
from bench.preload import Loaded, add_memories, customer_ids, embed_pool, timed
from bench.report import _notes, _params, machine_line, table
from core.memory import mem0_oss
from core.memory.embedder import shared_embedder
from core.memory.local import LocalMemory
from core.messages import ChatMessage, Provenance
from core.settings import LLMSettings

NAME = "recall_latency"
BEGIN, END = f"<!-- {NAME}:begin -->", f"<!-- {NAME}:end -->"
P95_GOAL_MS = 30.0
GROWTH_GOAL = 2.0
MODES = ("steady", "after_write")


async def recall_ms(memory: LocalMemory, customer: Loaded, query: str, limit: int) -> tuple[float, int]:
    started_at = time.perf_counter()
    records = await memory.recall(customer.customer_id, query, limit=limit)
    return time.perf_counter() - started_at, len(records)


async def write_one(memory: LocalMemory, customer: Loaded, text: str, turn: int) -> list[str]:
    provenance = Provenance(
        channel="telegram",
        handle=customer.address,
        message_ids=(f"inbox:{turn}",),
        category="support_history",
        turn_ids=(turn,),
    )
    return await memory.remember(
        customer.customer_id, [ChatMessage(role="user", content=text)], provenance=provenance, infer=False
    )


async def measure(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    corpus = Corpus(args.seed)
    sizes = sorted(set(args.sizes))
    started_at = time.perf_counter()
    texts = corpus.facts(args.distinct_texts)
    vectors = embed_pool(texts)
    timed(f"embedded {len(texts)} distinct memory texts", started_at)
    customers = customer_ids(len(sizes) + 1, seed=args.seed)
    by_size = dict(zip(sizes, customers, strict=False))
    data_dir = work / "data"
    turn = 1
    for size, customer in by_size.items():
        started_at = time.perf_counter()
        add_memories(data_dir, [customer], size, texts, vectors, seed=args.seed + size, first_turn=turn)
        turn += size
        timed(f"loaded {size} memories of one customer", started_at)

    index = mem0_oss.sqlite_index(data_dir)
    memory = LocalMemory(data_dir=data_dir, llm=LLMSettings(), index=lambda: index)
    limit = agent_limit()
    seconds: dict[str, dict[int, list[float]]] = {mode: {size: [] for size in sizes} for mode in MODES}
    found: dict[str, dict[int, int]] = {mode: dict.fromkeys(sizes, 0) for mode in MODES}
    first: dict[int, float] = {}
    embedding: list[float] = []
    try:
        # opens Mem0 and the index, loads the embedder: a customer without memories
        await memory.recall(customers[-1].customer_id, corpus.question(), limit=limit)
        for size, customer in by_size.items():
            first[size], _ = await recall_ms(memory, customer, corpus.question(), limit)
        for mode in MODES:
            for round_ in range(args.warmup + args.queries):
                query = corpus.question()
                measured = round_ >= args.warmup
                shift = round_ % len(sizes)
                for size in sizes[shift:] + sizes[:shift]:
                    customer = by_size[size]
                    written: list[str] = []
                    if mode == "after_write":
                        written = await write_one(memory, customer, corpus.fact(), turn)
                        turn += 1
                    took, count = await recall_ms(memory, customer, query, limit)
                    for memory_id in written:
                        await asyncio.to_thread(index.delete, memory_id)
                    if measured:
                        seconds[mode][size].append(took)
                        found[mode][size] += count
                if measured and mode == MODES[0]:
                    started_at = time.perf_counter()
                    shared_embedder().embed_one(query)
                    embedding.append(time.perf_counter() - started_at)
    finally:
        await memory.aclose()
    first_ms = {str(size): round(took * 1000, 3) for size, took in first.items()}
    results: dict[str, Any] = {"limit": limit, "first_ms": first_ms}
    for mode in MODES:
        rows = [
            {
                "memories": size,
                "mean_results": round(found[mode][size] / max(1, len(seconds[mode][size])), 2),
                **summary_ms(seconds[mode][size]),
            }
            for size in sizes
        ]
        results[mode] = {"sizes": rows, **growth(rows)}
    results["query_embedding"] = summary_ms(embedding)
    return results


def growth(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The largest size's p50 and p95 over the smallest's."""
    if len(rows) < 2:
        return {}
    small, large = rows[0], rows[-1]
    return {
        "p50_growth": round(large["p50_ms"] / small["p50_ms"], 3),
        "p95_growth": round(large["p95_ms"] / small["p95_ms"], 3),
    }


# ----- the page ---------------------------------------------------------------------------------


def section(env: dict[str, Any]) -> list[str]:
    """This benchmark's section of ``docs/benchmarks.md``."""
    results = env["results"]
    lines = [
        BEGIN,
        "## Recall for one customer with a long history",
        "",
        machine_line(env),
        "",
        _params(env),
        "",
        *_notes(env),
        "",
        f"`LocalMemory.recall` asking for {results['limit']} memories of one customer, every size in the "
        "same rounds. *steady*: recalls one after another; *after a write*: the customer got a new memory "
        "(`remember`) just before each recall. Goal: p95 under "
        f"{P95_GOAL_MS:g} ms at the largest size and under {GROWTH_GOAL:g}x from the smallest.",
        "",
    ]
    rows = []
    for mode in MODES:
        label = "steady" if mode == "steady" else "after a write"
        for row in results[mode]["sizes"]:
            rows.append(
                [
                    label,
                    f"{row['memories']:,}",
                    row["p50_ms"],
                    row["p95_ms"],
                    row["p99_ms"],
                    row["mean_results"],
                ]
            )
    lines += table(["recall", "memories of the customer", "p50 ms", "p95 ms", "p99 ms", "returned"], rows)
    growths = "; ".join(
        f"{'steady' if mode == 'steady' else 'after a write'} p95 {results[mode].get('p95_growth', '-')}x"
        for mode in MODES
    )
    embed = results["query_embedding"]
    first = ", ".join(f"{int(size):,}: {ms} ms" for size, ms in results["first_ms"].items())
    lines += [
        "",
        f"Growth from the smallest to the largest size: {growths}. Embedding the query alone (part of every "
        f"recall): p50 {embed.get('p50_ms')} ms, p95 {embed.get('p95_ms')} ms. First recall of each customer "
        f"after the store opened (its rows read from the file): {first}.",
        END,
    ]
    return lines


def write_page(env: dict[str, Any], page: Path) -> None:
    text = page.read_text(encoding="utf-8") if page.is_file() else "# Benchmarks\n"
    block = "\n".join(section(env))
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        _, tail = rest.split(END, 1)
        text = head + block + tail
    else:
        marker = "\n*Rendered "
        at = text.rfind(marker)
        text = text + "\n" + block + "\n" if at < 0 else text[: at + 1] + block + "\n" + text[at:]
    page.write_text(text, encoding="utf-8")
    print(f"wrote the {NAME} section of {page}", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Recall latency for one customer as their memories grow.")
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 10_000], help="one customer's memories")
    parser.add_argument("--queries", type=int, default=300, help="timed recalls per size and kind of round")
    parser.add_argument("--warmup", type=int, default=20, help="untimed rounds first, for each kind")
    parser.add_argument("--distinct-texts", type=int, default=3_000, help="memory texts embedded for reuse")
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    parser.add_argument("--page", type=Path, default=None, help="also write this benchmark's section there")
    parser.add_argument("--page-only", action="store_true", help="render the section from --out's result")
    args = parser.parse_args(argv)
    if args.page_only:
        if args.page is None:
            parser.error("--page-only needs --page")
        write_page(json.loads((args.out / f"{NAME}.json").read_text(encoding="utf-8")), args.page)
        return
    if min(args.sizes) < 1:
        parser.error("every size must be at least 1")
    exit_cleanly_on_sigterm()
    machine = print_machine()
    run = Run(NAME, machine, {k: v for k, v in vars(args).items() if k not in ("out", "page", "page_only")})
    run.note(
        "LocalMemory.recall (Mem0 open source over our SQLite memory index and the local ONNX embedder) with "
        "the agent's default limit, one recall at a time; one customer per size in one store, memories "
        "bulk-loaded with the product's payload schema, vectors from the real embedder over a pool of "
        "distinct texts."
    )
    with TemporaryDirectory(prefix="bench-recall-") as tmp:
        results = asyncio.run(measure(args, Path(tmp)))
    for mode in MODES:
        for row in results[mode]["sizes"]:
            print(f"  {mode} {row['memories']:>7} memories: p50 {row['p50_ms']} ms, p95 {row['p95_ms']} ms")
    path = run.write(results, args.out)
    if args.page is not None:
        write_page(json.loads(path.read_text(encoding="utf-8")), args.page)


if __name__ == "__main__":
    main()
