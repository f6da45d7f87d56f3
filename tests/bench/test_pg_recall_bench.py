"""``bench.pg_recall_latency`` runs on the local PostgreSQL and reports both variants side by side."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import pg_recall_latency
from bench.pg_recall_latency import MODES

on_postgres = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)


@pytest.mark.postgres
@on_postgres
def test_the_pg_recall_bench_measures_kept_and_read_scopes(database_url: str, tmp_path: Path) -> None:
    url = database_url.replace("postgresql+asyncpg://", "postgresql://")
    tiny = ["--sizes", "10", "300", "--queries", "3", "--warmup", "1", "--distinct-texts", "30"]
    pg_recall_latency.main([*tiny, "--database-url", url, "--out", str(tmp_path)])
    data = json.loads((tmp_path / "pg_recall_latency.json").read_text())
    results = data["results"]
    for variant in pg_recall_latency.VARIANTS:
        for mode in MODES:
            rows = results[variant][mode]["sizes"]
            assert [(r["memories"], r["n"]) for r in rows] == [(10, 3), (300, 3)]
            assert all(0 < r["p50_ms"] <= r["p95_ms"] for r in rows)
    assert set(results["kept_over_read_p50"]) == set(MODES) == {"steady", "after_write", "after_delete"}
