"""The memory layer: Mem0 behind ``core.ports.MemoryStore``.

``local``: Mem0 open source in the data dir (our SQLite vector store, a local ONNX embedder).
``platform``: hosted Mem0. Mem0 itself is imported lazily, on first use, by ``mem0_quirks`` only.
"""

from __future__ import annotations

from core.errors import ConfigError
from core.memory.local import LocalMemory
from core.memory.platform import PlatformMemory
from core.ports import MemoryStore
from core.settings import Settings, env_name

__all__ = ["LocalMemory", "PlatformMemory", "build_memory"]


def build_memory(settings: Settings) -> MemoryStore:
    """The memory store ``settings.memory.backend`` names. Cheap: nothing is loaded or called yet."""
    if settings.memory.backend == "platform":
        api_key = settings.memory.api_key
        if api_key is None or not api_key.get_secret_value():
            raise ConfigError(
                f"{env_name('memory', 'api_key')} (or MEM0_API_KEY) is required for the platform backend",
                setting=env_name("memory", "api_key"),
            )
        return PlatformMemory(
            api_key=api_key,
            host=settings.memory.host,
            data_dir=settings.data_dir,
        )
    return LocalMemory(data_dir=settings.data_dir, llm=settings.llm)
