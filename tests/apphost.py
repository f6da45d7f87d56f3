"""Serves ``core.app.create_app(settings)`` with uvicorn on a free loopback port, in the test's own loop.

The platforms' side of a test talks to it over real HTTP (``httpx.AsyncClient``); the hub behind it
(``app.state.hub``) is there for looking at the store. Fast polling and backoff, data under the
given folder, offline mode unless an LLM URL is given.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI
from sqlalchemy import func, select

from core.app import create_app
from core.pipeline.hub import Hub, Role
from core.settings import LLMSettings, Settings, WorkerSettings
from core.store.models import InboxRow


def app_settings(data_dir: Path, *, llm_url: str | None = None, **channels: Any) -> Settings:
    """Settings for an in-process app: the given channel sections, fast worker loops."""
    llm = (
        LLMSettings(api_key="sk-test", base_url=llm_url, timeout=10, max_retries=0)
        if llm_url
        else LLMSettings()
    )
    worker = WorkerSettings(poll_interval=0.05, backoff_base=0.05, backoff_max=0.5)
    return Settings(data_dir=data_dir, llm=llm, worker=worker, **channels)


@dataclass
class Served:
    app: FastAPI
    url: str
    client: httpx.AsyncClient

    @property
    def hub(self) -> Hub:
        hub: Hub = self.app.state.hub
        return hub

    async def inbox_rows(self, channel: str | None = None) -> int:
        query = select(func.count()).select_from(InboxRow)
        if channel is not None:
            query = query.where(InboxRow.channel == channel)
        async with self.hub.db.session() as session:
            return int(await session.scalar(query) or 0)


def free_port() -> int:
    """A loopback port free right now (for ``serving(..., port=)``)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@asynccontextmanager
async def serving(
    settings: Settings, *, log_level: str = "warning", role: Role = "all", port: int = 0
) -> AsyncIterator[Served]:
    """The app under uvicorn (lifespan on: the hub and worker run) until the block ends.

    ``log_level="info"`` turns uvicorn's access log on (logger ``uvicorn.access``). ``role`` as
    ``threadline serve --role``. ``port``: a fixed port (``free_port()``), for settings that must name
    the app's own URL (``THREADLINE_PUBLIC_BASE_URL``, which a platform calls back); 0 picks one.
    """
    app = create_app(settings, role=role)
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level=log_level, lifespan="on")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        for _ in range(600):
            if server.started or task.done():
                break
            await asyncio.sleep(0.05)
        if not server.started:
            if task.done():
                task.result()  # raises what stopped the start
            raise RuntimeError("the app did not start within 30 s")
        port = server.servers[0].sockets[0].getsockname()[1]
        url = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            yield Served(app=app, url=url, client=client)
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, timeout=30)
