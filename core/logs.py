"""Logging set-up. Threadline logs ids only: never a message body, phone number, email or secret.

uvicorn's access log (logger ``uvicorn.access``) would print each request's query string, and admin
calls carry handles there (``?search=...``, ``?address=sms:%2B1555...``): ``HideQueryStrings`` replaces
every query with ``?…`` (``GET /admin/customers?… HTTP/1.1 200``). ``setup_logging`` installs it, and so
does ``core.web.app.create_app``, so the app never lets a query into the access log however it is served.

When the process stops (Ctrl-C, SIGTERM), asyncio cancels what still runs, and a database connection on
its way back to SQLAlchemy's pool at that moment is discarded: the pool logs that at ERROR with the
``CancelledError``'s traceback ("Exception during reset or similar"). Nothing is lost (the transaction was
over or is rolled back by the database), so ``CancelledResets`` drops exactly those records; any other
pool error is logged as it was. (``core.store.db`` also shields a session's close from
its own task's cancellation, so a connection is not left checked out; the loop's last cancellations can
still reach one.)
"""

from __future__ import annotations

import asyncio
import logging

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# Third-party loggers that print request or memory content at INFO/DEBUG.
QUIET_LOGGERS = (
    "httpx",
    "httpcore",
    "httpx2",  # the openai SDK's own fork of httpx logs every request at INFO
    "httpcore2",
    "openai",
    "mem0",
    "aiosqlite",
    "asyncio",
    "telegram",
    "slack_sdk",
    "twilio",
    "aiosmtpd",
    "aioimaplib",  # at DEBUG it prints every line it receives: fetched mail, bodies included
    "mail.log",
)


ACCESS_LOGGER = "uvicorn.access"
HIDDEN_QUERY = "?…"


class HideQueryStrings(logging.Filter):
    """Cuts the query off every text argument of a record (uvicorn's access line: the request target)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and any(isinstance(a, str) and "?" in a for a in record.args):
            record.args = tuple(_hidden(a) if isinstance(a, str) else a for a in record.args)
        if isinstance(record.msg, str) and "?" in record.msg and not record.args:
            record.msg = _hidden(record.msg)
        return True


def _hidden(text: str) -> str:
    path, mark, _ = text.partition("?")
    return path + HIDDEN_QUERY if mark else text


def hide_query_strings() -> None:
    """Install ``HideQueryStrings`` on uvicorn's access logger (once)."""
    logger = logging.getLogger(ACCESS_LOGGER)
    if not any(isinstance(f, HideQueryStrings) for f in logger.filters):
        logger.addFilter(HideQueryStrings())


POOL_LOGGER = "sqlalchemy.pool"


class CancelledResets(logging.Filter):
    """Drops SQLAlchemy's pool reporting a connection reset cut short by a cancellation (see the module).
    On the handlers: a logger's own filters would not see the records of the pool's child loggers."""

    def filter(self, record: logging.LogRecord) -> bool:
        kind = record.exc_info[0] if record.exc_info else None
        cancelled = kind is not None and issubclass(kind, asyncio.CancelledError)
        return not (cancelled and record.name.startswith(POOL_LOGGER))


def quiet_cancelled_resets() -> None:
    """Install ``CancelledResets`` on the root logger's handlers (once each)."""
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, CancelledResets) for f in handler.filters):
            handler.addFilter(CancelledResets())


def setup_logging(level: str = "INFO") -> None:
    logging.basicConfig(level=level.upper(), format=FORMAT)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    hide_query_strings()
    quiet_cancelled_resets()
