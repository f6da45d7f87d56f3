"""Webhook acknowledgement: how fast the hub answers signed platform deliveries, against a bare route.

Two servers run side by side, each one uvicorn process started the same way (``threadline serve`` and
``bench.bare_app``, which copies serve's ``uvicorn.run`` call and logging):

- the hub on the embedded default (SQLite, local Mem0, offline LLM, in-process worker) with Telegram,
  Slack and Twilio on, their ``__API_BASE_URL`` pointing at the fakes of ``tests/fakes`` (each its own
  process), so that the replies the worker sends while the load runs go somewhere real;
- a bare FastAPI app whose webhook routes only return 200.

For each concurrency level a separate load-generating process (``bench.loadgen``) sends ``--requests``
distinct, correctly signed deliveries (Telegram, Slack, Twilio in turn) to the bare app, then to the hub.
After each hub level the benchmark waits (bounded) until the hub has answered every message, delivered
every reply and written every memory, so the next level starts from an idle hub. The hub's figure
includes the work its worker does at the same time on the same two cores: that is the product.

``python -m bench.webhook_ack --requests 2000 --concurrency 1 16 64``
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import time
import uuid
from contextlib import ExitStack
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import httpx

from bench.common import RESULTS_DIR, Run, exit_cleanly_on_sigterm
from bench.machine import print_machine
from bench.procs import HOST, Child, bench_env, free_port, python_cmd, started, threadline_cmd, wait_http
from tests.fakes.telegram_api import DEFAULT_TOKEN as TELEGRAM_TOKEN

# secrets of the benchmark's own fakes, not of any real account
TELEGRAM_SECRET = "bench-telegram-secret_0123456789"  # noqa: S105
SLACK_SECRET = "bench-slack-signing-secret-0123456789abcdef"  # noqa: S105
SLACK_TOKEN = "xoxb-fake-token"  # noqa: S105
TWILIO_SID = "AC" + "0" * 32
TWILIO_TOKEN = "fake-twilio-auth-token"  # noqa: S105 - FakeTwilioAPI's default (REST auth and signatures)
TWILIO_FROM = "+15558675310"
PUBLIC_BASE_URL = "https://threadline.bench.invalid"
ID_STRIDE = 10_000_000  # provider ids of one load-generator run: base + [0, requests)
METRICS = (
    "threadline_inbound_accepted_total",
    "threadline_inbound_duplicates_total",
    "threadline_webhooks_rejected_total",
    "threadline_replies_total",
    "threadline_deliveries_total",
    "threadline_memory_writes_total",
)


def hub_env(data_dir: Path, fakes: dict[str, str]) -> dict[str, str]:
    return bench_env(
        {
            "THREADLINE_DATA_DIR": str(data_dir),
            "THREADLINE_PUBLIC_BASE_URL": PUBLIC_BASE_URL,
            "THREADLINE_LOG_LEVEL": "INFO",
            "THREADLINE_TELEGRAM__BOT_TOKEN": TELEGRAM_TOKEN,
            "THREADLINE_TELEGRAM__SECRET_TOKEN": TELEGRAM_SECRET,
            "THREADLINE_TELEGRAM__API_BASE_URL": fakes["telegram"],
            "THREADLINE_SLACK__BOT_TOKEN": SLACK_TOKEN,
            "THREADLINE_SLACK__SIGNING_SECRET": SLACK_SECRET,
            "THREADLINE_SLACK__API_BASE_URL": fakes["slack"],
            "THREADLINE_TWILIO__ACCOUNT_SID": TWILIO_SID,
            "THREADLINE_TWILIO__AUTH_TOKEN": TWILIO_TOKEN,
            "THREADLINE_TWILIO__FROM_NUMBER": TWILIO_FROM,
            "THREADLINE_TWILIO__API_BASE_URL": fakes["twilio"],
        }
    )


def loadgen_env() -> dict[str, str]:
    return bench_env(
        {
            "BENCH_TELEGRAM_SECRET": TELEGRAM_SECRET,
            "BENCH_SLACK_SECRET": SLACK_SECRET,
            "BENCH_TWILIO_TOKEN": TWILIO_TOKEN,
            "BENCH_PUBLIC_BASE_URL": PUBLIC_BASE_URL,
        }
    )


class Load:
    """Runs load-generator processes, each with its own range of provider message ids."""

    def __init__(self, work: Path, senders: int, max_seconds: float) -> None:
        self._work = work
        self._senders = senders
        self._max_seconds = max_seconds
        self._runs = 0
        self._salt = uuid.uuid4().hex[:6]

    def run(self, url: str, requests: int, concurrency: int) -> dict[str, Any]:
        self._runs += 1
        args = [
            "--url",
            url,
            "--requests",
            str(requests),
            "--concurrency",
            str(concurrency),
            "--id-base",
            str(self._runs * ID_STRIDE),
            "--salt",
            self._salt,
            "--senders",
            str(self._senders),
            "--max-seconds",
            str(self._max_seconds),
        ]
        child = Child(
            f"loadgen-{self._runs}", python_cmd("bench.loadgen", *args), log_dir=self._work, env=loadgen_env()
        )
        try:
            code = child.wait(timeout=self._max_seconds + 120)
            lines = []
            while not child.lines.empty():
                lines.append(child.lines.get_nowait())
        finally:
            child.stop()
        if code != 0 or not lines:
            raise RuntimeError(f"load generator failed ({code}): {child.tail()}")
        result: dict[str, Any] = json.loads(lines[-1])
        return result


def backlog(db_path: Path) -> dict[str, int]:
    """Rows the hub still has to do: pending inbox messages, outbox replies and memory jobs."""
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=10)
    try:
        counts = {}
        for table in ("inbox", "outbox", "memory_jobs"):
            (counts[table],) = conn.execute(
                f"SELECT count(*) FROM {table} WHERE status = 'pending'"  # noqa: S608 - fixed table names
            ).fetchone()
        return counts
    finally:
        conn.close()


def drain(db_path: Path, hub: Child, timeout: float) -> tuple[float, dict[str, int]]:
    """Wait until the hub's backlog is empty (at most ``timeout``); returns the seconds and what is left."""
    started_at = time.monotonic()
    left = backlog(db_path)
    while any(left.values()) and time.monotonic() - started_at < timeout:
        hub.check_alive()
        time.sleep(0.5)
        left = backlog(db_path)
    return round(time.monotonic() - started_at, 1), left


