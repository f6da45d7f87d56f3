"""The scale benchmark's pure pieces: the profile's layers, the histogram quantiles, the drain rates, the
medians and ratios, the Slack deliveries and the report section (the run itself needs PostgreSQL and
minutes: ``python -m bench.scale --quick``)."""

from __future__ import annotations

import math
import os
import time
from typing import Any

import pytest
from slack_sdk.signature import SignatureVerifier

from bench import scale_ack, scale_report
from bench.corpus import Corpus
from bench.scale_cpu import CpuMeter, parse_machine, parse_stat, tree_cpu_seconds
from bench.scale_load import slack_deliveries
from bench.scale_profile import LOOP, OTHER, classify, summarize
from bench.scale_turns import crossing, quiet_ratio, rates
from bench.scale_work import counter_sum, histogram, minus, quantile

ROOT = "<module> (threadline:8);BaseEventLoop._run_once (asyncio/base_events.py:1922)"
CALLBACK = ROOT + ";Handle._run (asyncio/events.py:80)"


def test_a_sample_goes_to_the_layer_nearest_its_leaf_within_the_callback() -> None:
    commit = CALLBACK + ";_webhook (core/web/app.py:80);Inbox.accept (core/pipeline/inbox.py:110)"
    assert classify((commit + ";Connection.execute (asyncpg/connection.py:377)").split(";")).startswith(
        "inbox"
    )
    verify = (
        CALLBACK
        + ";_webhook (core/web/app.py:80);SignatureVerifier.is_valid (slack_sdk/signature/__init__.py:50)"
    )
    assert classify((verify + ";new (hmac.py:184)").split(";")).startswith("Slack")
    # the loop's own work, although uvicorn called asyncio.run
    assert classify((ROOT + ";EpollSelector.select (selectors.py:468)").split(";")) == LOOP
    assert classify(CALLBACK.split(";")) == LOOP
    assert classify((CALLBACK + ";Future.set_result (asyncio/futures.py:10)").split(";")) == LOOP
    assert classify((CALLBACK + ";dumps (json/__init__.py:231)").split(";")) == OTHER


def test_the_profile_summary_gives_shares_and_top_leaves() -> None:
    lines = [
        f'process 12:"python";{CALLBACK};run (uvicorn/protocols/http/h11_impl.py:400) 6',
        f"{CALLBACK};emit (logging/__init__.py:1100) 2",
        f"{ROOT};EpollSelector.select (selectors.py:468) 2",
        "garbage line",
    ]
    found = summarize(lines)
    assert found["samples"] == 10
    assert found["layers"] == {
        "HTTP server (uvicorn, h11, httptools)": 0.6,
        "logging (access log and ours)": 0.2,
        LOOP: 0.2,
    }
    assert found["top_leaves"][0] == ["run (uvicorn/protocols/http/h11_impl.py:400)", 0.6]
    assert summarize([])["samples"] == 0


METRICS = """# HELP threadline_pickup_seconds x
threadline_pickup_seconds_bucket{le="0.001"} 0.0
threadline_pickup_seconds_bucket{le="0.01"} 50.0
threadline_pickup_seconds_bucket{le="0.1"} 90.0
threadline_pickup_seconds_bucket{le="1.0"} 100.0
threadline_pickup_seconds_bucket{le="+Inf"} 100.0
threadline_pickup_seconds_count 100.0
threadline_replies_total{channel="telegram",mode="llm"} 7.0
threadline_replies_total{channel="slack",mode="llm"} 3.0
threadline_replies_created{channel="slack",mode="llm"} 1.7e9
"""


def test_histogram_quantiles_interpolate_within_buckets_as_prometheus_does() -> None:
    buckets = histogram(METRICS, "threadline_pickup_seconds")
    assert buckets[-1] == (math.inf, 100.0)
    assert quantile(buckets, 0.5) == pytest.approx(0.01)
    assert quantile(buckets, 0.25) == pytest.approx(0.001 + 0.009 * 0.5)
    assert quantile(buckets, 0.95) == pytest.approx(0.1 + 0.9 * 0.5)
    before = [(0.001, 0.0), (0.01, 50.0), (0.1, 50.0), (1.0, 50.0), (math.inf, 50.0)]
    only_new = minus(buckets, before)
    assert only_new[1] == (0.01, 0.0) and only_new[-1] == (math.inf, 50.0)
    assert quantile(only_new, 0.5) == pytest.approx(0.01 + 0.09 * 25 / 40)
    assert quantile([(0.1, 0.0), (math.inf, 4.0)], 0.5) == 0.1  # in +Inf: the highest finite bound
    assert quantile([(0.1, 0.0), (math.inf, 0.0)], 0.5) is None
    assert counter_sum(METRICS, "threadline_replies") == 10.0


