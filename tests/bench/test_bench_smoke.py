"""Smoke tests of the benchmarks: each script runs end to end at tiny sizes and writes the JSON the
report reads; the report renders tables, verdicts and plots from fixture results.

The scripts run as subprocesses (as ``scripts/bench.sh`` runs them), with the loopback-only guard of
``tests/netguard`` on their path (``bench.procs.bench_env``), and every figure is only checked for
shape and sanity: timings on a shared machine say nothing at these sizes.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any
from urllib.parse import parse_qsl

import pytest
from slack_sdk.signature import SignatureVerifier
from twilio.request_validator import RequestValidator  # type: ignore[import-untyped]

from bench import report, targets
from bench.common import percentile, summary_ms
from bench.procs import bench_env
from bench.signing import Secrets, delivery

ROOT = Path(__file__).resolve().parents[2]
SECRETS = Secrets(
    telegram_secret="tg-secret",
    slack_signing_secret="slack-secret",
    twilio_auth_token="twilio-token",
    public_base_url="https://bot.example.com",
)
LATENCY_KEYS = {"n", "mean_ms", "p50_ms", "p95_ms", "p99_ms", "max_ms"}


# tiny sizes: the four benchmarks start together (they spend most of their time starting processes and
# loading the embedding model, so running them at once saves wall time) and each test checks its own
TINY = {
    "webhook_ack": ["--requests", "9", "--concurrency", "3", "--warmup", "3"],
    "turn_overhead": [
        "--customers",
        "20",
        "--memories",
        "100",
        "--turns",
        "3",
        "--warmup",
        "1",
        "--distinct-texts",
        "20",
    ],
    "memory_search": [
        "--sizes",
        "20",
        "100",
        "--queries",
        "5",
        "--warmup",
        "1",
        "--distinct-texts",
        "20",
        "--platform-size",
        "20",
    ],
    "prompt_size": ["--turns", "12", "--checkpoints", "10", "12"],
}
RUN_TIMEOUT = 300.0


class Runs:
    """The benchmark subprocesses of this module, each writing to its own folder."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.procs: dict[str, subprocess.Popen[str]] = {}
        self.files: list[IO[str]] = []

    def start(self) -> None:
        for name, args in TINY.items():
            out = self.root / name
            out.mkdir()
            stdout, stderr = (out / "stdout.txt").open("w"), (out / "stderr.txt").open("w")
            self.files += [stdout, stderr]
            self.procs[name] = subprocess.Popen(
                [sys.executable, "-m", f"bench.{name}", *args, "--out", str(out)],
                cwd=ROOT,
                env=bench_env(),
                stdout=stdout,
                stderr=stderr,
                text=True,
            )

    def result(self, name: str) -> dict[str, Any]:
        out = self.root / name
        code = self.procs[name].wait(timeout=RUN_TIMEOUT)
        assert code == 0, (out / "stderr.txt").read_text()[-3000:]
        assert "machine:" in (out / "stdout.txt").read_text()  # every script prints the machine first
        data: dict[str, Any] = json.loads((out / f"{name}.json").read_text())
        assert data["benchmark"] == name
        assert {"cores", "memory_gib", "cpu", "python", "packages", "load_average"} <= set(data["machine"])
        return data

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=30)
        for handle in self.files:
            handle.close()


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runs]:
    started = Runs(tmp_path_factory.mktemp("bench"))
    try:
        started.start()
        yield started
    finally:
        started.stop()


def assert_latency(summary: dict[str, Any], n: int) -> None:
    assert set(summary) == LATENCY_KEYS
    assert summary["n"] == n
    assert 0 < summary["p50_ms"] <= summary["p95_ms"] <= summary["p99_ms"] <= summary["max_ms"]


# ----- the pieces ------------------------------------------------------------------------------------


def test_percentiles_interpolate_between_ranks() -> None:
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5
    assert percentile([5.0], 99) == 5.0
    assert math.isnan(percentile([], 50))
    assert summary_ms([0.001, 0.003]) == {
        "n": 2,
        "mean_ms": 2.0,
        "p50_ms": 2.0,
        "p95_ms": 2.9,
        "p99_ms": 2.98,
        "max_ms": 3.0,
    }


