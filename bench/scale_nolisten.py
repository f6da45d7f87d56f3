"""``threadline`` with its ``LISTEN`` connection switched off: the lanes wake only on their poll interval.

The scale benchmark's control for the wake-up latency: the same worker as ``threadline serve --role
worker``, except that ``core.store.wakeups.WakeupListener.start`` does nothing, so a message committed by a
web process is found only by the next poll (``THREADLINE_WORKER__POLL_INTERVAL``), as before NOTIFY.
Nothing else changes; the product is not patched outside this process.

``python -m bench.scale_nolisten serve --role worker --port N``
"""

from __future__ import annotations

from core.store import wakeups


def _listen_nowhere(self: wakeups.WakeupListener) -> None:
    return None


def main() -> None:
    wakeups.WakeupListener.start = _listen_nowhere  # type: ignore[method-assign]
    from core.cli import main as threadline

    threadline()


if __name__ == "__main__":
    main()
