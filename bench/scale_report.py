"""The scale benchmark's section of ``docs/benchmarks.md``, rendered from ``bench/results/scale.json``.

``python -m bench.scale_report [--results bench/results] [--page docs/benchmarks.md]`` puts the section
(tables, the issue's goals and whether they are met, then ``bench/notes/scale.md``) between the markers
``<!-- scale:begin -->`` and ``<!-- scale:end -->`` of the page, or before its closing "Rendered" line the
first time; the rest of the page is left as it is.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from bench.common import RESULTS_DIR
from bench.machine import ROOT
from bench.report import _notes, _params, machine_line, table
from bench.scale_turns import quiet_ratio
from bench.targets import Verdict, at_least, below

Envelope = dict[str, Any]
Lines = list[str]

BEGIN, END = "<!-- scale:begin -->", "<!-- scale:end -->"
NOTES = ROOT / "bench" / "notes" / "scale.md"
ACK_OVER_BARE = 0.5
ACK_P99_MS = 50.0
TURNS_RATIO = 1.6
SERVERS = {
    "hub-web-1": "`threadline serve --role web` (1 process)",
    "hub-web-2": "`threadline serve --role web --workers 2`",
    "bare": "bare FastAPI route (1 process)",
    "bolt": "slack-bolt `AsyncApp`, FastAPI adapter (1 process)",
    "bare+uvloop": "bare route, uvloop + httptools",
    "hub-web-2+uvloop": "`--role web --workers 2`, uvloop + httptools",
}


def verdicts(results: dict[str, Any]) -> list[Verdict]:
    """The issue's goals for scale mode, against the figures of one run."""
    found = []
    ack = results.get("ack")
    goal = (
        f"2 web processes ≥ {ACK_OVER_BARE:.0%} of 1 bare route and ≥ the bolt app, "
        f"p99 < {ACK_P99_MS:g} ms, at concurrency 64"
    )
    if not ack:
        found.append(Verdict("Acknowledgements, 2 web processes", goal, "not run", None))
    else:
        medians, ratios = ack["medians"], ack["ratios"]
        hub = medians["hub-web-2"]
        over_bare, over_bolt = ratios["hub-web-2/bare"], ratios["hub-web-2/bolt"]
        measured = (
            f"{hub['throughput_rps']:,.0f} req/s; of bare {at_least(over_bare, ACK_OVER_BARE)}; "
            f"of bolt {at_least(over_bolt, 1.0)}; p99 {below(hub['p99_ms'], ACK_P99_MS, 'ms')}"
        )
        met = over_bare >= ACK_OVER_BARE and over_bolt >= 1.0 and hub["p99_ms"] < ACK_P99_MS
        if ack.get("concurrency") != 64:
            found.append(
                Verdict(
                    "Acknowledgements, 2 web processes", goal, f"at c={ack['concurrency']}: {measured}", None
                )
            )
        else:
            found.append(Verdict("Acknowledgements, 2 web processes", goal, measured, met))
    turns = results.get("turns")
    goal = f"2 worker processes ≥ {TURNS_RATIO}x the turns per second of 1"
    if not turns or turns.get("two_over_one") is None:
        found.append(Verdict("Worker scale-out", goal, "not run", None))
    else:
        found.append(turns_verdict(turns, goal))
    return found


def turns_verdict(turns: dict[str, Any], goal: str) -> Verdict:
    """On the rounds where the rest of the machine stayed quiet when there are some (two processes can
    only double the turns when there are cores for them); on the medians of every round otherwise."""
    overall = turns["two_over_one"]
    quiet = turns.get("quiet")
    if quiet is None and turns["runs"] and "rounds" in turns["runs"][0]:
        quiet = quiet_ratio(turns["runs"])
    if quiet is None:
        return Verdict("Worker scale-out", goal, at_least(overall, TURNS_RATIO), overall >= TURNS_RATIO)
    ratio = quiet["two_over_one"]
    measured = (
        f"{at_least(ratio, TURNS_RATIO)} in the {quiet['rounds']} round(s) where the rest of the machine "
        f"took under {quiet['others_below']:g} cores; {overall:.3f} on the medians of every round"
    )
    return Verdict("Worker scale-out", goal, measured, ratio >= TURNS_RATIO)