def test_deliveries_are_distinct_and_signed_as_the_platforms_sign() -> None:
    made = [
        delivery(i, id_base=7_000_000, salt="t", senders=5, text=f"hello {i}", secrets=SECRETS)
        for i in range(9)
    ]
    assert [d.channel for d in made[:3]] == ["telegram", "slack", "twilio"]
    assert len({d.body for d in made}) == 9
    now = int(time.time())
    for item in made:
        headers = item.headers_at(now)
        if item.channel == "telegram":
            assert headers["x-telegram-bot-api-secret-token"] == "tg-secret"
        elif item.channel == "slack":
            verifier = SignatureVerifier("slack-secret")
            assert verifier.is_valid(
                item.body, headers["x-slack-request-timestamp"], headers["x-slack-signature"]
            )
            base = f"v0:{now}:".encode() + item.body
            assert (
                headers["x-slack-signature"]
                == "v0=" + hmac.new(b"slack-secret", base, hashlib.sha256).hexdigest()
            )
        else:
            params = dict(parse_qsl(item.body.decode(), keep_blank_values=True))
            url = "https://bot.example.com/webhooks/twilio/sms"
            assert RequestValidator("twilio-token").validate(url, params, headers["x-twilio-signature"])
    ids = {json.loads(d.body)["update_id"] for d in made if d.channel == "telegram"}
    assert ids == {7_000_000, 7_000_003, 7_000_006}


# ----- each benchmark at tiny sizes ---------------------------------------------------------------


@pytest.mark.slow
def test_webhook_ack_runs_and_every_delivery_is_accepted(runs: Runs) -> None:
    data = runs.result("webhook_ack")
    levels = data["results"]["levels"]
    assert [level["concurrency"] for level in levels] == [3]
    for level in levels:
        for side in ("hub", "bare"):
            result = level[side]
            assert result["statuses"] == {"200": 9}
            assert result["throughput_rps"] > 0
            assert_latency(result["latency"], 9)
            assert set(result["by_channel"]) == {"telegram", "slack", "twilio"}
        assert level["hub_over_bare"] == pytest.approx(
            level["hub"]["throughput_rps"] / level["bare"]["throughput_rps"], rel=0.01
        )
        assert level["drain_s"] >= 0
    counters = data["results"]["hub_counters"]
    accepted = sum(v for k, v in counters.items() if k.startswith("threadline_inbound_accepted_total"))
    assert accepted == 3 + 9  # warm-up and the level: every delivery was valid and new
    assert not any(k.startswith("threadline_webhooks_rejected_total") for k in counters)
    sent = sum(v for k, v in counters.items() if k.startswith("threadline_deliveries_total") and "sent" in k)
    assert sent == accepted  # and every one was answered at its fake platform


@pytest.mark.slow
def test_turn_overhead_measures_turns_through_the_pipeline(runs: Runs) -> None:
    data = runs.result("turn_overhead")
    results = data["results"]
    assert_latency(results["turn"], 3)
    assert results["preload"]["memories_written"] == 100
    assert results["worker_turn_mean_ms"] > 0
    assert results["stopped_by_time"] is False


@pytest.mark.slow
def test_memory_search_measures_each_size_and_the_platform_client(runs: Runs) -> None:
    data = runs.result("memory_search")
    local = data["results"]["local"]
    assert [row["memories"] for row in local["sizes"]] == [20, 100]
    assert [row["customers"] for row in local["sizes"]] == [2, 10]
    for row in local["sizes"]:
        assert_latency({k: row[k] for k in LATENCY_KEYS}, 5)
        assert 0 < row["mean_results"] <= 10
    assert local["p95_growth_smallest_to_largest"] > 0
    assert_latency(local["query_embedding"], 5)
    platform = data["results"]["platform"]
    assert platform["memories"] == 20
    assert_latency({k: platform[k] for k in LATENCY_KEYS}, 5)
    assert any("not Mem0's service" in note for note in data["notes"])


