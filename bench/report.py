"""Renders ``docs/benchmarks.md`` (tables, PNG plots in ``docs/img/``) from ``bench/results/*.json``.

``python -m bench.report [--results bench/results] [--out docs/benchmarks.md] [--img docs/img]``

Every section shows the machine its figures came from. The targets section checks each of the issue's
targets (``bench.targets``). ``locomo.json`` (written by ``bench/locomo.py``) is included when present.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import plots, targets
from bench.common import RESULTS_DIR
from bench.machine import ROOT

Envelope = dict[str, Any]
Lines = list[str]

NAMES = {"locomo-recall": "locomo"}  # benchmark names whose file name differs


def load_results(results_dir: Path) -> dict[str, Envelope]:
    """Every result file of ``results_dir``, keyed by file stem (``webhook_ack``, ``locomo``, ...)."""
    found: dict[str, Envelope] = {}
    for path in sorted(results_dir.glob("*.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and "results" in data:
            found[path.stem] = data
    return found


def table(head: Sequence[str], rows: Sequence[Sequence[Any]]) -> Lines:
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return lines


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.1f}" if abs(value) >= 10 else f"{value:.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def machine_line(env: Envelope) -> str:
    """One line saying where and when a result was measured (tolerates other scripts' machine keys)."""
    box = env.get("machine", {})
    cores = box.get("usable_cores") or box.get("cores_usable") or box.get("cores")
    load = box.get("load_average")
    python = box.get("python", "")
    when = env.get("started_at") or box.get("taken_at") or ""
    parts = [f"{box.get('cpu', '?')}, {cores} cores, {box.get('memory_gib', '?')} GiB", str(python)]
    if load:
        parts.append("load average at start " + " / ".join(str(x) for x in load))
    if box.get("git_commit"):
        parts.append(f"commit {box['git_commit']}" + (" + local changes" if box.get("git_dirty") else ""))
    if when:
        parts.append(when)
    duration = env.get("duration_s") or env.get("run_seconds")
    if duration:
        parts.append(f"took {float(duration):.0f} s")
    return "*Machine:* " + "; ".join(parts) + "."


def _shown(value: Any) -> Any:
    """A parameter as the page shows it: absolute file paths by their names."""
    if isinstance(value, list):
        return [_shown(v) for v in value]
    if isinstance(value, str) and value.startswith("/"):
        return Path(value).name
    return value


def _params(env: Envelope) -> str:
    params = env.get("params") or env.get("args") or {}
    shown = ", ".join(f"`{k}={_shown(v)}`" for k, v in params.items() if not isinstance(v, dict))
    return f"*Sizes:* {shown}." if shown else ""


def _notes(env: Envelope) -> Lines:
    return [f"> {note}" for note in env.get("notes", [])]


class Images:
    """Draws plots into ``img_dir`` and gives their links relative to the report."""

    def __init__(self, img_dir: Path, report: Path) -> None:
        self.img_dir = img_dir
        self.report = report

    def add(self, name: str, draw: Callable[[Path], Path], alt: str) -> Lines:
        if not plots.available():
            return ['*(plot not drawn: matplotlib is not installed; `uv pip install -e ".[bench]"`)*']
        path = draw(self.img_dir / f"{name}.png")
        link = os.path.relpath(path, self.report.parent)
        return [f"![{alt}]({link})"]


def webhook_section(env: Envelope, images: Images) -> Lines:
    levels = env["results"]["levels"]
    rows = [
        [
            lv["concurrency"],
            lv["hub"]["throughput_rps"],
            lv["hub"]["latency"]["p50_ms"],
            lv["hub"]["latency"]["p99_ms"],
            lv["bare"]["throughput_rps"],
            lv["bare"]["latency"]["p50_ms"],
            lv["bare"]["latency"]["p99_ms"],
            f"{lv['hub_over_bare']:.0%}",
            lv["drain_s"],
        ]
        for lv in levels
    ]
    head = [
        "concurrency",
        "hub req/s",
        "hub p50 ms",
        "hub p99 ms",
        "bare req/s",
        "bare p50 ms",
        "bare p99 ms",
        "hub / bare",
        "hub drained after (s)",
    ]
    by_channel = [
        [lv["concurrency"], name, stats.get("p50_ms", "-"), stats.get("p99_ms", "-")]
        for lv in levels
        for name, stats in lv["hub"]["by_channel"].items()
    ]
    statuses = sorted(
        {status for lv in levels for side in ("hub", "bare") for status in lv[side]["statuses"]}
    )
    return [
        "## Webhook acknowledgement",
        "",
        machine_line(env),
        "",
        _params(env),
        "",
        *_notes(env),
        "",
        *table(head, rows),
        "",
        "*hub drained after*: seconds after the load until the hub had answered every message, sent every "
        "reply and written every memory. HTTP statuses seen: " + ", ".join(statuses) + ".",
        "",
        *images.add("webhook_ack", lambda p: plots.webhook_ack(levels, p), "webhook throughput and latency"),
        "",
        "<details><summary>Hub latency per channel</summary>",
        "",
        *table(["concurrency", "channel", "p50 ms", "p99 ms"], by_channel),
        "",
        "</details>",
        "",
    ]


def turn_section(env: Envelope, images: Images) -> Lines:
    results = env["results"]
    summary = results["turn"]
    preload = results["preload"]
    rows = [
        [
            summary.get("n", 0),
            summary.get("p50_ms", "-"),
            summary.get("p95_ms", "-"),
            summary.get("p99_ms", "-"),
            summary.get("max_ms", "-"),
            results.get("worker_turn_mean_ms") or "-",
        ]
    ]
    loaded = (
        f"Loaded before measuring: {env['params'].get('customers', '?'):,} customers, "
        f"{preload.get('memories_written', 0):,} memories (in {preload.get('memories_s', 0):.0f} s)."
    )
    head = ["turns", "p50 ms", "p95 ms", "p99 ms", "max ms", "worker's own turn time, mean ms"]
    return [
        "## Turn overhead",
        "",
        machine_line(env),
        "",
        _params(env),
        "",
        *_notes(env),
        "",
        loaded,
        "",
        *table(head, rows),
        "",
        "*worker's own turn time*: the hub's `threadline_turn_seconds` (agent and reply commit, without the "
        "wait for the worker to pick the message up and without delivery).",
        "",
        *images.add(
            "turn_overhead", lambda p: plots.turn_overhead(summary, targets.TURN_P95_MS, p), "turn overhead"
        ),
        "",
    ]


def memory_section(env: Envelope, images: Images) -> Lines:
    local = env["results"]["local"]
    platform = env["results"].get("platform") or {}
    rows = [
        [r["memories"], r["customers"], r["p50_ms"], r["p95_ms"], r["p99_ms"], r["mean_results"], r["load_s"]]
        for r in local["sizes"]
    ]
    head = ["memories", "customers", "p50 ms", "p95 ms", "p99 ms", "memories returned", "bulk load s"]
    lines = [
        "## Memory search at scale",
        "",
        machine_line(env),
        "",
        _params(env),
        "",
        *_notes(env),
        "",
        f"Local backend, `LocalMemory.recall` asking for {local.get('limit', '?')} memories:",
        "",
        *table(head, rows),
        "",
    ]
    embedding = local.get("query_embedding", {})
    if embedding:
        lines += [
            f"Embedding the query alone (part of every recall): p50 {embedding['p50_ms']:.1f} ms, "
            f"p95 {embedding['p95_ms']:.1f} ms.",
            "",
        ]
    if "p95_ms" in platform:
        lines += [
            f"Platform backend (our client + a local fake, not Mem0's service) at {platform['memories']:,} "
            f"memories: p50 {platform['p50_ms']:.1f} ms, p95 {platform['p95_ms']:.1f} ms.",
            "",
        ]
    elif platform.get("left_out"):
        lines += [f"Platform backend left out ({platform['left_out']}).", ""]
    lines += images.add(
        "memory_search",
        lambda p: plots.memory_search(local["sizes"], platform, targets.SEARCH_P95_MS, p),
        "recall latency against memories",
    )
    return [*lines, ""]


def prompt_section(env: Envelope, images: Images) -> Lines:
    results = env["results"]
    summary = results.get("summary") or {}
    rows = [
        [
            r["turn"],
            r["prompt"],
            r["full_history"],
            r["extraction"],
            f"{r['full_history'] / r['prompt']:.1f}x" if r["prompt"] else "-",
        ]
        for r in results["checkpoints"]
    ]
    head = ["turn", "product prompt", "full history", "Mem0 extraction call", "full history / product"]
    return [
        "## Prompt size",
        "",
        machine_line(env),
        "",
        _params(env),
        "",
        *_notes(env),
        "",
        f"Tokens per turn ({results.get('tokens', 'chars/4')}):",
        "",
        *table(head, rows),
        "",
        "*Mem0 extraction call*: the memory write's own LLM request for that turn (Mem0's fact-extraction "
        "instructions are most of it); it is paid per turn on top of the reply prompt while memory writes "
        "use the LLM.",
        "",
        *images.add(
            "prompt_size",
            lambda p: plots.prompt_size(results["per_turn"], summary.get("budget"), p),
            "prompt tokens per turn",
        ),
        "",
    ]


def locomo_section(env: Envelope, images: Images) -> Lines:
    results = env.get("results", {})
    series: dict[str, dict[int, float]] = {}
    rows = []
    categories: list[str] = []
    for method, budgets in results.items():
        if not isinstance(budgets, dict):
            continue
        for budget, cell in budgets.items():
            if not isinstance(cell, dict) or "overall" not in cell:
                continue
            cats = cell.get("categories", {})
            categories = categories or list(cats)
            series.setdefault(method, {})[int(budget)] = float(cell["overall"])
            rows.append(
                [
                    method,
                    int(budget),
                    *(cats.get(c, "-") for c in categories),
                    cell["overall"],
                    cell.get("avg_tokens", "-"),
                ]
            )
    head = ["method", "budget (tokens)", *categories, "overall", "avg tokens used"]
    lines = ["## LoCoMo memory recall", "", machine_line(env), "", _params(env), ""]
    if env.get("measure"):
        lines += [f"Measure: {env['measure']}.", ""]
    if env.get("questions"):
        lines += ["Questions: " + ", ".join(f"{k} {v}" for k, v in env["questions"].items()) + ".", ""]
    lines += [*table(head, rows), ""]
    latency = env.get("product_latency_ms")
    if isinstance(latency, dict) and "p50" in latency:
        lines += [
            f"Product recall latency at {latency.get('budget', '?')} tokens: p50 {latency['p50']} ms, "
            f"p95 {latency.get('p95', '?')} ms.",
            "",
        ]
    if series:
        lines += images.add(
            "locomo", lambda p: plots.locomo(series, targets.LOCOMO_RECALL, p), "LoCoMo recall"
        )
    return [*lines, ""]


SECTIONS: tuple[tuple[str, Callable[[Envelope, Images], Lines]], ...] = (
    ("webhook_ack", webhook_section),
    ("turn_overhead", turn_section),
    ("memory_search", memory_section),
    ("locomo", locomo_section),
    ("prompt_size", prompt_section),
)


TIMED = ("webhook_ack", "turn_overhead", "memory_search")  # the benchmarks whose figures are times
NOTES_DIR = ROOT / "bench" / "notes"  # hand-written analysis shown under a benchmark's section


def _load(env: Envelope) -> float | None:
    value = env.get("machine", {}).get("load_average", [None])[0]
    return float(value) if isinstance(value, int | float) else None


def _cores(env: Envelope) -> int:
    box = env.get("machine", {})
    found = box.get("usable_cores") or box.get("cores_usable") or box.get("cores") or 1
    return int(found)


def noise_note(results: dict[str, Envelope]) -> str:
    """Whether the timed figures were measured on a quiet machine (load below the core count at start)."""
    timed = {name: env for name, env in results.items() if name in TIMED}
    loads = {name: load for name, env in timed.items() if (load := _load(env)) is not None}
    if not loads:
        return ""
    busiest = max(loads.values())
    cores = max(_cores(env) for env in timed.values())
    if busiest < cores:
        return (
            f"**Noise.** The timed benchmarks ({', '.join(sorted(loads))}) ran on a quiet machine (1-minute "
            f"load average at most {busiest} on {cores} cores at the start of each run); it is shared and "
            "virtual all the same, so compare the hub with its baseline only within one run."
        )
    return (
        f"**Noise.** Timed figures come from a shared {cores}-core machine on which other processes ran at "
        f"the same time (1-minute load average up to {busiest} at the start of a run). Latencies on a quiet "
        "machine of the same size are lower; compare the hub with its baseline only within one run."
    )


def analysis(name: str) -> Lines:
    path = NOTES_DIR / f"{name}.md"
    if not path.is_file():
        return []
    return ["", path.read_text(encoding="utf-8").strip(), ""]


def header(results: dict[str, Envelope]) -> Lines:
    return [
        "# Benchmarks",
        "",
        "How fast Threadline is, measured by the scripts in `bench/`. This page is generated by "
        "`bench/report.py` from `bench/results/*.json` (and the analysis in `bench/notes/`): do not edit "
        "it by hand.",
        "",
        "```sh",
        "scripts/bench.sh           # set up, run every benchmark at the issue's sizes, render this page",
        "scripts/bench.sh --quick   # small sizes, a smoke run (results and page under bench/results/quick/)",
        "```",
        "",
        "Each script prints the machine it runs on, takes its sizes as arguments (`--help`) and writes "
        "`bench/results/<name>.json`; `python -m bench.report` renders this page from them.",
        "",
        noise_note(results),
        "",
    ]


def targets_section(results: dict[str, Envelope]) -> Lines:
    rows = [[v.target, v.goal, v.measured, v.word] for v in targets.all_verdicts(results)]
    return ["## Targets", "", *table(["target", "goal", "measured", "verdict"], rows), ""]


def render(results_dir: Path, out: Path, img_dir: Path) -> str:
    results = load_results(results_dir)
    results = {NAMES.get(env.get("benchmark", ""), stem): env for stem, env in results.items()}
    images = Images(img_dir, out)
    lines = header(results) + targets_section(results)
    for name, section in SECTIONS:
        if name in results:
            lines += section(results[name], images) + analysis(name)
    stamp = datetime.now(UTC).isoformat(timespec="seconds")
    lines += [f"*Rendered {stamp} from {len(results)} result file(s).*", ""]
    text = "\n".join(lines)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    return text


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Render docs/benchmarks.md from bench/results/*.json.")
    parser.add_argument("--results", type=Path, default=RESULTS_DIR)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks.md")
    parser.add_argument("--img", type=Path, default=None, help="default: img/ beside --out")
    args = parser.parse_args(argv)
    img = args.img or args.out.parent / "img"
    render(args.results, args.out, img)
    print(f"wrote {args.out} (plots in {img})")


if __name__ == "__main__":
    main()
