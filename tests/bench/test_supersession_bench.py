"""Issue 15's measure of updated facts, on 200 generated cases the patterns were not tuned on (seed 11;
``bench/supersession.py`` was developed on seed 7): the current value is recalled ahead of the old one in at
least 0.95 of them. Without the marking (ranking alone) it is about half."""

from __future__ import annotations

from pathlib import Path

from bench.supersession import generate, run


async def test_the_current_value_is_recalled_ahead_of_the_old_one_in_at_least_95_percent(
    tmp_path: Path,
) -> None:
    results = await run(200, 11, tmp_path, baseline=False)
    current = results["current"]
    assert current["cases"] == 200
    assert current["score"] >= 0.95, current
    assert all(score >= 0.9 for score in current["by_slot"].values()), current


def test_the_generated_cases_vary_the_wording_and_the_values() -> None:
    cases = generate(200, 11)
    assert {case.slot for case in cases} == {"address", "phone", "email", "plan"}
    said_new = [next(m for m in case.memories if case.new in m) for case in cases]
    assert len(set(said_new)) > 150  # not one sentence repeated
    assert len({m.replace(c.new, "{}") for m, c in zip(said_new, cases, strict=True)}) >= 15  # many wordings
    assert all(case.old != case.new for case in cases)