@pytest.mark.slow
def test_prompt_size_counts_the_prompt_the_llm_received(runs: Runs) -> None:
    data = runs.result("prompt_size")
    results = data["results"]
    assert [row["turn"] for row in results["per_turn"]] == list(range(1, 13))
    assert [row["turn"] for row in results["checkpoints"]] == [10, 12]
    for row in results["per_turn"]:
        assert row["prompt"] > 0 and row["full_history"] > 0 and row["extraction"] > 0
        assert row["prompt_messages"] >= 3  # instructions, memory block, the message
    history = [row["full_history"] for row in results["per_turn"]]
    assert history == sorted(history)  # the whole conversation only grows
    summary = results["summary"]
    assert summary["within_budget"] is True
    assert summary["max_prompt_from_turn_10"] <= summary["budget"]
    assert results["tokens"] in ("chars/4", "tiktoken o200k_base")


# ----- the report ----------------------------------------------------------------------------------


def latency(p50: float, p99: float) -> dict[str, float | int]:
    p50, p99 = float(p50), float(p99)
    return {"n": 100, "mean_ms": p50, "p50_ms": p50, "p95_ms": (p50 + p99) / 2, "p99_ms": p99, "max_ms": p99}


def envelope(name: str, params: dict[str, Any], results: dict[str, Any]) -> dict[str, Any]:
    machine = {
        "cpu": "Test CPU",
        "cores": 2,
        "usable_cores": 2,
        "memory_gib": 24.0,
        "python": "CPython 3.11",
        "load_average": [1.5, 1.0, 0.5],
        "git_commit": "abc1234",
        "git_dirty": False,
    }
    return {
        "benchmark": name,
        "machine": machine,
        "params": params,
        "results": results,
        "notes": [f"{name} note"],
        "started_at": "2026-01-01T00:00:00+00:00",
        "duration_s": 12.0,
    }


def level(concurrency: int, hub_rps: float, bare_rps: float, hub_p99: float) -> dict[str, Any]:
    side = {"statuses": {"200": 100}, "by_channel": {"telegram": latency(5, 9)}}
    return {
        "concurrency": concurrency,
        "hub": {**side, "throughput_rps": float(hub_rps), "latency": latency(5, hub_p99)},
        "bare": {**side, "throughput_rps": float(bare_rps), "latency": latency(1, 3)},
        "hub_over_bare": round(hub_rps / bare_rps, 3),
        "drain_s": 4.0,
    }


