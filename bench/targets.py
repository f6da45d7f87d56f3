"""The issue's targets, checked against the result files: the measured figure, met or not, and by how much.

A target whose benchmark did not run, or ran below the size the target is stated at, is *not assessed*
(``met is None``), with what was measured instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

ACK_RATIO = 0.5
ACK_P99_MS = 50.0
ACK_CONCURRENCY = 64
TURN_P95_MS = 100.0
TURN_MEMORIES = 100_000
SEARCH_P95_MS = 30.0
SEARCH_GROWTH = 2.0
LOCOMO_RECALL = 0.85
LOCOMO_BUDGET = 1000
PROMPT_FLAT = 1.25  # the last tenth of the turns within 25% of the second tenth
PROMPT_TURNS = 1000

Envelope = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Verdict:
    target: str
    goal: str
    measured: str
    met: bool | None

    @property
    def word(self) -> str:
        return {True: "met", False: "**not met**", None: "not assessed"}[self.met]


def below(value: float, limit: float, unit: str) -> str:
    """``value`` against an upper limit: how far under, or how far over (and by what share)."""
    if value < limit:
        return f"{value:,.1f} {unit}, {limit - value:,.1f} {unit} under"
    share = f"{value / limit:.1f}x the limit" if value >= 2 * limit else f"{(value - limit) / limit:.0%}"
    return f"{value:,.1f} {unit}, {value - limit:,.1f} {unit} ({share}) over"


def at_least(value: float, floor: float) -> str:
    if value >= floor:
        return f"{value:.3f}, {value - floor:.3f} above"
    return f"{value:.3f}, {floor - value:.3f} ({(floor - value) / floor:.0%}) short"


def ack(env: Envelope | None) -> Verdict:
    goal = (
        f"hub ≥ {ACK_RATIO:.0%} of bare throughput and hub p99 < {ACK_P99_MS:g} ms "
        f"at concurrency {ACK_CONCURRENCY}"
    )
    name = "Webhook acknowledgement"
    if env is None:
        return Verdict(name, goal, "not run", None)
    levels = {level["concurrency"]: level for level in env["results"]["levels"]}
    level = levels.get(ACK_CONCURRENCY) or levels[max(levels)]
    ratio, p99 = level["hub_over_bare"], level["hub"]["latency"]["p99_ms"]
    measured = f"ratio {at_least(ratio, ACK_RATIO)}; p99 {below(p99, ACK_P99_MS, 'ms')}"
    if level["concurrency"] != ACK_CONCURRENCY:
        return Verdict(name, goal, f"at concurrency {level['concurrency']} only: {measured}", None)
    return Verdict(name, goal, measured, ratio >= ACK_RATIO and p99 < ACK_P99_MS)


def turn(env: Envelope | None) -> Verdict:
    goal = f"p95 < {TURN_P95_MS:g} ms at {TURN_MEMORIES:,} memories"
    name = "Turn overhead"
    if env is None:
        return Verdict(name, goal, "not run", None)
    results = env["results"]
    memories = int(results["preload"]["memories_written"])
    p95 = results["turn"].get("p95_ms")
    if p95 is None:
        return Verdict(name, goal, "no turn measured", None)
    measured = f"p95 {below(p95, TURN_P95_MS, 'ms')} (p50 {results['turn']['p50_ms']:.1f} ms)"
    if memories < TURN_MEMORIES:
        return Verdict(name, goal, f"at {memories:,} memories only: {measured}", None)
    return Verdict(name, goal, measured, p95 < TURN_P95_MS)


def search(env: Envelope | None) -> Verdict:
    goal = f"p95 < {SEARCH_P95_MS:g} ms at 100,000 memories and < {SEARCH_GROWTH:g}x from 10,000 to 100,000"
    name = "Memory search at scale"
    if env is None:
        return Verdict(name, goal, "not run", None)
    rows = {row["memories"]: row for row in env["results"]["local"]["sizes"]}
    if 100_000 not in rows or 10_000 not in rows:
        largest = rows[max(rows)]
        text = f"at {largest['memories']:,} memories only: p95 {largest['p95_ms']:.1f} ms"
        return Verdict(name, goal, text, None)
    p95 = rows[100_000]["p95_ms"]
    growth = p95 / rows[10_000]["p95_ms"]
    verdict = p95 < SEARCH_P95_MS and growth < SEARCH_GROWTH
    measured = f"p95 {below(p95, SEARCH_P95_MS, 'ms')}; growth {growth:.2f}x (limit {SEARCH_GROWTH:g}x)"
    return Verdict(name, goal, measured, verdict)


def locomo_recall(env: Envelope) -> float | None:
    """The product's overall recall at 1,000 tokens, wherever the LoCoMo result keeps it."""
    if isinstance(env.get("recall_at_1000"), int | float):
        return float(env["recall_at_1000"])
    product = env.get("results", {}).get("product", {})
    cell = product.get(str(LOCOMO_BUDGET)) or product.get(LOCOMO_BUDGET)
    if isinstance(cell, dict) and isinstance(cell.get("overall"), int | float):
        return float(cell["overall"])
    return None


def locomo(env: Envelope | None) -> Verdict:
    goal = f"recall@{LOCOMO_BUDGET} ≥ {LOCOMO_RECALL}"
    name = "LoCoMo memory quality"
    if env is None:
        return Verdict(name, goal, "not run", None)
    value = locomo_recall(env)
    if value is None:
        return Verdict(name, goal, "no recall at 1,000 tokens in the result", None)
    return Verdict(name, goal, at_least(value, LOCOMO_RECALL), value >= LOCOMO_RECALL)


def prompt(env: Envelope | None) -> Verdict:
    goal = (
        f"from 10 to {PROMPT_TURNS:,} turns, prompt tokens stay within the budget and flat (last tenth of "
        f"the turns within {PROMPT_FLAT - 1:.0%} of the second tenth)"
    )
    name = "Prompt size"
    if env is None:
        return Verdict(name, goal, "not run", None)
    summary = env["results"].get("summary") or {}
    if not summary:
        return Verdict(name, goal, "too few turns", None)
    turns = len(env["results"]["per_turn"])
    peak, budget, ratio = (
        summary["max_prompt_from_turn_10"],
        summary["budget"],
        summary["last_tenth_over_second_tenth"],
    )
    room = f"{budget - peak:,} to spare" if peak <= budget else f"{peak - budget:,} over"
    measured = (
        f"max {peak:,} of {budget:,} tokens ({room}); last/second tenth {ratio:.2f}x; "
        f"full history {summary['full_history_at_last_turn']:,} tokens at turn {turns:,}"
    )
    if turns < PROMPT_TURNS:
        return Verdict(name, goal, f"at {turns} turns only: {measured}", None)
    return Verdict(name, goal, measured, peak <= budget and ratio <= PROMPT_FLAT)


def all_verdicts(results: dict[str, Envelope]) -> list[Verdict]:
    return [
        ack(results.get("webhook_ack")),
        turn(results.get("turn_overhead")),
        search(results.get("memory_search")),
        locomo(results.get("locomo")),
        prompt(results.get("prompt_size")),
    ]
