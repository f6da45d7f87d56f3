"""Mem0 open source as Threadline runs it: its config, our components in Mem0's classes, a ready ``Memory``.

:func:`build_oss_memory` builds ``mem0.Memory`` (blocking: call it in a thread) around:

- a ``core.ports.MemoryIndex`` (by default the SQLite file of :func:`sqlite_index`), which Mem0 reaches
  through an adapter to its vector-store interface (``VectorStoreBase``). Within :func:`narrowed`, every
  read Mem0 makes of the index also matches more filters: ``LocalMemory`` shows the extractor the
  existing memories of one handle only;
- the local ONNX embedder as an ``EmbeddingBase``;
- an OpenAI-compatible LLM (``provider="openai"``) with the key, base URL and model of ``LLMSettings``,
  on our ``openai`` client (timeout, retries). Unconfigured, Mem0 still demands a key: it gets a
  placeholder and the discard port of 127.0.0.1; callers never ask it to infer then. The LLM is wrapped
  (:class:`_StrictExtraction`) so an extraction answer that is not Mem0's JSON raises;
- our extraction instructions (``core.memory.attribution``) and the history database: a file under the
  data dir beside the embedded index, nothing at all with an index that several hosts share
  (:func:`keeps_history`).

Mem0's factories accept only their own providers, so it is built with stand-ins (an in-memory Qdrant
client, an OpenAI embedder that is never called) that ``mem0_quirks.install`` replaces. Calls use
``filters={"user_id": ...}`` and ``top_k`` (``limit`` is ignored; ``user_id=`` is refused).
"""

from __future__ import annotations

import builtins
import functools
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.memory import mem0_quirks
from core.memory.attribution import EXTRACTION_INSTRUCTIONS
from core.memory.embedder import DIMS, LocalEmbedder
from core.memory.mem0_quirks import COLLECTION, mem0_dir
from core.memory.vectors import SQLiteVectorStore
from core.ports import MemoryIndex
from core.settings import LLMSettings
from core.store.private_files import private_dir, private_sqlite

if TYPE_CHECKING:
    from core.memory.pg_index import PostgresIndex

OFFLINE_API_KEY = "threadline-offline-no-llm"  # a placeholder Mem0 demands, not a secret
OFFLINE_BASE_URL = "http://127.0.0.1:9/v1"  # the discard port: nothing leaves the machine
EMBEDDING_MODEL = "all-MiniLM-L6-v2-onnx-int8"
# Mem0's entity rows, in files written before it was dropped (never filled: see ``mem0_quirks``)
LEGACY_ENTITY_COLLECTION = f"{COLLECTION}_entities"

_narrowing: ContextVar[Mapping[str, Any] | None] = ContextVar("threadline_mem0_narrowing", default=None)


def sqlite_index(data_dir: Path) -> SQLiteVectorStore:
    """The embedded memory index: ``<data_dir>/mem0/vectors.sqlite3``, collection :data:`COLLECTION`."""
    store = SQLiteVectorStore(
        mem0_dir(data_dir) / "vectors.sqlite3", collection_name=COLLECTION, embedding_model_dims=DIMS
    )
    if LEGACY_ENTITY_COLLECTION in store.list_cols():
        store.with_collection(LEGACY_ENTITY_COLLECTION).delete_col()
    return store


def postgres_index(url: str) -> PostgresIndex:
    """The memory index on PostgreSQL, shared by every host of a scale setup: the store's database
    (``url``, SQLAlchemy's ``postgresql+asyncpg://...``), collection :data:`COLLECTION`."""
    from core.memory.pg_index import PostgresIndex

    return PostgresIndex(url, collection_name=COLLECTION, embedding_model_dims=DIMS)


def keeps_history(index: MemoryIndex) -> bool:
    """Whether Mem0 keeps its history database (a SQLite file in this data dir) beside ``index``.

    Only beside the embedded index, which lives in the same data dir: forget and retention erase both.
    With an index that several hosts share (PostgreSQL), a history file on one host would keep the text
    of memories that forget or retention on another host removed; Mem0 then keeps no history at all
    (``mem0_quirks.no_history_db``).
    """
    return isinstance(index, SQLiteVectorStore)


