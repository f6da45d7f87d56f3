"""``threadline migrate`` and ``serve --role/--workers`` (issue 13), as real processes.

Before the advisory lock, two processes started together on a fresh PostgreSQL database raced on the
migration and one died (``UniqueViolationError ... alembic_version``).
"""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import pytest

from tests.conftest import subprocess_env, threadline_cmd

postgres_only = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)


@postgres_only
async def test_many_processes_migrating_a_fresh_database_at_once_all_succeed(
    database_url: str, tmp_path: Path
) -> None:
    env = subprocess_env(tmp_path, THREADLINE_DATABASE_URL=database_url)
    runs = [
        await asyncio.create_subprocess_exec(
            *threadline_cmd("migrate"), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        for _ in range(4)
    ]
    results = await asyncio.gather(*(run.communicate() for run in runs))
    assert [run.returncode for run in runs] == [0, 0, 0, 0], [err.decode()[-400:] for _, err in results]
    said = [out.decode() for out, _ in results]
    assert sum("migrated from an empty database" in line for line in said) == 1  # one did the work
    assert all("revision" in line for line in said)
    again = subprocess.run(threadline_cmd("migrate"), env=env, capture_output=True, text=True, check=True)
    assert "schema up to date" in again.stdout


@pytest.mark.parametrize("args", [["--workers", "2"], ["--role", "worker"], ["--role", "web"]])
def test_serve_split_on_sqlite_is_refused_naming_the_setting(tmp_path: Path, args: list[str]) -> None:
    done = subprocess.run(
        threadline_cmd("serve", "--port", "0", *args),
        env=subprocess_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "THREADLINE_DATABASE_URL" in done.stderr and "Traceback" not in done.stderr


def test_serve_refuses_an_unknown_role(tmp_path: Path) -> None:
    done = subprocess.run(
        threadline_cmd("serve", "--role", "janitor"),
        env=subprocess_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and "janitor" in done.stderr


@postgres_only
async def test_serve_with_two_worker_processes_answers_and_stops(database_url: str, tmp_path: Path) -> None:
    import signal
    import socket

    import httpx

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = subprocess_env(tmp_path, THREADLINE_DATABASE_URL=database_url)
    server = subprocess.Popen(
        threadline_cmd("serve", "--port", str(port), "--workers", "2", "--role", "web"),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        ready = False
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
            for _ in range(300):
                try:
                    if (await client.get("/readyz")).status_code == 200:
                        ready = True
                        break
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.1)
        assert ready, "serve --workers 2 never became ready"
    finally:
        server.send_signal(signal.SIGINT)
        output, _ = server.communicate(timeout=60)
    assert server.returncode == 0, output[-2000:]
    assert output.count("hub started: role=web") == 2  # two server processes, each a web hub
