"""``threadline serve`` (the web app and the worker, in one process or, on PostgreSQL, split by
``--role`` over many) and ``threadline migrate``."""

from __future__ import annotations

import asyncio
import os
from enum import StrEnum
from typing import Annotated

import typer

from core.cli.base import Command, app, checked_settings, echo, fail
from core.errors import AlreadyServing, ConfigError


class ServeRole(StrEnum):
    ALL = "all"
    WEB = "web"
    WORKER = "worker"


@app.command(cls=Command)
def serve(
    host: Annotated[str, typer.Option(metavar="HOST", help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(metavar="PORT", help="Port to listen on.")] = 8000,
    role: Annotated[
        ServeRole,
        typer.Option(
            help="What this process runs: web (webhooks in, committed), worker (answers, deliveries,"
            " memory) or all. web and worker need PostgreSQL."
        ),
    ] = ServeRole.ALL,
    workers: Annotated[
        int,
        typer.Option(min=1, metavar="N", help="Web server processes on this port (PostgreSQL only)."),
    ] = 1,
) -> None:
    """Run the web app and the worker (the embedded default needs no configuration); on PostgreSQL, any
    number of processes on any number of hosts, each with a --role."""
    settings = checked_settings()
    from core.logs import setup_logging
    from core.store.serve_lock import ServeLock

    setup_logging(settings.log_level)
    sqlite = settings.resolved_database_url.startswith("sqlite")
    if sqlite and (workers > 1 or role is not ServeRole.ALL):
        fail(
            "--workers and --role web|worker need PostgreSQL (THREADLINE_DATABASE_URL): on SQLite one"
            " process serves a data dir"
        )
    # SQLite has one serving process per data dir; PostgreSQL may have many
    lock = ServeLock(settings.data_dir) if sqlite else None
    try:
        if lock is not None:
            lock.acquire()
    except AlreadyServing as exc:
        fail(str(exc))
    try:
        import uvicorn

        from core.web.app import SERVE_ROLE_ENV, create_app

        if workers > 1:  # uvicorn starts and watches the processes; each builds the app from the environment
            os.environ[SERVE_ROLE_ENV] = role.value
            uvicorn.run(
                "core.web.app:app_from_environment",
                factory=True,
                workers=workers,
                host=host,
                port=port,
                log_config=None,
                proxy_headers=True,
            )
            return
        try:
            web = create_app(settings, role=role.value, serving=True)
        except ConfigError as exc:
            fail(str(exc))
        uvicorn.run(web, host=host, port=port, log_config=None, proxy_headers=True)
    finally:
        if lock is not None:
            lock.release()


@app.command(cls=Command)
def migrate() -> None:
    """Bring the database schema up to date (processes starting at once never race on it either)."""
    settings = checked_settings()
    from sqlalchemy.exc import SQLAlchemyError

    async def run() -> tuple[str | None, str | None]:
        from core.store.db import create_engine, migrate

        engine = create_engine(settings.resolved_database_url, busy_timeout=settings.database_busy_timeout)
        try:
            return await migrate(engine)
        finally:
            await engine.dispose()

    try:
        before, after = asyncio.run(run())
    except (OSError, SQLAlchemyError) as exc:
        fail(f"the database could not be migrated ({type(exc).__name__}); check THREADLINE_DATABASE_URL", 1)
    if before == after:
        echo(f"schema up to date (revision {after})")
    else:
        echo(f"schema migrated from {before or 'an empty database'} to revision {after}")


# The console answers a person waiting at a terminal: at most this many tries of the LLM (a lower
