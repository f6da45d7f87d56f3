"""Fuzzing hostile input (issue 6): the shared hypothesis profile and the examples-tried summary.

Every fuzz target calls ``record(target, outcome)`` once per example; at the end of the session the
terminal reporter prints how many examples each target tried and the outcomes (status codes) seen,
whether or not ``-s`` is given. The budget is fixed (``derandomize=True``, no example database), so a
CI run tries exactly the same inputs every time; ``FUZZ_SCALE`` multiplies it for a longer local run.
"""

from __future__ import annotations

import os
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

_SCALE = float(os.environ.get("FUZZ_SCALE", "1"))

_FOREIGN = ("OPENAI_API_KEY", "MEM0_API_KEY", "OPENAI_BASE_URL")
TRIED: Counter[str] = Counter()
OUTCOMES: defaultdict[str, Counter[str]] = defaultdict(Counter)


def budget(max_examples: int) -> settings:
    """The fuzz profile: a bounded, reproducible run; no per-example deadline (the app is over HTTP)."""
    return settings(
        max_examples=max(1, int(max_examples * _SCALE)),
        deadline=None,
        derandomize=True,
        database=None,
        print_blob=False,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.large_base_example,
            HealthCheck.function_scoped_fixture,  # only the autouse network guard and env cleaner
        ],
    )


def record(target: str, outcome: int | str) -> None:
    TRIED[target] += 1
    OUTCOMES[target][str(outcome)] += 1


@contextmanager
def clean_environment(folder: Path) -> Iterator[None]:
    """While settings are built for a module-wide app: no developer THREADLINE_* variables, no ``.env``."""
    with pytest.MonkeyPatch.context() as patch:
        for name in list(os.environ):
            if name.startswith("THREADLINE_") or name in (
                "OPENAI_API_KEY",
                "MEM0_API_KEY",
                "OPENAI_BASE_URL",
            ):
                patch.delenv(name, raising=False)
        patch.chdir(folder)
        yield


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not TRIED:
        return
    terminalreporter.section("fuzz: examples tried per target")
    for target in sorted(TRIED):
        seen = ", ".join(f"{outcome}×{count}" for outcome, count in sorted(OUTCOMES[target].items()))
        terminalreporter.write_line(f"{target:<28} {TRIED[target]:>5}   outcomes: {seen}")
    terminalreporter.write_line(f"{'total':<28} {sum(TRIED.values()):>5}")
