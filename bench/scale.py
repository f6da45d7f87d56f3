"""Scale mode on PostgreSQL, measured in one run: web processes, worker processes, wake-ups.

1. Acknowledgements (``bench.scale_ack``): signed Slack deliveries at concurrency 64 to the hub with one
   web process (``serve --role web``), with two (``--workers 2``), to a bare FastAPI route and to a
   slack-bolt app, side by side, in rounds; medians of req/s, p50 and p99, and the ratios. With
   ``--profile`` (and py-spy), where the web processes spend their time under that load.
2. Turns per second (``bench.scale_turns``): 1 and 2 ``serve --role worker`` processes draining the same
   backlog of ``--messages`` from ``--customers`` customers, with a fake LLM holding every call
   ``--llm-delay`` seconds.
3. Wake-up latency (``bench.scale_wake``): commit in a web process to a worker starting on it, with the
   worker's poll interval at 30 s so that only ``NOTIFY`` can wake it; and the control without
   ``LISTEN``, polling every second.

Every database is made fresh for the run on a PostgreSQL server of the run's own (``bench.scale_pg``; or
the server of ``--pg URL``) and dropped after it.
The result is ``bench/results/scale.json``; ``python -m bench.scale_report`` puts its section in
``docs/benchmarks.md``.

``python -m bench.scale`` (the issue's sizes, about 15 minutes) or ``python -m bench.scale --quick``
"""

from __future__ import annotations

import argparse
import sys
from contextlib import ExitStack
from pathlib import Path
from tempfile import TemporaryDirectory, mkdtemp

from bench import scale_ack, scale_pg, scale_turns, scale_wake
from bench.common import RESULTS_DIR, Run, exit_cleanly_on_sigterm
from bench.machine import print_machine
from bench.scale_profile import py_spy

PARTS = ("ack", "turns", "wake")
QUICK = {
    "requests": 300,
    "rounds": 1,
    "warmup": 40,
    "profile_seconds": 3.0,
    "messages": 60,
    "customers": 30,
    "turns_warmup": 4,
    "turn_rounds": 1,
    "llm_delay": 0.2,
    "wake_messages": 10,
    "control_messages": 5,
    "wake_warmup": 2,
    "wake_customers": 10,
}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Scale mode on PostgreSQL: web, workers and wake-ups, side by side."
    )
    p.add_argument("--quick", action="store_true", help="small sizes: a smoke run of every part")
    p.add_argument("--only", nargs="+", choices=PARTS, default=list(PARTS), help="run only these parts")
    p.add_argument(
        "--pg",
        default=scale_pg.PRIVATE,
        help="'private' (a PostgreSQL server of the run's own) or the URL of a database on a server to use",
    )
    ack = p.add_argument_group("acknowledgements")
    ack.add_argument("--requests", type=int, default=3000, help="deliveries per server and round")
    ack.add_argument("--concurrency", type=int, default=64)
    ack.add_argument("--rounds", type=int, default=3, help="rounds over every server; medians reported")
    ack.add_argument("--warmup", type=int, default=200, help="deliveries per server before measuring")
    ack.add_argument("--senders", type=int, default=10_000, help="distinct Slack users")
    ack.add_argument("--max-seconds", type=float, default=300.0, help="bound on one load run")
    ack.add_argument("--fast-path", default=None, help="a folder with uvloop and httptools (extra servers)")
    ack.add_argument("--profile", action=argparse.BooleanOptionalAction, default=True)
    ack.add_argument("--profile-seconds", type=float, default=10.0)
    ack.add_argument("--py-spy", default=None, help="the py-spy executable (default: on PATH)")
    turns = p.add_argument_group("turns per second")
    turns.add_argument("--messages", type=int, default=300, help="the backlog drained in each round")
    turns.add_argument("--customers", type=int, default=150, help="customers the backlog comes from")
    turns.add_argument("--turn-rounds", type=int, default=3, help="rounds over both worker counts")
    turns.add_argument("--turns-warmup", type=int, default=24, help="messages per worker before measuring")
    turns.add_argument("--llm-delay", type=float, default=1.0, help="seconds the fake LLM holds each call")
    turns.add_argument("--drain-timeout", type=float, default=900.0)
    wake = p.add_argument_group("wake-up latency")
    wake.add_argument("--wake-messages", type=int, default=100)
    wake.add_argument("--wake-poll", type=float, default=30.0, help="the worker's poll interval (NOTIFY)")
    wake.add_argument("--control-messages", type=int, default=50, help="0: no control run")
    wake.add_argument("--control-poll", type=float, default=1.0, help="the control's poll interval")
    wake.add_argument("--wake-warmup", type=int, default=5)
    wake.add_argument("--wake-customers", type=int, default=40)
    p.add_argument("--seed", type=int, default=17)
    p.add_argument("--out", type=Path, default=RESULTS_DIR)
    p.add_argument("--keep", type=Path, default=None, help="keep the processes' logs in this folder")
    return p


def main(argv: list[str] | None = None) -> None:
    p = parser()
    args = p.parse_args(argv)
    if args.quick:
        given = {a.split("=", 1)[0] for a in (argv if argv is not None else sys.argv[1:])}
        for key, value in QUICK.items():
            if "--" + key.replace("_", "-") not in given:
                setattr(args, key, value)
    exit_cleanly_on_sigterm()
    machine = print_machine()
    params = {k: v for k, v in vars(args).items() if k not in ("out", "py_spy", "pg", "keep")}
    params["pg"] = "private" if args.pg == scale_pg.PRIVATE else "given"
    run = Run("scale", machine, params)
    run.note(
        "PostgreSQL on 127.0.0.1, on the same two cores as everything else (with `pg=private`, a server of "
        "the run's own with the distribution's default settings), a fresh database per part, migrated with "
        "`threadline migrate`. Web processes: `threadline serve --role "
        "web [--workers 2]`, no worker running meanwhile; peers: a bare FastAPI route and a slack-bolt "
        "AsyncApp (FastAPI adapter), each one uvicorn process served by the same uvicorn.run call as the "
        "hub. Load: signed Slack Events API deliveries from a separate aiohttp process on the same cores."
    )
    spy = args.py_spy or py_spy()
    results = {}
    with ExitStack() as stack:
        if args.keep:
            args.keep.mkdir(parents=True, exist_ok=True)
            work = Path(mkdtemp(prefix="bench-scale-", dir=args.keep))
            print(f"logs in {work} (kept)", flush=True)
        else:
            work = Path(stack.enter_context(TemporaryDirectory(prefix="bench-scale-")))
        pg = stack.enter_context(scale_pg.server(args.pg))
        dbs = stack.enter_context(scale_pg.scratch_databases(pg.url))
        if "ack" in args.only:
            results["ack"] = scale_ack.measure(args, work / "ack", dbs, run.notes, spy, pg.pid)
        if "turns" in args.only:
            results["turns"] = scale_turns.measure(args, work / "turns", dbs, pg.pid)
        if "wake" in args.only:
            results["wake"] = scale_wake.measure(args, work / "wake", dbs)
    run.write(results, args.out)


if __name__ == "__main__":
    main()
