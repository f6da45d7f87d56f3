"""``core.heap.settle`` (what ``threadline serve`` does once started), in a process of its own: it freezes
what is alive, collects rarer, and garbage made afterwards is still collected."""

from __future__ import annotations

import json
import subprocess
import sys

SCRIPT = """
import gc, json
from core import heap
kept = [[i] for i in range(50_000)]  # alive when the heap settles (lists: tracked): frozen
frozen = heap.settle()
cycle = {}
cycle["self"] = cycle  # garbage made afterwards, only the collector frees it
del cycle
print(json.dumps({"frozen": frozen, "threshold": gc.get_threshold(), "collected": gc.collect()}))
"""


def test_settle_freezes_what_is_alive_and_still_collects_what_comes_after() -> None:
    command = [sys.executable, "-c", SCRIPT]
    done = subprocess.run(command, capture_output=True, text=True, check=True, timeout=60)
    found = json.loads(done.stdout)
    assert found["frozen"] > 50_000
    assert found["threshold"][0] == 10_000
    assert found["collected"] >= 1
