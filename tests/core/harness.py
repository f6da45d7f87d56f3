"""Builds a hub for in-process pipeline tests: fast polling and backoff, data under ``tmp_path``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from core.compose import build_hub
from core.pipeline.hub import Hub
from core.ports import Sender
from core.settings import LLMSettings, Settings, WorkerSettings


def make_settings(
    tmp_path: Path, *, llm_url: str | None = None, database_url: str | None = None, **worker: Any
) -> Settings:
    llm = (
        LLMSettings(api_key="sk-test", base_url=llm_url, timeout=10, max_retries=0)
        if llm_url
        else LLMSettings()
    )
    knobs: dict[str, Any] = {"poll_interval": 0.05, "backoff_base": 0.05, "backoff_max": 0.2}
    knobs.update(worker)
    return Settings(
        data_dir=tmp_path / "data", llm=llm, worker=WorkerSettings(**knobs), database_url=database_url
    )


@asynccontextmanager
async def running_hub(settings: Settings, *senders: Sender) -> AsyncIterator[Hub]:
    hub = await build_hub(settings, senders={sender.name: sender for sender in senders})
    await hub.start()
    try:
        yield hub
    finally:
        await hub.stop()