def _ms(value: Any) -> Any:
    return "-" if value is None else float(value)


def ack_lines(ack: dict[str, Any]) -> Lines:
    medians, rows = ack["medians"], []
    ceiling = ack.get("cpu_bound_ceiling_rps") or {}
    bare = medians.get("bare", {}).get("throughput_rps")
    bolt = medians.get("bolt", {}).get("throughput_rps")
    for name, m in medians.items():
        rps, cpu = m["throughput_rps"], m.get("cpu_ms_per_request", {})
        rows.append(
            [
                SERVERS.get(name, name),
                rps,
                _ms(m["p50_ms"]),
                _ms(m["p99_ms"]),
                f"{rps / bare:.0%}" if bare else "-",
                f"{rps / bolt:.0%}" if bolt else "-",
                _ms(cpu.get("server")),
                _ms(cpu.get("postgres")),
                _ms(cpu.get("loadgen")),
                _ms(ceiling.get(name)),
                _ms(m.get("others_cores")),
            ]
        )
    head = [
        "server",
        "req/s",
        "p50 ms",
        "p99 ms",
        "of bare",
        "of bolt",
        "CPU ms/req",
        "PostgreSQL CPU ms/req",
        "load generator CPU ms/req",
        "CPU-bound ceiling req/s",
        "cores others took",
    ]
    lines = [
        f"### Acknowledgements at concurrency {ack['concurrency']}",
        "",
        f"Medians over {next(iter(medians.values()))['rounds']} rounds; every hub 200 is an inbox row "
        f"({ack['hub_inbox_rows']:,} rows for {ack['hub_200s']:,} answers).",
        "",
        *table(head, rows),
        "",
        "*CPU ms/req*: CPU time of the server's processes (all of them for `--workers 2`), of PostgreSQL's "
        "and of the load generator, over a round, per answered request: what a request costs, whatever else "
        "ran on the machine. *CPU-bound ceiling*: the req/s those costs allow on this machine with nothing "
        "else running (each serving process at most one core; server, PostgreSQL and load generator "
        "sharing the cores). *Cores others took*: how busy the machine was meanwhile beyond the run's own "
        "processes (`/proc/stat`; other people's work on this shared machine).",
        "",
    ]
    profiles = ack.get("profiles") or {}
    if profiles:
        layers: list[str] = []
        for profile in profiles.values():
            layers += [layer for layer in profile["layers"] if layer not in layers]
        prof_rows = [
            [layer, *(f"{p['layers'].get(layer, 0):.0%}" for p in profiles.values())] for layer in layers
        ]
        lines += [
            "Where the web processes spend their busy time under this load (py-spy, share of samples):",
            "",
            *table(["layer", *profiles], prof_rows),
            "",
        ]
    return lines


def turns_lines(turns: dict[str, Any]) -> Lines:
    rows = []
    for run in turns["runs"]:
        cpu = run.get("cpu_ms_per_turn", {})
        rows.append(
            [
                run["workers"],
                run.get("turns_per_s") or "-",
                run.get("steady_turns_per_s") or "-",
                run.get("drain_s") or "-",
                " / ".join(str(n) for n in run["replies_per_worker"]),
                run["rest_drained_after_s"],
                _ms(cpu.get("workers")),
                _ms(cpu.get("postgres")),
                _ms(run.get("others_cores")),
            ]
        )
    head = [
        "worker processes",
        "turns/s",
        "steady turns/s (10-90%)",
        "drained in s",
        "replies per process (all rounds)",
        "then delivered and remembered in s",
        "workers' CPU ms/turn",
        "PostgreSQL CPU ms/turn",
        "cores others took",
    ]
    rounds = turns.get("rounds", 1)
    return [
        f"### Turns per second: {turns['messages']:,} messages from {turns['customers']:,} customers, "
        f"LLM held {turns['llm_delay_s']:g} s a call",
        "",
        f"Medians over {rounds} round{'s' if rounds != 1 else ''}.",
        "",
        *table(head, rows),
        "",
        f"2 workers / 1 worker: **{turns['two_over_one']}x**." if turns.get("two_over_one") else "",
        "",
        "*CPU ms/turn*: the worker processes' and PostgreSQL's CPU time from the backlog's commit until "
        "every reply was delivered and every memory written, per message.",
        "",
        *size_lines(turns["runs"][0].get("table_sizes") or {}),
    ]


