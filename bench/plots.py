"""The report's PNG plots (matplotlib, Agg backend: no display needed). Each function writes one file.

Without matplotlib (it is in the ``bench`` extra, not the runtime dependencies) ``available()`` is False
and the report says that its plots were not drawn.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path
from typing import Any

DPI = 110
HUB = "#1f77b4"
BARE = "#aaaaaa"
OTHER = "#d62728"


def available() -> bool:
    return importlib.util.find_spec("matplotlib") is not None


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    _pyplot().close(fig)
    return path


def webhook_ack(levels: Sequence[dict[str, Any]], path: Path) -> Path:
    """Throughput bars (hub, bare) and p50/p99 latency per concurrency."""
    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    labels = [str(level["concurrency"]) for level in levels]
    xs = range(len(levels))
    width = 0.38
    left.bar(
        [x - width / 2 for x in xs],
        [lv["hub"]["throughput_rps"] for lv in levels],
        width,
        label="hub",
        color=HUB,
    )
    left.bar(
        [x + width / 2 for x in xs],
        [lv["bare"]["throughput_rps"] for lv in levels],
        width,
        label="bare route",
        color=BARE,
    )
    left.set_xticks(list(xs), labels)
    left.set_xlabel("concurrent connections")
    left.set_ylabel("acknowledged requests / s")
    left.set_title("Throughput")
    left.legend()
    for name, color in (("hub", HUB), ("bare", BARE)):
        for stat, style in (("p50_ms", "-o"), ("p99_ms", "--s")):
            right.plot(
                labels,
                [lv[name]["latency"][stat] for lv in levels],
                style,
                color=color,
                label=f"{'hub' if name == 'hub' else 'bare'} {stat[:3]}",
            )
    right.set_yscale("log")
    right.set_xlabel("concurrent connections")
    right.set_ylabel("latency (ms, log scale)")
    right.set_title("Acknowledgement latency")
    right.legend(fontsize=8)
    return _save(fig, path)


def turn_overhead(summary: dict[str, Any], target_ms: float, path: Path) -> Path:
    """The turn-time percentiles as bars against the target."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    stats = [("p50", "p50_ms"), ("p95", "p95_ms"), ("p99", "p99_ms"), ("max", "max_ms")]
    ax.bar([s[0] for s in stats], [summary.get(s[1], 0.0) for s in stats], color=HUB)
    ax.axhline(target_ms, color=OTHER, linestyle="--", label=f"target p95 < {target_ms:g} ms")
    ax.set_ylabel("inbox commit → reply at platform (ms)")
    ax.set_title("Turn overhead")
    ax.legend()
    return _save(fig, path)


def memory_search(
    rows: Sequence[dict[str, Any]], platform: dict[str, Any] | None, target_ms: float, path: Path
) -> Path:
    """Recall p50/p95 against the number of memories (log x), with the target line."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4))
    sizes = [row["memories"] for row in rows]
    ax.plot(sizes, [row["p50_ms"] for row in rows], "-o", color=HUB, label="local p50")
    ax.plot(sizes, [row["p95_ms"] for row in rows], "--s", color=HUB, label="local p95")
    if platform and "p95_ms" in platform:
        ax.plot(
            [platform["memories"]], [platform["p95_ms"]], "^", color=BARE, label="platform client + fake, p95"
        )
    ax.axhline(target_ms, color=OTHER, linestyle=":", label=f"target p95 < {target_ms:g} ms")
    ax.set_xscale("log")
    ax.set_xlabel("memories in the store (10 per customer)")
    ax.set_ylabel("recall latency (ms)")
    ax.set_title("Memory search at scale")
    ax.legend(fontsize=8)
    return _save(fig, path)


def prompt_size(per_turn: Sequence[dict[str, Any]], budget: int | None, path: Path) -> Path:
    """Prompt tokens per turn: the product's prompt, Mem0's extraction call, the full history."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    turns = [row["turn"] for row in per_turn]
    ax.plot(turns, [row["full_history"] for row in per_turn], color=BARE, label="full history (no memory)")
    ax.plot(
        turns, [row["prompt"] for row in per_turn], color=HUB, label="product prompt (memory + recent turns)"
    )
    if any(row.get("extraction") for row in per_turn):
        ax.plot(
            turns,
            [row["extraction"] for row in per_turn],
            color="#2ca02c",
            alpha=0.7,
            label="memory write (Mem0 extraction call)",
        )
    if budget:
        ax.axhline(budget, color=OTHER, linestyle="--", label=f"prompt budget ({budget} tokens)")
    ax.set_xlabel("customer turns so far")
    ax.set_ylabel("tokens per turn")
    ax.set_yscale("log")
    ax.set_title("Prompt size as the history grows")
    ax.legend(fontsize=8)
    return _save(fig, path)


def locomo(series: dict[str, dict[int, float]], target: float, path: Path) -> Path:
    """Overall recall per method against the token budget."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4))
    colors = {"product": HUB, "bm25": BARE, "dense": "#2ca02c"}
    for method, points in series.items():
        budgets = sorted(points)
        ax.plot(budgets, [points[b] for b in budgets], "-o", label=method, color=colors.get(method))
    ax.axhline(target, color=OTHER, linestyle="--", label=f"target {target:g} at 1,000 tokens")
    ax.set_xlabel("memory budget (tokens)")
    ax.set_ylabel("recall (evidence in context)")
    ax.set_ylim(0, 1)
    ax.set_title("LoCoMo recall")
    ax.legend(fontsize=8)
    return _save(fig, path)