def test_drain_rates_over_the_whole_drain_and_between_ten_and_ninety_percent() -> None:
    series = [(1.0, 0), (2.0, 10), (3.0, 50), (4.0, 90), (5.0, 100)]
    assert crossing(series, 50) == 3.0
    assert crossing(series, 30) == pytest.approx(2.5)
    assert crossing(series, 101) is None
    assert rates(series, 100) == {"drain_s": 5.0, "turns_per_s": 20.0, "steady_turns_per_s": 40.0}
    assert rates([(1.0, 3)], 10) == {"drain_s": None, "turns_per_s": None}


def load(rps: float, p50: float, p99: float) -> dict[str, Any]:
    return {
        "throughput_rps": rps,
        "ok": 10,
        "statuses": {"200": 10},
        "latency": {"p50_ms": p50, "p99_ms": p99},
    }


def test_each_server_gets_the_median_of_its_rounds_and_the_hubs_their_ratios() -> None:
    medians = {
        "bare": scale_ack.median_of([load(3000, 10, 30), load(2000, 12, 40), load(2800, 11, 20)]),
        "bolt": scale_ack.median_of([load(500, 100, 300)]),
        "hub-web-2": scale_ack.median_of([load(1400, 30, 45), load(1500, 31, 48)]),
    }
    assert medians["bare"] == {
        "throughput_rps": 2800,
        "p50_ms": 11,
        "p99_ms": 30,
        "rounds": 3,
        "ok": 30,
        "statuses": {"200": 30},
    }
    assert medians["hub-web-2"]["throughput_rps"] == 1450
    assert scale_ack.ratios(medians) == {"hub-web-2/bare": 0.518, "hub-web-2/bolt": 2.9}


def test_the_cpu_bound_ceiling_takes_the_processes_and_the_shared_cores_into_account() -> None:
    medians = {
        "bare": {"cpu_ms_per_request": {"server": 0.5, "postgres": 0.0, "loadgen": 0.5}},
        "hub-web-2": {"cpu_ms_per_request": {"server": 1.5, "postgres": 0.3, "loadgen": 0.2}},
        "hub-web-1": {"cpu_ms_per_request": {"server": 2.0, "postgres": 0.0, "loadgen": 0.0}},
        "bolt": {},
    }
    found = scale_ack.ceilings(medians, cores=2)
    assert found == {"bare": 2000.0, "hub-web-2": 1000.0, "hub-web-1": 500.0}
    assert scale_ack.ceilings(medians, cores=1)["hub-web-2"] == 500.0


def test_slack_deliveries_are_distinct_and_verify_with_slacks_own_verifier() -> None:
    made = slack_deliveries(6, id_base=5_000, salt="t", senders=4, secret="s3cret", corpus=Corpus(1))
    assert len({d.body for d in made}) == 6 and {d.channel for d in made} == {"slack"}
    now = int(time.time())
    for item in made:
        headers = item.headers_at(now)
        assert SignatureVerifier("s3cret").is_valid(
            item.body, headers["x-slack-request-timestamp"], headers["x-slack-signature"]
        )


def envelope(hub_rps: float, p99: float, two_over_one: float) -> dict[str, Any]:
    medians = {
        name: {
            "throughput_rps": rps,
            "p50_ms": 10.0,
            "p99_ms": p,
            "rounds": 3,
            "ok": 30,
            "statuses": {"200": 30},
        }
        for name, rps, p in (
            ("hub-web-1", 700.0, 120.0),
            ("hub-web-2", hub_rps, p99),
            ("bare", 2000.0, 30.0),
            ("bolt", 600.0, 200.0),
        )
    }
    runs = [
        {
            "workers": w,
            "turns_per_s": t,
            "steady_turns_per_s": t,
            "drain_s": 10.0,
            "replies_per_worker": r,
            "rest_drained_after_s": 1.0,
        }
        for w, t, r in ((1, 10.0, [100]), (2, 10.0 * two_over_one, [52, 48]))
    ]
    pickup = {"n": 50, "p50_ms": 3.1, "p95_ms": 8.0}
    return {
        "benchmark": "scale",
        "machine": {"cpu": "Test CPU", "cores": 2, "memory_gib": 24.0, "python": "CPython 3.11"},
        "params": {"requests": 3000},
        "notes": ["a note"],
        "started_at": "2026-01-01T00:00:00+00:00",
        "results": {
            "ack": {
                "concurrency": 64,
                "medians": medians,
                "ratios": scale_ack.ratios(medians),
                "hub_200s": 9000,
                "hub_inbox_rows": 9000,
                "profiles": {"hub-web-1": {"layers": {"inbox commit": 0.4, LOOP: 0.1}}},
            },
            "turns": {
                "llm_delay_s": 0.5,
                "messages": 100,
                "customers": 50,
                "runs": runs,
                "two_over_one": two_over_one,
            },
            "wake": {
                "notify": {
                    "poll_interval_s": 30.0,
                    "pickup": pickup,
                    "end_to_end": {"n": 50, "p50_ms": 20.0, "p95_ms": 30.0},
                },
            },
        },
    }


