"""What every benchmark shares: percentiles, the JSON result envelope, the results folder.

A result file is ``bench/results/<name>.json``::

    {"benchmark": name, "machine": {...}, "params": {...}, "results": {...}, "notes": [...],
     "started_at": ISO time, "duration_s": float}

``bench/report.py`` reads every such file and renders ``docs/benchmarks.md``.
"""

from __future__ import annotations

import json
import math
import signal
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

from bench.machine import ROOT

RESULTS_DIR = ROOT / "bench" / "results"


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) with linear interpolation between closest ranks; NaN when empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    low = math.floor(rank)
    high = math.ceil(rank)
    if low == high:
        return float(ordered[low])
    return float(ordered[low] + (ordered[high] - ordered[low]) * (rank - low))


def summary_ms(seconds: Sequence[float]) -> dict[str, float | int]:
    """Count, mean, p50, p95, p99 and max of durations given in seconds, in milliseconds (3 decimals)."""
    ms = [s * 1000.0 for s in seconds]
    if not ms:
        return {"n": 0}
    return {
        "n": len(ms),
        "mean_ms": round(sum(ms) / len(ms), 3),
        "p50_ms": round(percentile(ms, 50), 3),
        "p95_ms": round(percentile(ms, 95), 3),
        "p99_ms": round(percentile(ms, 99), 3),
        "max_ms": round(max(ms), 3),
    }


class Run:
    """One benchmark run: remembers when it started and writes the result envelope."""

    def __init__(self, name: str, machine: dict[str, Any], params: dict[str, Any]) -> None:
        self.name = name
        self.machine = machine
        self.params = params
        self.notes: list[str] = []
        self.started_at = datetime.now(UTC).isoformat(timespec="seconds")
        self._t0 = time.perf_counter()

    def note(self, text: str) -> None:
        self.notes.append(text)

    def write(self, results: dict[str, Any], out_dir: Path = RESULTS_DIR) -> Path:
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / f"{self.name}.json"
        envelope = {
            "benchmark": self.name,
            "machine": self.machine,
            "params": self.params,
            "results": results,
            "notes": self.notes,
            "started_at": self.started_at,
            "duration_s": round(time.perf_counter() - self._t0, 1),
        }
        path.write_text(json.dumps(envelope, indent=2, allow_nan=False) + "\n", encoding="utf-8")
        print(f"wrote {path}", flush=True)
        return path


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def exit_cleanly_on_sigterm() -> None:
    """Turn SIGTERM into ``SystemExit`` so ``finally`` blocks stop the subprocesses a benchmark started."""
    signal.signal(signal.SIGTERM, _terminate)