def size_lines(sizes: dict[str, dict[str, int]], least_rows: int = 100) -> Lines:
    """Bytes per row (with indexes and TOAST) of the tables that hold enough rows to tell."""
    rows = [
        [name, s["rows"], round(s["bytes"] / 1024), round(s["bytes"] / s["rows"])]
        for name, s in sorted(sizes.items(), key=lambda kv: -kv[1]["bytes"])
        if s["rows"] >= least_rows
    ]
    if not rows:
        return []
    return [
        "<details><summary>Table sizes after the 1-worker run (bytes per row, indexes included)</summary>",
        "",
        *table(["table", "rows", "KiB", "bytes/row"], rows),
        "",
        "</details>",
        "",
    ]


def wake_lines(wake: dict[str, Any]) -> Lines:
    labels = {"notify": "NOTIFY (LISTEN on)", "poll_only": "poll only (LISTEN off)"}
    rows = []
    for name, case in wake.items():
        pickup, end = case["pickup"], case["end_to_end"]
        rows.append(
            [
                labels.get(name, name),
                case["poll_interval_s"],
                _ms(pickup.get("p50_ms")),
                _ms(pickup.get("p95_ms")),
                _ms(end.get("p50_ms")),
                _ms(end.get("p95_ms")),
                end.get("n", 0),
            ]
        )
    head = [
        "worker wakes by",
        "poll s",
        "pickup p50 ms",
        "pickup p95 ms",
        "200 → reply p50 ms",
        "200 → reply p95 ms",
        "messages",
    ]
    return [
        "### Wake-up: commit in a web process → a worker process starting on it",
        "",
        *table(head, rows),
        "",
        "*pickup*: the worker's `threadline_pickup_seconds` (estimated within its buckets, as Prometheus's "
        "`histogram_quantile` does); *200 → reply*: the web process's answer to the reply's arrival at the "
        "fake Telegram, with an LLM that answers at once.",
        "",
    ]


def section(env: Envelope) -> Lines:
    results = env["results"]
    lines = ["## Scale mode on PostgreSQL", "", machine_line(env), "", _params(env), "", *_notes(env), ""]
    rows = [[v.target, v.goal, v.measured, v.word] for v in verdicts(results)]
    lines += [*table(["target", "goal", "measured", "verdict"], rows), ""]
    if "ack" in results:
        lines += ack_lines(results["ack"])
    if "turns" in results:
        lines += turns_lines(results["turns"])
    if "wake" in results:
        lines += wake_lines(results["wake"])
    if NOTES.is_file():
        lines += [NOTES.read_text(encoding="utf-8").strip(), ""]
    return lines


def place(page: str, block: str) -> str:
    """``page`` with ``block`` between the scale markers: replacing what was there, else before the
    closing "*Rendered" line, else at the end."""
    wrapped = f"{BEGIN}\n{block.strip()}\n{END}\n"
    if BEGIN in page and END in page:
        head, _, rest = page.partition(BEGIN)
        _, _, tail = rest.partition(END)
        return head + wrapped + tail.lstrip("\n")
    marker = "\n*Rendered "
    if marker in page:
        head, _, tail = page.rpartition(marker)
        return head.rstrip("\n") + "\n\n" + wrapped + marker + tail
    return page.rstrip("\n") + "\n\n" + wrapped


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Put the scale benchmark's section in docs/benchmarks.md.")
    parser.add_argument("--results", type=Path, default=RESULTS_DIR)
    parser.add_argument("--page", type=Path, default=ROOT / "docs" / "benchmarks.md")
    args = parser.parse_args(argv)
    env = json.loads((args.results / "scale.json").read_text(encoding="utf-8"))
    page = args.page.read_text(encoding="utf-8") if args.page.exists() else "# Benchmarks\n"
    args.page.write_text(place(page, "\n".join(section(env))), encoding="utf-8")
    print(f"wrote the scale section of {args.page}")


if __name__ == "__main__":
    main()
