"""Subprocesses of a benchmark: started with a clean environment, stopped whatever happens.

Every child runs with ``tests/netguard`` first on ``PYTHONPATH``: its ``sitecustomize`` makes any
connection outside loopback fail, so a benchmark can only ever talk to 127.0.0.1. A child's stderr goes to
a log file (named in the error when it fails to start); its stdout is read line by line by a thread, so
a child that prints a lot never blocks on a full pipe.
"""

from __future__ import annotations

import contextlib
import os
import queue
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Self

import httpx

from bench.machine import ROOT

NETGUARD_DIR = ROOT / "tests" / "netguard"
HOST = "127.0.0.1"
_CLEARED = ("OPENAI_API_KEY", "OPENAI_BASE_URL", "MEM0_API_KEY")


def bench_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This environment without any Threadline or vendor settings, plus the loopback guard and ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("THREADLINE_") and k not in _CLEARED}
    env["PYTHONPATH"] = os.pathsep.join([str(NETGUARD_DIR), str(ROOT)])
    env["PYTHONUNBUFFERED"] = "1"
    env["MEM0_TELEMETRY"] = "False"
    env.update(extra or {})
    return env


def python_cmd(module: str, *args: str) -> list[str]:
    """``python -m module args`` with this interpreter."""
    return [sys.executable, "-m", module, *args]


def threadline_cmd(*args: str) -> list[str]:
    """The ``threadline`` console script of this environment (as ``core.cli.main`` when it is missing)."""
    script = Path(sys.executable).with_name("threadline")
    if script.exists():
        return [str(script), *args]
    return [sys.executable, "-c", "from core.cli import main; main()", *args]


def free_port() -> int:
    """A port that was free a moment ago on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


class Child:
    """One subprocess; ``stop`` (or leaving the ``with`` block) ends it: SIGTERM, then SIGKILL."""

    def __init__(
        self,
        name: str,
        cmd: Sequence[str],
        *,
        log_dir: Path,
        env: Mapping[str, str] | None = None,
        cwd: Path = ROOT,
    ) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        log_dir.mkdir(parents=True, exist_ok=True)
        self._log: IO[bytes] = self.log_path.open("wb")
        self.lines: queue.Queue[str] = queue.Queue()
        self._on_line: Callable[[str], None] | None = None
        try:
            self.proc = subprocess.Popen(
                list(cmd),
                cwd=cwd,
                env=dict(env) if env is not None else bench_env(),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=self._log,
                text=True,
            )
        except BaseException:
            self._log.close()
            raise
        self._reader = threading.Thread(target=self._read, name=f"{name}-stdout", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        stream = self.proc.stdout
        if stream is None:
            return
        for raw in stream:
            line = raw.rstrip("\n")
            handler = self._on_line
            if handler is not None:
                handler(line)
            else:
                self.lines.put(line)

    def on_line(self, handler: Callable[[str], None]) -> None:
        """From now on, hand every stdout line to ``handler`` (in the reader thread) instead of ``lines``."""
        self._on_line = handler
        while True:
            try:
                handler(self.lines.get_nowait())
            except queue.Empty:
                return

    def first_line(self, timeout: float = 300.0) -> str:
        """The next line the child prints; raises with the child's log tail if none comes in time."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                return self.lines.get(timeout=0.1)
            except queue.Empty:
                if self.proc.poll() is not None and self.lines.empty():
                    break
        raise RuntimeError(f"{self.name} printed nothing ({self._status()}); log: {self.tail()}")

    def _status(self) -> str:
        code = self.proc.poll()
        return "still running" if code is None else f"exited with {code}"

    def tail(self, chars: int = 2000) -> str:
        self._log.flush()
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")[-chars:]
        except OSError:
            return "(no log)"

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise RuntimeError(f"{self.name} {self._status()}; log: {self.tail()}")

    def wait(self, timeout: float) -> int:
        """Wait for the child to exit by itself; stops it and raises if it takes longer than ``timeout``."""
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            raise RuntimeError(f"{self.name} did not finish within {timeout:.0f} s") from None
        self._reader.join(timeout=5)
        return code

    def stop(self, timeout: float = 15.0) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=timeout)
        self._reader.join(timeout=5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._log.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def wait_http(
    url: str, child: Child, *, timeout: float = 300.0, ok: Callable[[int], bool] | None = None
) -> None:
    """Poll ``url`` until it answers (200 unless ``ok`` says otherwise); bounded by ``timeout``."""
    accept = ok or (lambda status: status == 200)
    deadline = time.monotonic() + timeout
    last = "no answer"
    with httpx.Client(timeout=5.0) as client:
        while time.monotonic() < deadline:
            child.check_alive()
            try:
                status = client.get(url).status_code
            except httpx.HTTPError as exc:
                last = type(exc).__name__
            else:
                if accept(status):
                    return
                last = f"HTTP {status}"
            time.sleep(0.2)
    raise RuntimeError(
        f"{child.name} not ready at {url} within {timeout:.0f} s ({last}); log: {child.tail()}"
    )


@contextlib.contextmanager
def started(
    name: str, cmd: Sequence[str], *, log_dir: Path, env: Mapping[str, str] | None = None
) -> Iterator[Child]:
    """A ``Child`` for the duration of the block; it is stopped on the way out, error or not."""
    child = Child(name, cmd, log_dir=log_dir, env=env)
    try:
        yield child
    finally:
        child.stop()
