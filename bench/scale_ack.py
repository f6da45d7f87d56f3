"""Part 1 of ``bench.scale``: acknowledgements of signed Slack deliveries at one concurrency, side by side.

Servers, all up at once on 127.0.0.1, each started the way its users start it:

- ``hub-web-1``: ``threadline serve --role web`` on PostgreSQL (one uvicorn process; no lanes);
- ``hub-web-2``: ``threadline serve --role web --workers 2`` (uvicorn's supervisor and two processes
  sharing the port);
- ``bare``: ``bench.bare_app``, a FastAPI route that returns 200, served by the same ``uvicorn.run`` call;
- ``bolt``: ``bench.scale_bolt``, a slack-bolt ``AsyncApp`` behind its FastAPI adapter (verify, ack);
- with ``--fast-path DIR`` (a folder holding ``uvloop`` and ``httptools``, e.g. ``pip install --target
  DIR uvloop httptools``), ``hub-web-2+uvloop`` and ``bare+uvloop``: the same, with that folder on
  ``PYTHONPATH``, so that uvicorn's ``auto`` loop and HTTP choices pick them (``uvicorn[standard]``).

Each round sends ``--requests`` distinct signed deliveries at ``--concurrency`` to every server in turn
(from a separate ``bench.scale_load`` process; the order rotates each round), and the medians over the
rounds are reported. No worker runs meanwhile (in a scaled deployment the workers are elsewhere), so
the web processes have the two cores to themselves and PostgreSQL. Every 200 of the hub is checked
against the inbox afterwards: the hub answers only after its commit, so rows == 200s.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from bench import scale_pg
from bench.procs import HOST, NETGUARD_DIR, Child, bench_env, free_port, python_cmd, started, threadline_cmd
from bench.procs import wait_http as wait_ready
from bench.scale_cpu import CpuMeter
from bench.scale_profile import Recording

ID_STRIDE = 10_000_000
HUBS = ("hub-web-1", "hub-web-2", "hub-web-2+uvloop")
PROCESSES = {"hub-web-2": 2, "hub-web-2+uvloop": 2}  # serving processes; the others have one


def _with_path(env: dict[str, str], folder: str | None) -> dict[str, str]:
    if folder:
        rest = env["PYTHONPATH"].split(os.pathsep)
        env["PYTHONPATH"] = os.pathsep.join([str(NETGUARD_DIR), folder, *rest[1:]])
    return env


class Slack:
    """Runs ``bench.scale_load`` processes, each with its own range of event ids."""

    def __init__(self, work: Path, senders: int, max_seconds: float) -> None:
        self._work, self._senders, self._max = work, senders, max_seconds
        self.runs = 0
        self.last_cpu_s = 0.0

    def run(self, url: str, requests: int, concurrency: int) -> dict[str, Any]:
        self.runs += 1
        args = ["--url", url, "--requests", str(requests), "--concurrency", str(concurrency)]
        args += ["--id-base", str(self.runs * ID_STRIDE), "--senders", str(self._senders)]
        args += ["--max-seconds", str(self._max)]
        env = bench_env({"BENCH_SLACK_SECRET": scale_pg.SLACK_SECRET})
        child = Child(f"load-{self.runs}", python_cmd("bench.scale_load", *args), log_dir=self._work, env=env)
        reaped = resource.getrusage(resource.RUSAGE_CHILDREN)
        try:
            code = child.wait(timeout=self._max + 120)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)  # the load generator, reaped by wait()
            self.last_cpu_s = (after.ru_utime + after.ru_stime) - (reaped.ru_utime + reaped.ru_stime)
            lines = []
            while not child.lines.empty():
                lines.append(child.lines.get_nowait())
        finally:
            child.stop()
        if code != 0 or not lines:
            raise RuntimeError(f"load generator failed ({code}): {child.tail()}")
        result: dict[str, Any] = json.loads(lines[-1])
        return result


def start_servers(
    stack: ExitStack, work: Path, database_url: str, fakes: dict[str, str], fast_path: str | None
) -> dict[str, tuple[str, Child]]:
    """Every server of the comparison, up and ready: name → (base URL, process)."""
    servers: dict[str, tuple[str, Child]] = {}

    def add(name: str, cmd: list[str], env: dict[str, str], ready: str) -> None:
        port = free_port()
        full = [*cmd, "--host", HOST, "--port", str(port)]
        child = stack.enter_context(started(name, full, log_dir=work, env=env))
        servers[name] = (f"http://{HOST}:{port}", child)
        wait_ready(f"http://{HOST}:{port}{ready}", child)

    def hub(name: str) -> dict[str, str]:
        return scale_pg.hub_env(database_url, work / f"data-{name}", fakes)

    bolt_env = bench_env(
        {"BENCH_SLACK_SECRET": scale_pg.SLACK_SECRET, "BENCH_SLACK_TOKEN": scale_pg.SLACK_TOKEN}
    )
    add("bare", python_cmd("bench.bare_app"), bench_env(), "/healthz")
    add("bolt", [*python_cmd("bench.scale_bolt"), "--slack-api", fakes["slack"]], bolt_env, "/healthz")
    add("hub-web-1", threadline_cmd("serve", "--role", "web"), hub("web-1"), "/readyz")
    add("hub-web-2", threadline_cmd("serve", "--role", "web", "--workers", "2"), hub("web-2"), "/readyz")
    if fast_path:
        add("bare+uvloop", python_cmd("bench.bare_app"), _with_path(bench_env(), fast_path), "/healthz")
        web2 = threadline_cmd("serve", "--role", "web", "--workers", "2")
        add("hub-web-2+uvloop", web2, _with_path(hub("web-2-uvloop"), fast_path), "/readyz")
    return servers


def per_request(cpu_s: dict[str, float], ok: int) -> dict[str, float]:
    """CPU milliseconds per answered request, by process tree."""
    return {name: round(1000 * seconds / ok, 3) for name, seconds in cpu_s.items()} if ok else {}


def median_of(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """The median throughput, p50 and p99 of a server's rounds (each taken over the rounds on its own),
    and the median CPU milliseconds per request of the server and of PostgreSQL where measured."""
    found: dict[str, Any] = {
        "throughput_rps": round(statistics.median(r["throughput_rps"] for r in rounds), 1),
        "p50_ms": round(statistics.median(r["latency"]["p50_ms"] for r in rounds), 2),
        "p99_ms": round(statistics.median(r["latency"]["p99_ms"] for r in rounds), 2),
        "rounds": len(rounds),
        "ok": sum(r["ok"] for r in rounds),
        "statuses": _statuses(rounds),
    }
    others = [r["others_cores"] for r in rounds if r.get("others_cores") is not None]
    if others:
        found["others_cores"] = round(statistics.median(others), 2)
    cpu = [r["cpu_ms_per_request"] for r in rounds if r.get("cpu_ms_per_request")]
    if cpu:
        found["cpu_ms_per_request"] = {
            name: round(statistics.median(c[name] for c in cpu if name in c), 3) for name in cpu[0]
        }
    return found


def _statuses(rounds: list[dict[str, Any]]) -> dict[str, int]:
    seen: dict[str, int] = {}
    for r in rounds:
        for status, n in r["statuses"].items():
            seen[status] = seen.get(status, 0) + n
    return seen


def ratios(medians: dict[str, dict[str, Any]]) -> dict[str, float]:
    """Each hub's median throughput over the bare route's and over the bolt app's."""
    found = {}
    for hub in HUBS:
        if hub not in medians:
            continue
        rps = medians[hub]["throughput_rps"]
        for peer in ("bare", "bolt"):
            if medians.get(peer, {}).get("throughput_rps"):
                found[f"{hub}/{peer}"] = round(rps / medians[peer]["throughput_rps"], 3)
    if "bare+uvloop" in medians and "hub-web-2+uvloop" in medians:
        found["hub-web-2+uvloop/bare+uvloop"] = round(
            medians["hub-web-2+uvloop"]["throughput_rps"] / medians["bare+uvloop"]["throughput_rps"], 3
        )
    if "hub-web-2+uvloop" in medians:
        found["hub-web-2+uvloop/hub-web-2"] = round(
            medians["hub-web-2+uvloop"]["throughput_rps"] / medians["hub-web-2"]["throughput_rps"], 3
        )
    return found