@contextmanager
def narrowed(where: Mapping[str, Any]) -> Iterator[None]:
    """Within the block (this thread's context only), Mem0's reads of the index also match the Mem0
    filter ``where`` (``{"source_handle": ...}``): what Mem0 shows its extractor as existing memories."""
    token = _narrowing.set(dict(where))
    try:
        yield
    finally:
        _narrowing.reset(token)


def _narrow(filters: Mapping[str, Any] | None) -> dict[str, Any]:
    return {**(filters or {}), **(_narrowing.get() or {})}


@functools.cache
def _index_adapter() -> type[Any]:
    from mem0.vector_stores.base import VectorStoreBase

    class Mem0Index(VectorStoreBase):  # type: ignore[misc]
        """A ``core.ports.MemoryIndex`` as Mem0's ``VectorStoreBase``; reads honour :func:`narrowed`."""

        def __init__(self, index: MemoryIndex) -> None:
            self.index = index

        def create_col(self, name: str, vector_size: int, distance: str = "cosine") -> None:
            return None  # the index is made by whoever opened it

        def insert(self, vectors: Any, payloads: Any = None, ids: Any = None) -> None:
            self.index.insert(vectors, payloads=payloads, ids=ids)

        def search(self, query: str, vectors: Any, top_k: int = 5, filters: Any = None) -> list[Any]:
            return self.index.search(query, vectors, top_k=top_k, filters=_narrow(filters))

        def keyword_search(self, query: str, top_k: int = 5, filters: Any = None) -> list[Any]:
            return self.index.keyword_search(query, top_k=top_k, filters=_narrow(filters))

        def delete(self, vector_id: str) -> None:
            self.index.delete(vector_id)

        def update(self, vector_id: str, vector: Any = None, payload: Any = None) -> None:
            self.index.update(vector_id, vector=vector, payload=payload)

        def get(self, vector_id: str) -> Any:
            return self.index.get(vector_id)

        def list(self, filters: Any = None, top_k: int | None = None) -> list[list[Any]]:
            return [self.index.list(_narrow(filters), top_k=top_k)]  # Mem0 reads ``list(...)[0]``

        def list_cols(self) -> builtins.list[str]:
            return [COLLECTION]

        def col_info(self) -> dict[str, Any]:
            return {"name": COLLECTION}

        def delete_col(self) -> None:
            raise RuntimeError("the memory index is never dropped through Mem0")

        def reset(self) -> None:
            raise RuntimeError("the memory index is never reset through Mem0")

    return Mem0Index


def _embedding_adapter(embedder: LocalEmbedder) -> Any:
    from mem0.configs.embeddings.base import BaseEmbedderConfig
    from mem0.embeddings.base import EmbeddingBase

    class LocalEmbedding(EmbeddingBase):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__(BaseEmbedderConfig(model=EMBEDDING_MODEL, embedding_dims=DIMS))

        def embed(self, text: str, memory_action: str | None = None) -> list[float]:
            vector: list[float] = embedder.embed_one(text.replace("\n", " ")).tolist()
            return vector

        def embed_batch(self, texts: Sequence[str], memory_action: str = "add") -> list[list[float]]:
            vectors: list[list[float]] = embedder.embed([t.replace("\n", " ") for t in texts]).tolist()
            return vectors

    return LocalEmbedding()


class ExtractionGarbage(Exception):
    """The LLM answered an extraction request with something that is not Mem0's extraction JSON."""