def test_the_verdicts_hold_the_run_to_the_issues_goals() -> None:
    met = scale_report.verdicts(envelope(1100.0, 45.0, 1.8)["results"])
    assert [v.met for v in met] == [True, True]
    missed = scale_report.verdicts(envelope(900.0, 80.0, 1.2)["results"])
    assert [v.met for v in missed] == [False, False]
    assert "short" in missed[0].measured and "over" in missed[0].measured
    assert [v.met for v in scale_report.verdicts({})] == [None, None]


def test_the_section_renders_every_table_and_replaces_itself_on_the_page() -> None:
    lines = scale_report.section(envelope(1100.0, 45.0, 1.8))
    text = "\n".join(lines)
    for heading in (
        "## Scale mode on PostgreSQL",
        "### Acknowledgements at concurrency 64",
        "### Turns per second",
        "### Wake-up",
    ):
        assert heading in text
    assert "| `threadline serve --role web --workers 2` | 1,100.0 | 10.0 | 45.0 | 55% | 183% |" in text
    assert "| inbox commit | 40% |" in text
    assert "2 workers / 1 worker: **1.8x**." in text
    page = "# Benchmarks\n\nbody\n\n*Rendered 2026 from 5 result file(s).*\n"
    once = scale_report.place(page, "## Scale\nv1")
    assert once.index("## Scale") < once.index("*Rendered") and "body" in once
    twice = scale_report.place(once, "## Scale\nv2")
    assert "v1" not in twice and twice.count(scale_report.BEGIN) == 1 and twice.endswith("file(s).*\n")
    assert scale_report.place("# B\n", "x").endswith(f"{scale_report.BEGIN}\nx\n{scale_report.END}\n")


def test_cpu_ticks_are_read_past_a_command_name_with_spaces_and_parentheses() -> None:
    # fields 4-52 hold their own number: ppid is field 4; utime, stime, cutime, cstime are 14-17
    line = "1234 (python (worker) 1) S " + " ".join(str(n) for n in range(4, 53))
    ppid, ticks = parse_stat(line)
    assert ppid == 4
    assert ticks == 14 + 15 + 16 + 17
    assert tree_cpu_seconds(os.getpid()) > 0
    assert tree_cpu_seconds(2**22 + 12345) == 0.0  # no such process


def test_table_sizes_show_bytes_per_row_of_the_tables_large_enough_to_tell() -> None:
    sizes = {"inbox": {"rows": 1000, "bytes": 512_000}, "leases": {"rows": 1, "bytes": 16_384}}
    text = "\n".join(scale_report.size_lines(sizes))
    assert "| inbox | 1,000 | 500 | 512 |" in text and "leases" not in text
    assert scale_report.size_lines({}) == []


def test_the_machine_busy_time_leaves_idle_and_iowait_out_and_the_meter_says_what_others_took() -> None:
    assert parse_machine("cpu  10 1 5 1000 50 2 3 4 0 0") == 10 + 1 + 5 + 2 + 3 + 4
    meter = CpuMeter({"self": os.getpid()})
    meter.start()
    sum(i * i for i in range(200_000))
    spent = meter.stop()
    assert spent["self"] >= 0 and meter.others_cores is not None and meter.others_cores >= 0


def test_scale_out_is_judged_on_the_rounds_where_the_rest_of_the_machine_was_quiet() -> None:
    def fleet(*rounds: tuple[float, float]) -> dict[str, Any]:
        return {"rounds": [{"turns_per_s": t, "others_cores": o} for t, o in rounds]}

    runs = [fleet((4.0, 1.2), (5.0, 0.05), (5.0, 0.1)), fleet((4.2, 1.1), (9.5, 0.04), (10.0, 0.2))]
    assert quiet_ratio(runs) == {"rounds": 2, "two_over_one": 1.95, "others_below": 0.25}
    assert quiet_ratio(runs, limit=0.01) is None
    turns = {"two_over_one": 1.1, "runs": runs}
    verdict = scale_report.turns_verdict(turns, "goal")
    assert verdict.met is True and "2 round(s)" in verdict.measured
    assert "1.100 on the medians" in verdict.measured
    noisy = [fleet((4.0, 1.2)), fleet((4.2, 1.1))]
    assert scale_report.turns_verdict({"two_over_one": 1.05, "runs": noisy}, "goal").met is False
