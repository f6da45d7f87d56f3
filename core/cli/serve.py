"""``threadline serve``: the web app and the worker in one process."""

from __future__ import annotations

from typing import Annotated

import typer

from core.cli.base import (
    Command,
    app,
    checked_settings,
    fail,
)
from core.errors import AlreadyServing, ConfigError


@app.command(cls=Command)
def serve(
    host: Annotated[str, typer.Option(metavar="HOST", help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(metavar="PORT", help="Port to listen on.")] = 8000,
) -> None:
    """Run the web app and the worker in one process (the embedded default needs no configuration)."""
    settings = checked_settings()
    from core.logs import setup_logging
    from core.store.serve_lock import ServeLock

    setup_logging(settings.log_level)
    # SQLite has one serving process per data dir; PostgreSQL may have many
    lock = ServeLock(settings.data_dir) if settings.resolved_database_url.startswith("sqlite") else None
    try:
        if lock is not None:
            lock.acquire()
    except AlreadyServing as exc:
        fail(str(exc))
    try:
        import uvicorn

        from core.web.app import create_app

        try:
            web = create_app(settings)
        except ConfigError as exc:
            fail(str(exc))
        uvicorn.run(web, host=host, port=port, log_config=None, proxy_headers=True)
    finally:
        if lock is not None:
            lock.release()


# The console answers a person waiting at a terminal: at most this many tries of the LLM (a lower
