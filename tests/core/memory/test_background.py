"""The thread that runs work handed out for after a call (``core.memory.background``)."""

from __future__ import annotations

import threading
import time

from core.memory.background import Background


def test_jobs_run_in_order_on_one_thread_of_their_own() -> None:
    background = Background("test-later")
    ran: list[tuple[int, str]] = []
    try:
        for n in range(3):
            background(lambda n=n: ran.append((n, threading.current_thread().name)))
        background.drain()
    finally:
        background.close()
    assert [n for n, _ in ran] == [0, 1, 2]
    assert {name for _, name in ran} != {threading.current_thread().name}
    assert all(name.startswith("test-later") for _, name in ran)


def test_close_waits_for_the_running_job_and_drops_the_rest() -> None:
    background = Background("test-later")
    started, release = threading.Event(), threading.Event()
    ran: list[str] = []

    def slow() -> None:
        started.set()
        release.wait(10)
        ran.append("slow")

    background(slow)
    assert started.wait(10)
    background(lambda: ran.append("queued"))  # handed out, not started when close comes
    closer = threading.Thread(target=background.close)
    closer.start()
    release.set()
    closer.join(10)
    assert not closer.is_alive() and ran == ["slow"]
    background(lambda: ran.append("after close"))
    background.drain()
    assert ran == ["slow"]


def test_closing_a_background_that_never_ran_anything() -> None:
    background = Background("test-later")
    background.drain()
    background.close()
    background.close()
    assert "closed=True" in repr(background)


def test_a_drain_that_close_cuts_short_returns() -> None:
    background = Background("test-later")
    started, release = threading.Event(), threading.Event()

    def slow() -> None:
        started.set()
        release.wait(10)

    background(slow)
    assert started.wait(10)
    drained: list[BaseException | None] = []

    def drain() -> None:
        try:
            background.drain()  # its marker job queues behind slow
            drained.append(None)
        except BaseException as exc:
            drained.append(exc)

    drainer = threading.Thread(target=drain)
    drainer.start()
    queued = background._worker._work_queue if background._worker else None
    while queued is not None and queued.empty() and drainer.is_alive():  # the marker queued behind slow
        time.sleep(0.001)
    closer = threading.Thread(target=background.close)  # drops the marker, waits for slow
    closer.start()
    release.set()
    closer.join(10)
    drainer.join(10)
    assert not drainer.is_alive() and drained == [None]
