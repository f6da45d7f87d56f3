"""One thread that runs the work a call hands out for after it returns (``PostgresIndex``: a kept
scope's terms, read while the agent waits for the LLM rather than inside the recall).

Made on the first job; jobs run one at a time, in the order handed out. After :meth:`Background.close`
nothing new runs: a job handed out and not started is dropped, a running one is waited for. A job
handles its own errors (what it did not catch ends it, logged by ``concurrent.futures`` only when its
future is read, which nobody does: so jobs catch).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from concurrent.futures import CancelledError, ThreadPoolExecutor


class Background:
    """A single background thread for later work (see the module)."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._lock = threading.Lock()
        self._worker: ThreadPoolExecutor | None = None
        self._closed = False

    def __repr__(self) -> str:
        return f"Background({self._name!r}, started={self._worker is not None}, closed={self._closed})"

    def __call__(self, job: Callable[[], None]) -> None:
        with self._lock:
            if self._closed:  # nothing is run after close
                return
            if self._worker is None:
                self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix=self._name)
            self._worker.submit(job)

    def drain(self) -> None:
        """Wait until every job handed out so far has run (after close: nothing to wait for)."""
        with self._lock:
            if self._closed or self._worker is None:
                return
            done = self._worker.submit(lambda: None)
        with contextlib.suppress(CancelledError):  # closed meanwhile: what was not started is dropped
            done.result()

    def close(self) -> None:
        with self._lock:
            self._closed, worker = True, self._worker
        if worker is not None:
            worker.shutdown(wait=True, cancel_futures=True)