def scrape(url: str) -> dict[str, float]:
    """The hub's counters of interest from ``/metrics``, one entry per labelled series."""
    text = httpx.get(url + "/metrics", timeout=10).text
    found: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith(METRICS):
            series, _, value = line.rpartition(" ")
            found[series] = float(value)
    return found


def start_fakes(stack: ExitStack, work: Path) -> dict[str, str]:
    urls = {}
    for kind in ("telegram", "slack", "twilio"):
        child = stack.enter_context(
            started(f"fake-{kind}", python_cmd("bench.fake_servers", kind), log_dir=work)
        )
        urls[kind] = child.first_line()
    return urls


def measure(args: argparse.Namespace, work: Path, run: Run) -> dict[str, Any]:
    data_dir = work / "hub-data"
    with ExitStack() as stack:
        fakes = start_fakes(stack, work)
        hub_port, bare_port = free_port(), free_port()
        hub_url, bare_url = f"http://{HOST}:{hub_port}", f"http://{HOST}:{bare_port}"
        hub = stack.enter_context(
            started(
                "hub",
                threadline_cmd("serve", "--host", HOST, "--port", str(hub_port)),
                log_dir=work,
                env=hub_env(data_dir, fakes),
            )
        )
        bare = stack.enter_context(
            started(
                "bare", python_cmd("bench.bare_app", "--host", HOST, "--port", str(bare_port)), log_dir=work
            )
        )
        wait_http(hub_url + "/readyz", hub)
        wait_http(bare_url + "/healthz", bare)
        load = Load(work, args.senders, args.max_seconds)
        db_path = data_dir / "threadline.db"
        print(f"warm-up: {args.warmup} deliveries to each server", flush=True)
        load.run(bare_url, args.warmup, 4)
        load.run(hub_url, args.warmup, 4)
        warm_drain, _ = drain(db_path, hub, args.drain_timeout)
        levels = []
        for concurrency in args.concurrency:
            bare_result = load.run(bare_url, args.requests, concurrency)
            hub_result = load.run(hub_url, args.requests, concurrency)
            drain_s, left = drain(db_path, hub, args.drain_timeout)
            if any(left.values()):
                run.note(f"concurrency {concurrency}: the hub still had {left} after {drain_s} s")
            ratio = hub_result["throughput_rps"] / bare_result["throughput_rps"]
            levels.append(
                {
                    "concurrency": concurrency,
                    "hub": hub_result,
                    "bare": bare_result,
                    "hub_over_bare": round(ratio, 3),
                    "drain_s": drain_s,
                }
            )
            print(_line(levels[-1]), flush=True)
        counters = scrape(hub_url)
    return {"levels": levels, "warmup_drain_s": warm_drain, "hub_counters": counters}


def _line(level: dict[str, Any]) -> str:
    hub, bare = level["hub"], level["bare"]
    return (
        f"c={level['concurrency']:>3}  hub {hub['throughput_rps']:>7.1f} req/s "
        f"p50 {hub['latency']['p50_ms']:.1f} "
        f"p99 {hub['latency']['p99_ms']:.1f} ms | bare {bare['throughput_rps']:>7.1f} req/s "
        f"p50 {bare['latency']['p50_ms']:.1f} p99 {bare['latency']['p99_ms']:.1f} ms | "
        f"ratio {level['hub_over_bare']:.2f} | drained in {level['drain_s']} s"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Webhook acknowledgement: the hub against a bare route.")
    parser.add_argument("--requests", type=int, default=1000, help="deliveries per server and level")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--warmup", type=int, default=60, help="deliveries per server before measuring")
    parser.add_argument("--senders", type=int, default=1000, help="distinct customers per channel")
    parser.add_argument("--max-seconds", type=float, default=300.0, help="bound on one load run")
    parser.add_argument("--drain-timeout", type=float, default=600.0, help="bound on waiting for the hub")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)
    exit_cleanly_on_sigterm()
    machine = print_machine()
    params = {k: v for k, v in vars(args).items() if k != "out"}
    run = Run("webhook_ack", machine, params)
    run.note(
        "Hub: `threadline serve` (one uvicorn process, embedded default, offline LLM, in-process worker); "
        "bare: a FastAPI app whose routes return 200, served by the same uvicorn.run call. Both on "
        "127.0.0.1 with uvicorn's default loop and HTTP implementation; the load generator is a separate "
        "aiohttp process on the same machine. Deliveries rotate Telegram, Slack, Twilio; each is distinct "
        "and correctly signed. The fake platforms run as their own processes on the same cores."
    )
    with TemporaryDirectory(prefix="bench-webhook-") as tmp:
        results = measure(args, Path(tmp), run)
    run.write(results, args.out)


if __name__ == "__main__":
    main()