def ceilings(medians: dict[str, dict[str, Any]], cores: int) -> dict[str, float]:
    """What each server would answer if CPU were the only limit and the machine ran nothing else: its
    processes can use one core each, and the server, PostgreSQL and the load generator share ``cores``.
    From the CPU each of them spent per request, which the machine's other load moves far less than it
    moves throughput."""
    found = {}
    for name, m in medians.items():
        cpu = m.get("cpu_ms_per_request") or {}
        server = cpu.get("server")
        if not server:
            continue
        together = server + cpu.get("postgres", 0.0) + cpu.get("loadgen", 0.0)
        processes = min(PROCESSES.get(name, 1), cores)
        found[name] = round(min(1000 * processes / server, 1000 * cores / together), 1)
    return found


async def _inbox_rows(database_url: str) -> int:
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as conn:
            return int(await conn.scalar(text("SELECT count(*) FROM inbox")) or 0)
    finally:
        await engine.dispose()


def measure(
    args: Any, work: Path, dbs: scale_pg.Databases, notes: list[str], spy: str | None, pg_pid: int | None
) -> dict[str, Any]:
    import asyncio

    database_url = dbs.create("ack")
    migrated = scale_pg.migrate(database_url, work / "data-migrate")
    with ExitStack() as stack:
        fakes = {
            kind: stack.enter_context(
                started(f"fake-{kind}", python_cmd("bench.fake_servers", kind), log_dir=work)
            ).first_line()
            for kind in ("slack", "telegram")
        }
        servers = start_servers(stack, work, database_url, fakes, args.fast_path)
        load = Slack(work, args.senders, args.max_seconds)
        hub_oks = 0
        print(f"ack: warm-up, {args.warmup} deliveries to each of {', '.join(servers)}", flush=True)
        for name, (url, _) in servers.items():
            warm = load.run(url, args.warmup, min(8, args.concurrency))
            hub_oks += warm["ok"] if name in HUBS else 0
        names = list(servers)
        by_server: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
        for round_no in range(args.rounds):
            order = names[round_no % len(names) :] + names[: round_no % len(names)]
            for name in order:
                url, child = servers[name]
                child.check_alive()
                meter = CpuMeter({"server": child.proc.pid, **({"postgres": pg_pid} if pg_pid else {})})
                meter.start()
                result = load.run(url, args.requests, args.concurrency)
                spent = meter.stop(also=load.last_cpu_s) | {"loadgen": round(load.last_cpu_s, 3)}
                result["cpu_ms_per_request"] = per_request(spent, result["ok"])
                result["others_cores"] = meter.others_cores
                hub_oks += result["ok"] if name in HUBS else 0
                by_server[name].append(result)
                print(f"ack round {round_no + 1} {name:>17}: {_line(result)}", flush=True)
        profiles = {}
        if spy and args.profile:
            for name in ("hub-web-1", "hub-web-2"):
                url, child = servers[name]
                seconds = args.profile_seconds
                # enough deliveries to outlast the recording at the rate the rounds measured
                requests = int(
                    statistics.median(r["throughput_rps"] for r in by_server[name]) * (seconds + 3)
                )
                recording = Recording(spy, child.proc.pid, seconds, work / f"profile-{name}.txt")
                result = load.run(url, max(requests, args.requests), args.concurrency)
                hub_oks += result["ok"]
                profiles[name] = {"load": _line(result), **recording.finish()}
                print(f"ack profile {name}: {profiles[name]['layers']}", flush=True)
        elif args.profile:
            notes.append("No profile: py-spy was not found (pip install py-spy, or --py-spy PATH).")
        rows = asyncio.run(_inbox_rows(database_url))
    medians = {name: median_of(rounds) for name, rounds in by_server.items()}
    return {
        "concurrency": args.concurrency,
        "migrate": migrated,
        "medians": medians,
        "ratios": ratios(medians),
        "cpu_bound_ceiling_rps": ceilings(medians, len(os.sched_getaffinity(0))),
        "rounds": {name: [_brief(r) for r in rounds] for name, rounds in by_server.items()},
        "hub_200s": hub_oks,
        "hub_inbox_rows": rows,
        "profiles": profiles,
    }


def _brief(result: dict[str, Any]) -> dict[str, Any]:
    return {
        "throughput_rps": result["throughput_rps"],
        "p50_ms": result["latency"].get("p50_ms"),
        "p99_ms": result["latency"].get("p99_ms"),
        "ok": result["ok"],
        "statuses": result["statuses"],
        "cpu_ms_per_request": result.get("cpu_ms_per_request", {}),
        "others_cores": result.get("others_cores"),
    }


def _line(result: dict[str, Any]) -> str:
    latency = result["latency"]
    cpu = " ".join(f"{k} {v:.2f}" for k, v in result.get("cpu_ms_per_request", {}).items())
    return (
        f"{result['throughput_rps']:>7.1f} req/s p50 {latency.get('p50_ms', 0):.1f} "
        f"p99 {latency.get('p99_ms', 0):.1f} ms {result['statuses']}"
        + (f"; CPU ms/req {cpu}" if cpu else "")
        + (f"; others took {result['others_cores']} cores" if result.get("others_cores") is not None else "")
    )
