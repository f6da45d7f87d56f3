"""PostgreSQL for the scale benchmark: a server, fresh databases made and dropped by the run, and the
hub's settings.

By default (``--pg private``) the run starts a PostgreSQL server of its own (the machine's PostgreSQL
binaries, ``initdb`` into a temporary folder, trust auth, 127.0.0.1 on a free port, the distribution's
default configuration: ``max_connections`` 100, ``fsync`` and ``synchronous_commit`` on), so that its
connections and its load are its own and nothing else's (the shared server at 127.0.0.1:5432 carries
every test suite run on this machine); it is stopped and deleted at the end. ``--pg URL`` uses an
existing server instead. Each part of ``bench.scale`` gets a database of its own (``CREATE DATABASE
bench_scale_<salt>_<part>``), migrated with ``threadline migrate`` as a release step would, and dropped
at the end whatever happens.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url

from bench.procs import HOST, bench_env, free_port, threadline_cmd
from bench.signing import TELEGRAM_FIRST_USER
from tests.fakes.telegram_api import DEFAULT_TOKEN as TELEGRAM_TOKEN

PRIVATE = "private"
# secrets of the benchmark's own fakes, not of any real account
SLACK_SECRET = "bench-scale-slack-signing-secret-0123456789"  # noqa: S105
SLACK_TOKEN = "xoxb-fake-token"  # noqa: S105 - FakeSlackAPI's token (bench.fake_servers)
TELEGRAM_SECRET = "bench-scale-telegram-secret_0123456789"  # noqa: S105
FIRST_CHAT = TELEGRAM_FIRST_USER
_NAME = re.compile(r"^[a-z0-9_]{1,63}$")


def _admin_dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def _execute(url: str, statement: str) -> None:
    import asyncpg

    conn: Any = await asyncpg.connect(_admin_dsn(url))
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


class Databases:
    """Fresh databases on the server of ``url`` (whose own database is only used to create them)."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._salt = uuid.uuid4().hex[:8]
        self.made: list[str] = []

    def create(self, part: str) -> str:
        """A new empty database for ``part``; returns its SQLAlchemy URL."""
        name = f"bench_scale_{self._salt}_{part}"
        if not _NAME.match(name):
            raise ValueError(f"not a plain database name: {name!r}")
        asyncio.run(_execute(self._url, f'CREATE DATABASE "{name}"'))
        self.made.append(name)
        return make_url(self._url).set(database=name).render_as_string(hide_password=False)

    def drop_all(self) -> None:
        for name in self.made:
            asyncio.run(_execute(self._url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        self.made.clear()


@contextmanager
def scratch_databases(url: str) -> Iterator[Databases]:
    made = Databases(url)
    try:
        yield made
    finally:
        made.drop_all()


def hub_env(
    database_url: str,
    data_dir: Path,
    fakes: Mapping[str, str],
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The environment of a ``threadline serve`` process of the benchmark: PostgreSQL, Slack and Telegram
    pointed at the fakes, the LLM at the fake one when there is one (offline otherwise)."""
    values = {
        "THREADLINE_DATABASE_URL": database_url,
        "THREADLINE_DATA_DIR": str(data_dir),
        "THREADLINE_LOG_LEVEL": "INFO",
        "THREADLINE_SLACK__BOT_TOKEN": SLACK_TOKEN,
        "THREADLINE_SLACK__SIGNING_SECRET": SLACK_SECRET,
        "THREADLINE_SLACK__API_BASE_URL": fakes["slack"],
        "THREADLINE_TELEGRAM__BOT_TOKEN": TELEGRAM_TOKEN,
        "THREADLINE_TELEGRAM__SECRET_TOKEN": TELEGRAM_SECRET,
        "THREADLINE_TELEGRAM__API_BASE_URL": fakes["telegram"],
    }
    if "llm" in fakes:
        values |= {
            "THREADLINE_LLM__API_KEY": "sk-bench",
            "THREADLINE_LLM__BASE_URL": fakes["llm"],
            "THREADLINE_LLM__TIMEOUT": "60",
            "THREADLINE_LLM__MAX_RETRIES": "0",
        }
    return bench_env(values | dict(extra or {}))


def migrate(database_url: str, data_dir: Path) -> str:
    """``threadline migrate`` against ``database_url``, as a release step runs it; returns what it said."""
    env = bench_env({"THREADLINE_DATABASE_URL": database_url, "THREADLINE_DATA_DIR": str(data_dir)})
    done = subprocess.run(
        threadline_cmd("migrate"), env=env, capture_output=True, text=True, timeout=300, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"threadline migrate failed ({done.returncode}): {done.stderr[-2000:]}")
    return done.stdout.strip()


def _pg_bindir() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"), key=lambda p: int(p.parts[-3]))
    if not found:
        raise RuntimeError("no PostgreSQL binaries under /usr/lib/postgresql (apt-get install postgresql)")
    return found[-1].parent


def _as_postgres(cmd: list[str]) -> list[str]:
    """``cmd`` as the ``postgres`` user when run as root (the server refuses to run as root)."""
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


@dataclass(frozen=True, slots=True)
class Server:
    """A PostgreSQL server: the URL of a database on it, and the process of a private one (else None)."""

    url: str
    pid: int | None = None


@contextmanager
def private_server() -> Iterator[Server]:
    """A PostgreSQL server of this run's own on 127.0.0.1 (its ``postgres`` database)."""
    bindir = _pg_bindir()
    folder = Path(tempfile.mkdtemp(prefix="bench-scale-pg-"))
    data = folder / "data"
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres", "postgres")
    port = free_port()
    user = "root" if os.geteuid() == 0 else os.environ.get("USER", "postgres")
    log = (folder / "server.log").open("ab")
    try:
        subprocess.run(
            _as_postgres([str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", user, "-E", "UTF8"]),
            check=True,
            capture_output=True,
            timeout=300,
        )
        options = ["-D", str(data), "-p", str(port), "-k", str(folder), "-c", f"listen_addresses={HOST}"]
        server = subprocess.Popen(
            _as_postgres([str(bindir / "postgres"), *options]),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
        )
        try:
            url = f"postgresql+asyncpg://{user}@{HOST}:{port}/postgres"
            _wait_accepting(url, server)
            yield Server(url, server.pid)
        finally:
            server.terminate()  # SIGTERM: PostgreSQL's smart shutdown
            try:
                server.wait(timeout=60)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait(timeout=30)
    finally:
        log.close()
        shutil.rmtree(folder, ignore_errors=True)


def _wait_accepting(url: str, server: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the private PostgreSQL server exited with {server.returncode}")
        try:
            asyncio.run(_execute(url, "SELECT 1"))
            return
        except Exception as exc:  # refused, or asyncpg's "the database system is starting up"
            last = exc
        time.sleep(0.2)
    raise RuntimeError(f"the private PostgreSQL server did not start in {timeout:.0f} s ({last!r})")


@contextmanager
def server(pg: str) -> Iterator[Server]:
    """The server of ``--pg``: a private one, or the database URL given."""
    if pg == PRIVATE:
        with private_server() as private:
            yield private
    else:
        yield Server(pg)
