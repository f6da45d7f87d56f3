"""``core.logs``: a pool reset cut short by a cancellation (a process stopping) leaves no traceback on the
terminal; every other record, a pool's other errors included, still shows."""

from __future__ import annotations

import asyncio
import io
import logging

from core.logs import CancelledResets


def _emitted(name: str, error: BaseException) -> str:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(CancelledResets())
    logger = logging.getLogger(name)
    logger.addHandler(handler)
    logger.propagate = False
    try:
        try:
            raise error
        except BaseException:
            logger.exception("Exception during reset or similar")
    finally:
        logger.removeHandler(handler)
        logger.propagate = True
    return stream.getvalue()


def test_a_cancelled_pool_reset_is_dropped_and_everything_else_kept() -> None:
    assert _emitted("sqlalchemy.pool.impl.AsyncAdaptedQueuePool", asyncio.CancelledError()) == ""
    kept = _emitted("sqlalchemy.pool.impl.AsyncAdaptedQueuePool", ConnectionResetError("gone"))
    assert "Exception during reset" in kept and "ConnectionResetError" in kept
    assert "CancelledError" in _emitted("core.pipeline.worker", asyncio.CancelledError())
