"""The serving process's heap, settled once it has started: what is loaded then lives as long as the
process, so the cyclic garbage collector need not scan it again.

A full collection walks every tracked object. Once the hub has started and its memory is warm (Mem0, the
ONNX embedder, the language model, the SDKs, the app) that is about 300,000 objects, and a full
collection took 130-145 ms on the 2-core machine (measured 2026-12-07), during which no thread of the
process runs: every webhook waiting for an acknowledgement and every recall in flight waited with it.
:func:`settle` collects what start-up left behind once, then moves everything alive into the
collector's permanent generation (``gc.freeze``): the same full collection then took 0.6 ms. Objects made
afterwards are collected as before; the frozen ones are never freed by the collector (they are the
process's own for its lifetime, and reference counting still frees any whose count drops to zero). It
runs beside the first requests: what those have in reference cycles at that moment is frozen too and
never freed, a one-time leak of a few requests' objects.

Frozen, the collector no longer waits for a quarter of the old heap to be new before a full collection
(the frozen objects do not count), so full collections of what is not frozen come often; a youngest
generation of :data:`GEN0_THRESHOLD` allocations (700 by default) makes all collections rarer. Measured
with ``bench/webhook_ack.py`` (2,000 signed deliveries at concurrency 64, alternating processes, the hub
answering them meanwhile): p99 254-361 ms before, 87-96 ms frozen, 77-89 ms frozen with this threshold;
throughput 851-1,092 req/s before, 959-971 frozen, 1,041-1,156 with it.

Only ``threadline serve`` settles (``create_app(..., serving=True)``): a test process starts many apps
and keeps no heap for long.
"""

from __future__ import annotations

import gc

GEN0_THRESHOLD = 10_000


def settle() -> int:
    """Collect start-up's garbage, freeze what is alive and make collections rarer; returns how many objects
    are frozen now."""
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(GEN0_THRESHOLD, older, oldest)
    return gc.get_freeze_count()
