"""``core.logs``: a pool reset cut short by a cancellation (a process stopping) leaves no traceback on the
terminal; every other record, a pool's other errors included, still shows."""

from __future__ import annotations

import asyncio
import io
import logging
import sys

from core.logs import CancelledResets


def _emitted(name: str, error: BaseException) -> str:
    """What a handler with the filter writes for an error record of logger ``name`` (the record is made
    and handled directly: other tests may have disabled or re-levelled the logger itself)."""
    try:
        raise error
    except BaseException:
        record = logging.LogRecord(
            name, logging.ERROR, __file__, 1, "Exception during reset or similar", None, sys.exc_info()
        )
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(CancelledResets())
    handler.handle(record)
    return stream.getvalue()


def test_a_cancelled_pool_reset_is_dropped_and_everything_else_kept() -> None:
    assert _emitted("sqlalchemy.pool.impl.AsyncAdaptedQueuePool", asyncio.CancelledError()) == ""
    kept = _emitted("sqlalchemy.pool.impl.AsyncAdaptedQueuePool", ConnectionResetError("gone"))
    assert "Exception during reset" in kept and "ConnectionResetError" in kept
    assert "CancelledError" in _emitted("core.pipeline.worker", asyncio.CancelledError())
