"""The machine a benchmark ran on: cores, memory, CPU, load, Python and library versions, git commit.

Every benchmark prints this block when it starts and stores it in its JSON result (key ``machine``), so a
figure is never read without the box that produced it. The load averages say how busy the machine was
(it is shared: other processes may run at the same time).
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

# distributions whose versions shape the figures
PACKAGES = (
    "threadline",
    "fastapi",
    "starlette",
    "uvicorn",
    "h11",
    "httptools",
    "uvloop",
    "sqlalchemy",
    "aiosqlite",
    "mem0ai",
    "onnxruntime",
    "numpy",
    "openai",
    "httpx",
    "aiohttp",
    "python-telegram-bot",
    "slack-sdk",
    "twilio",
    "matplotlib",
    "tiktoken",
)


def _read(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def _cpu_model() -> str:
    for line in _read("/proc/cpuinfo").splitlines():
        if line.lower().startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _memory_gib() -> float | None:
    for line in _read("/proc/meminfo").splitlines():
        if line.startswith("MemTotal:"):
            return round(int(line.split()[1]) / (1024 * 1024), 1)
    return None


def _usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _versions() -> dict[str, str]:
    found: dict[str, str] = {}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def machine_info() -> dict[str, Any]:
    """A JSON-able description of this machine and software, taken now."""
    load = os.getloadavg() if hasattr(os, "getloadavg") else (0.0, 0.0, 0.0)
    return {
        "taken_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "hostname": platform.node(),
        "os": f"{platform.system()} {platform.release()}",
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "usable_cores": _usable_cores(),
        "memory_gib": _memory_gib(),
        "load_average": [round(x, 2) for x in load],
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "executable": sys.executable,
        "packages": _versions(),
        "git_commit": _git("rev-parse", "--short", "HEAD"),
        "git_dirty": bool(_git("status", "--porcelain", "--untracked-files=no")),
    }


def describe(info: dict[str, Any]) -> str:
    """The machine block as a few readable lines."""
    packages = info.get("packages", {})
    wanted = ("fastapi", "uvicorn", "sqlalchemy", "mem0ai", "onnxruntime", "numpy")
    versions = ", ".join(f"{k} {packages[k]}" for k in wanted if k in packages)
    load = " ".join(str(x) for x in info.get("load_average", []))
    commit = info.get("git_commit") or "?"
    dirty = " (uncommitted changes)" if info.get("git_dirty") else ""
    return "\n".join(
        [
            f"machine: {info.get('cpu')}, {info.get('usable_cores')}/{info.get('cores')} cores, "
            f"{info.get('memory_gib')} GiB, {info.get('os')}",
            f"load average (1, 5, 15 min): {load}",
            f"{info.get('python')}; {versions}",
            f"git {commit}{dirty}",
        ]
    )


def print_machine(info: dict[str, Any] | None = None) -> dict[str, Any]:
    """Print the machine block (to stdout) and return it."""
    info = info or machine_info()
    print(describe(info), flush=True)
    return info
