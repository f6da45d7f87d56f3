"""Where a web process spends its time under load: py-spy's samples, sorted into the layers of a request.

``py-spy record --format raw`` writes one line per distinct stack (frames root first, ``;``-separated,
each ``function (file:line)`` with the file relative to ``sys.path``) and its sample count. A sample is
put in the layer of the frame nearest the leaf that belongs to one, looking only at the frames the event
loop's current callback runs (after the last ``Handle._run``): the loop's own work (``select``,
scheduling: in ``_run_once`` but in no callback) is "asyncio event loop", whatever called ``asyncio.run``.

py-spy samples the processes from outside (``--subprocesses`` follows ``serve --workers N``'s children)
and never changes what they run; it is optional (``pip install py-spy``): without it there is no profile.
"""

from __future__ import annotations

import shutil
import subprocess
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

LOOP = "asyncio event loop"
OTHER = "other"
# (layer, file prefixes as py-spy shows them); the first layer that claims a frame wins
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("logging (access log and ours)", ("logging/", "core/logs")),
    ("Slack signature and parsing (slack_sdk, channels/slack)", ("slack_sdk/", "channels/slack/")),
    (
        "inbox commit (core/pipeline, core/store, SQLAlchemy, asyncpg)",
        (
            "core/pipeline/",
            "core/store/",
            "sqlalchemy/",
            "asyncpg/",
        ),
    ),
    ("route glue and guard (core/web)", ("core/web/",)),
    ("metrics (prometheus_client)", ("prometheus_client/", "core/metrics")),
    ("Starlette, FastAPI, pydantic", ("starlette/", "fastapi/", "pydantic/", "pydantic_core/")),
    ("HTTP server (uvicorn, h11, httptools)", ("uvicorn/", "h11/", "httptools/")),
    (LOOP, ("asyncio/", "selectors.py", "uvloop/")),
)
_CALLBACK = "Handle._run (asyncio/events.py"
_LOOP_STEP = "BaseEventLoop._run_once (asyncio/base_events.py"


def _file(frame: str) -> str:
    _, _, where = frame.rpartition(" (")
    return where


def layer_of(frame: str) -> str | None:
    where = _file(frame)
    for layer, prefixes in LAYERS:
        if where.startswith(prefixes):
            return layer
    return None


def classify(frames: list[str]) -> str:
    """The layer of one stack (root first)."""
    starts = [i for i, frame in enumerate(frames) if frame.startswith(_CALLBACK)]
    if starts:
        callback = frames[starts[-1] + 1 :]
    elif any(frame.startswith(_LOOP_STEP) for frame in frames):
        return LOOP  # in the loop's step but in no callback: selecting, scheduling
    else:
        callback = frames  # uvloop runs callbacks from C: no frame marks where they start
    for frame in reversed(callback):
        found = layer_of(frame)
        if found is not None and found != LOOP:
            return found
    if not callback or any(layer_of(frame) == LOOP for frame in callback):
        return LOOP
    return OTHER


def parse_raw(lines: Iterable[str]) -> list[tuple[list[str], int]]:
    """``(frames, samples)`` of py-spy's raw output; ``process N:"…"`` roots are dropped."""
    stacks = []
    for line in lines:
        stack, _, count = line.strip().rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = [f for f in stack.split(";") if not f.startswith("process ")]
        stacks.append((frames, int(count)))
    return stacks


def summarize(lines: Iterable[str], *, top: int = 12) -> dict[str, Any]:
    """Each layer's share of the samples, and the leaf functions that took the most."""
    stacks = parse_raw(lines)
    layers: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    for frames, count in stacks:
        layers[classify(frames)] += count
        if frames:
            leaves[frames[-1]] += count
    total = sum(layers.values())
    if not total:
        return {"samples": 0, "layers": {}, "top_leaves": []}
    return {
        "samples": total,
        "layers": {name: round(n / total, 3) for name, n in layers.most_common()},
        "top_leaves": [[name, round(n / total, 3)] for name, n in leaves.most_common(top)],
    }


def py_spy() -> str | None:
    """The py-spy executable, if there is one (on ``PATH`` or beside this interpreter)."""
    found = shutil.which("py-spy")
    if found:
        return found
    beside = Path(__file__).resolve().parents[1] / ".venv" / "bin" / "py-spy"
    return str(beside) if beside.exists() else None


class Recording:
    """``py-spy record`` of process ``pid`` and its children for ``seconds``, in the background."""

    def __init__(self, exe: str, pid: int, seconds: float, out: Path, rate: int = 200) -> None:
        self.out = out
        self._log = out.with_suffix(".log").open("wb")
        self._proc = subprocess.Popen(
            [
                *(exe, "record", "--pid", str(pid), "--subprocesses", "--nonblocking", "--format", "raw"),
                *("--rate", str(rate), "--duration", str(max(1, round(seconds))), "--output", str(out)),
            ],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def finish(self, timeout: float = 120.0) -> dict[str, Any]:
        try:
            self._proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self._proc.terminate()
            self._proc.wait(timeout=30)
        finally:
            self._log.close()
        if not self.out.exists():
            return {"samples": 0, "layers": {}, "top_leaves": [], "error": "py-spy wrote nothing"}
        return summarize(self.out.read_text(encoding="utf-8", errors="replace").splitlines())
