"""Shared fixtures: the loopback-only network guard, clean settings, and the two databases.

Store tests run on SQLite and on the local PostgreSQL. Where no PostgreSQL answers, the PostgreSQL
variants skip with the reason shown; with ``CI=true`` they fail instead of skipping.
"""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.netguard import netguard

ROOT = Path(__file__).resolve().parent.parent
NETGUARD_DIR = Path(__file__).resolve().parent / "netguard"
POSTGRES_URL = os.environ.get("THREADLINE_TEST_POSTGRES_URL", "postgresql+asyncpg://127.0.0.1:5432/test")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


@pytest.fixture(autouse=True)
def _loopback_only() -> Iterator[None]:
    """Every test: a connection outside loopback raises ``NetworkBlocked``."""
    netguard.install()
    yield
    netguard.uninstall()


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No developer configuration leaks into a test; every test runs in its own folder."""
    for name in list(os.environ):
        if name.startswith("THREADLINE_") or name in ("OPENAI_API_KEY", "MEM0_API_KEY", "OPENAI_BASE_URL"):
            monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


def subprocess_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """Environment for a subprocess test: clean settings, the network guard, data under ``tmp_path``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not (k.startswith("THREADLINE_") or k in ("OPENAI_API_KEY", "MEM0_API_KEY", "OPENAI_BASE_URL"))
    }
    env["PYTHONPATH"] = os.pathsep.join([str(NETGUARD_DIR), str(ROOT)])
    env["THREADLINE_NETGUARD_LOG"] = str(tmp_path / "netguard.log")
    env["THREADLINE_DATA_DIR"] = str(tmp_path / "data")
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def threadline_cmd(*args: str) -> list[str]:
    """The console script, run with this interpreter."""
    return [sys.executable, "-c", "from core.cli import main; main()", *args]


async def _postgres_reachable() -> str | None:
    import asyncpg

    try:
        conn = await asyncio.wait_for(asyncpg.connect(_dsn(POSTGRES_URL)), timeout=5)
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    await conn.close()
    return None


def _dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://")


@pytest.fixture(params=["sqlite", "postgresql"])
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A database URL: SQLite in ``tmp_path``, or a fresh database on the local PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'store.db'}"
        return
    problem = await _postgres_reachable()
    if problem is not None:
        if IN_CI:
            pytest.fail(
                f"PostgreSQL is required under CI=true but not reachable at {POSTGRES_URL}: {problem}"
            )
        pytest.skip(f"no PostgreSQL at {POSTGRES_URL} ({problem}); set THREADLINE_TEST_POSTGRES_URL")
    import asyncpg

    name = f"threadline_t_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(_dsn(POSTGRES_URL))
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    base, _, _ = POSTGRES_URL.rpartition("/")
    yield f"{base}/{name}"
    admin = await asyncpg.connect(_dsn(POSTGRES_URL))
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()