class _StrictExtraction:
    """Wraps Mem0's LLM: a JSON request answered with garbage raises instead of silently storing nothing."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def generate_response(
        self, messages: list[dict[str, Any]], response_format: Any = None, **kwargs: Any
    ) -> Any:
        reply = self._inner.generate_response(messages=messages, response_format=response_format, **kwargs)
        if isinstance(response_format, dict) and response_format.get("type") == "json_object":
            problem = mem0_quirks.extraction_problem(reply)
            if problem is not None:
                raise ExtractionGarbage(problem)
        return reply


def _openai_client(llm: LLMSettings) -> Any:
    import openai

    if llm.configured and llm.api_key is not None:
        return openai.OpenAI(
            api_key=llm.api_key.get_secret_value(),
            base_url=llm.base_url,
            timeout=llm.timeout,
            max_retries=llm.max_retries,
        )
    return openai.OpenAI(api_key=OFFLINE_API_KEY, base_url=OFFLINE_BASE_URL, timeout=1.0, max_retries=0)


def mem0_config(data_dir: Path, llm: LLMSettings, *, keep_history: bool = True) -> dict[str, Any]:
    """The Mem0 config: history under the data dir (in memory without ``keep_history``: Mem0 opens it
    as it is built), OpenAI-compatible LLM, stand-ins for what we replace."""
    llm_config: dict[str, Any] = {
        "model": llm.model,
        "api_key": OFFLINE_API_KEY,
        "openai_base_url": OFFLINE_BASE_URL,
    }
    if llm.configured and llm.api_key is not None:
        llm_config["api_key"] = llm.api_key.get_secret_value()
        llm_config["openai_base_url"] = llm.base_url
    return {
        "history_db_path": str(mem0_dir(data_dir) / "history.db") if keep_history else ":memory:",
        "custom_instructions": EXTRACTION_INSTRUCTIONS,
        "llm": {"provider": "openai", "config": llm_config},
        # stand-ins, replaced after construction (see the module docstring)
        "embedder": {
            "provider": "openai",
            "config": {
                "api_key": OFFLINE_API_KEY,
                "openai_base_url": OFFLINE_BASE_URL,
                "embedding_dims": DIMS,
            },
        },
        "vector_store": {
            "provider": "qdrant",
            "config": {"collection_name": COLLECTION, "embedding_model_dims": DIMS},
        },
    }


@dataclass(frozen=True, slots=True)
class OssMemory:
    """A ready Mem0 ``Memory`` and the memory index inside it."""

    memory: Any  # mem0.Memory
    index: MemoryIndex

    def close(self) -> None:
        self.memory.close()
        self.index.close()


def build_oss_memory(
    *, data_dir: Path, llm: LLMSettings, embedder: LocalEmbedder, index: MemoryIndex
) -> OssMemory:
    """Mem0 open source on ``index`` and our local embedder (blocking: call it in a thread). The index is
    closed with the result (or here, when building fails). Mem0's history: :func:`keeps_history`."""
    try:
        mem0 = mem0_quirks.import_mem0(data_dir)
        from mem0.configs.base import MemoryConfig
        from qdrant_client import QdrantClient

        keep_history = keeps_history(index)
        history = mem0_dir(data_dir) / "history.db"
        if keep_history:
            private_dir(mem0_dir(data_dir))
            private_sqlite(history)  # 0600 before Mem0's SQLite creates it
        config = mem0_config(data_dir, llm, keep_history=keep_history)
        standin = QdrantClient(location=":memory:")
        config["vector_store"]["config"]["client"] = standin
        try:
            # the stand-in is a local Qdrant that mem0 takes for a server and asks for
            # payload indexes, which makes qdrant-client warn
            with warnings.catch_warnings():
                warnings.filterwarnings(
                    "ignore", message="Payload indexes have no effect", category=UserWarning
                )
                memory = mem0.Memory(MemoryConfig(**config))
        finally:
            standin.close()
        mem0_quirks.install(
            memory,
            vector_store=_index_adapter()(index),
            embedding_model=_embedding_adapter(embedder),
            llm_client=_openai_client(llm),  # our timeout and retries; ignores OPENROUTER_API_KEY
            wrap_llm=_StrictExtraction,
            db=mem0_quirks.history_only_db(history) if keep_history else mem0_quirks.no_history_db(),
        )
    except BaseException:
        index.close()
        raise
    mem0_quirks.private_config(data_dir)
    return OssMemory(memory=memory, index=index)