def write_fixtures(results: Path) -> None:
    results.mkdir()
    files = {
        "webhook_ack": envelope(
            "webhook_ack", {"requests": 100}, {"levels": [level(1, 50, 400, 20), level(64, 300, 500, 42)]}
        ),
        "turn_overhead": envelope(
            "turn_overhead",
            {"customers": 10_000},
            {
                "turn": latency(60, 150),
                "worker_turn_mean_ms": 40.0,
                "stopped_by_time": False,
                "preload": {"memories_written": 100_000, "memories_s": 80.0},
            },
        ),
        "memory_search": envelope(
            "memory_search",
            {"sizes": [1000, 10000, 100000]},
            {
                "local": {
                    "limit": 125,
                    "query_embedding": latency(5, 9),
                    "sizes": [
                        {
                            "memories": m,
                            "customers": m // 10,
                            "load_s": 1.0,
                            "mean_results": 8.0,
                            **latency(10, p),
                        }
                        for m, p in ((1_000, 20.0), (10_000, 21.0), (100_000, 25.0))
                    ],
                },
                "platform": {
                    "memories": 1000,
                    "customers": 100,
                    "load_s": 2.0,
                    "mean_results": 8.0,
                    **latency(4, 8),
                },
            },
        ),
        "prompt_size": envelope(
            "prompt_size",
            {"turns": 1000},
            {
                "tokens": "chars/4",
                "per_turn": [
                    {
                        "turn": t,
                        "prompt": 1500,
                        "prompt_messages": 13,
                        "extraction": 9000,
                        "full_history": 100 * t,
                    }
                    for t in range(1, 1001)
                ],
                "checkpoints": [
                    {
                        "turn": t,
                        "prompt": 1500,
                        "prompt_messages": 13,
                        "extraction": 9000,
                        "full_history": 100 * t,
                    }
                    for t in (10, 100, 1000)
                ],
                "summary": {
                    "max_prompt_from_turn_10": 1500,
                    "budget": 4000,
                    "within_budget": True,
                    "last_tenth_over_second_tenth": 1.0,
                    "full_history_at_last_turn": 100_000,
                    "prompt_at_last_turn": 1500,
                },
            },
        ),
    }
    for name, data in files.items():
        (results / f"{name}.json").write_text(json.dumps(data))
    cell = {"overall": 0.8, "categories": {"single-hop": 0.7, "multi-hop": 0.9}, "avg_tokens": 900.0}
    locomo = {  # the shape bench/locomo.py writes
        "benchmark": "locomo-recall",
        "measure": "share of questions whose evidence is in the context",
        "machine": {"cpu": "Test CPU", "cores": 2, "cores_usable": 2, "memory_gib": 24.0, "python": "3.11.7"},
        "args": {"budgets": [500, 1000]},
        "questions": {"single-hop": 10, "multi-hop": 5},
        "results": {m: {"500": cell, "1000": cell} for m in ("product", "bm25", "dense")},
        "product_latency_ms": {"p50": 20.0, "p95": 30.0, "budget": 1000},
        "run_seconds": 60.0,
        "recall_at_1000": 0.8,
    }
    (results / "locomo.json").write_text(json.dumps(locomo))


def test_report_renders_tables_plots_and_honest_verdicts(tmp_path: Path) -> None:
    write_fixtures(tmp_path / "results")
    out = tmp_path / "docs" / "benchmarks.md"
    text = report.render(tmp_path / "results", out, tmp_path / "docs" / "img")
    assert out.read_text() == text
    for heading in (
        "## Targets",
        "## Webhook acknowledgement",
        "## Turn overhead",
        "## Memory search at scale",
        "## LoCoMo memory recall",
        "## Prompt size",
    ):
        assert heading in text
    assert text.count("*Machine:* Test CPU, 2 cores, 24.0 GiB") == 5
    assert "| 64 | 300.0 | 5.00 | 42.0 | 500.0 |" in text
    for name in ("webhook_ack", "turn_overhead", "memory_search", "prompt_size", "locomo"):
        image = tmp_path / "docs" / "img" / f"{name}.png"
        assert image.read_bytes().startswith(b"\x89PNG")
        assert f"](img/{name}.png)" in text
    verdicts = {
        v.target: v
        for v in targets.all_verdicts(
            report.load_results(tmp_path / "results")
            | {"locomo": json.loads((tmp_path / "results" / "locomo.json").read_text())}
        )
    }
    assert verdicts["Webhook acknowledgement"].met is True  # 60% of bare, p99 42 ms
    assert verdicts["Turn overhead"].met is False  # p95 105 ms
    assert "5.0 ms (5%) over" in verdicts["Turn overhead"].measured
    assert verdicts["Memory search at scale"].met is True  # 17.5 ms, 1.2x
    assert verdicts["LoCoMo memory quality"].met is False  # 0.8 < 0.85
    assert verdicts["Prompt size"].met is True
    assert "| Turn overhead |" in text and "**not met**" in text


def test_report_says_what_was_not_assessed(tmp_path: Path) -> None:
    results = tmp_path / "results"
    results.mkdir()
    small = envelope("webhook_ack", {"requests": 9}, {"levels": [level(4, 10, 100, 900)]})
    (results / "webhook_ack.json").write_text(json.dumps(small))
    text = report.render(results, tmp_path / "benchmarks.md", tmp_path / "img")
    assert "at concurrency 4 only" in text
    rows = [line for line in text.splitlines() if line.startswith("| ") and line.endswith("not assessed |")]
    assert len(rows) == 5  # the small run and the four benchmarks that did not run
