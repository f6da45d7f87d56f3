"""Wake-ups across processes: PostgreSQL ``LISTEN``/``NOTIFY`` tells other processes there is new work.

A transaction that makes work for a lane (an inbox row, a reply in the outbox, a memory job, an event
delivery) calls ``announce(session, lane, ...)``: on PostgreSQL that is ``pg_notify`` inside the same
transaction, so the notification leaves only if and when the work is committed. A process running lanes
keeps one connection that ``LISTEN``s (``WakeupListener``) and wakes the named lanes at once; the lanes
still poll every ``worker.poll_interval`` for what no notification announces (a retry falling due, a
lapsed lease), and when the listening connection is down (it reconnects with backoff). On SQLite (one
serving process) ``announce`` does nothing: the process wakes its own lanes.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession

log = logging.getLogger(__name__)

CHANNEL = "threadline_work"
LANES = frozenset({"inbox", "outbox", "memory", "events"})
RECONNECT_MAX = 10.0


async def announce(session: AsyncSession, *lanes: str) -> None:
    """Tell the processes listening that ``lanes`` have new work, when ``session``'s transaction commits."""
    if session.get_bind().dialect.name != "postgresql":
        return
    await session.execute(
        text("SELECT pg_notify(:channel, :lanes)"), {"channel": CHANNEL, "lanes": ",".join(lanes)}
    )


def libpq_dsn(url: str) -> str:
    """The SQLAlchemy URL as a DSN for asyncpg (``postgresql+asyncpg://`` → ``postgresql://``)."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def _set_on_close(event: asyncio.Event, _connection: Any) -> None:
    event.set()


class WakeupListener:
    """``LISTEN``s on one connection of its own and calls ``wake(lane)`` for every lane announced."""

    def __init__(self, url: str, wake: Callable[[str], None]) -> None:
        self._dsn = libpq_dsn(url)
        self._wake = wake
        self._task: asyncio.Task[None] | None = None
        self.connected = asyncio.Event()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="wakeups:listen")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    def _on_notify(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        for lane in payload.split(","):
            if lane in LANES:
                self._wake(lane)

    async def _run(self) -> None:
        import asyncpg

        delay = 0.5
        while True:
            conn: Any = None
            try:
                conn = await asyncpg.connect(self._dsn)
                lost = asyncio.Event()
                conn.add_termination_listener(functools.partial(_set_on_close, lost))
                await conn.add_listener(CHANNEL, self._on_notify)
                self.connected.set()
                delay = 0.5
                log.info("listening for wake-ups")
                for lane in LANES:  # whatever was announced while not listening
                    self._wake(lane)
                await lost.wait()
                log.warning("wake-up connection lost; reconnecting")
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the lanes still poll meanwhile
                log.warning("wake-up listener failed (%s); retrying in %.1fs", type(exc).__name__, delay)
            finally:
                self.connected.clear()
                if conn is not None:
                    with contextlib.suppress(Exception):
                        await conn.close(timeout=2)
            await asyncio.sleep(delay)
            delay = min(RECONNECT_MAX, delay * 2)
