"""Everything Threadline must know about Mem0's quirks, in one place. The only module that imports mem0.

Mem0 (2.2.x) is imported lazily, inside :func:`import_mem0`, never when ``core`` is imported, because
importing it has side effects that must be steered first:

- ``MEM0_TELEMETRY`` and ``MEM0_DIR`` are read once, at import. Telemetry is forced off (it would also
  fetch a notice config from GitHub) and ``MEM0_DIR`` (where mem0 writes its ``config.json``) goes to
  ``<data_dir>/mem0``. Both are process-wide: the first data dir to import mem0 wins ``MEM0_DIR``.
  That folder is 0700 and the files we know Mem0 writes there (``config.json``, ``history.db``, the
  latter created by us before Mem0 opens it, so its ``-wal``/``-shm`` follow) are 0600.
- mem0 logs memory text and message content (``Skipping invalid message format: {message}``,
  ``Updating memory ... {data=}``, exception texts holding replies). Its loggers are cut off from the
  root logger and re-emitted through ours with the text withheld (:class:`_WithheldMem0Log`): only the
  level, the mem0 logger name, its line and the exception type are kept.
- mem0 downloads a spaCy model at run time when spaCy is installed: it is marked unavailable for good.

Building ``Memory`` (:func:`build_oss_memory`):

- Mem0's factories accept only their own provider names (``VectorStoreConfig`` even validates the
  provider against a private table), so a store or embedder of ours cannot be named in the config.
  ``Memory`` is therefore built with cheap stand-ins (an in-memory Qdrant client, an OpenAI embedder
  that is never called) and the stand-ins are replaced right after construction: the vector store,
  the entity store (same SQLite file, own collection), the embedder, and the LLM's HTTP client.
- The LLM is OpenAI-compatible (``provider="openai"``) with the key, base URL and model of
  ``LLMSettings``. Unconfigured, Mem0 still demands a key object, so it gets a placeholder and a base URL
  on the discard port of 127.0.0.1 with no retries; callers never ask it to infer then.
- An extraction answer that is not JSON makes Mem0 store *nothing* and return normally. The LLM is
  wrapped (:class:`_StrictExtraction`) so such an answer raises, and the caller can store the turn as is.
- Calls use ``filters={"user_id": ...}`` and ``top_k`` (``limit`` is ignored; ``user_id=`` is refused).
- ``delete_all`` leaves the text behind in the history table (it even writes a DELETE row carrying
  the old text) and the ``messages`` table: :func:`erase_leftovers` deletes those rows, with
  ``secure_delete`` on so the bytes are zeroed.
- Mem0 cannot change a memory's ``user_id``: :func:`move_memories` re-scopes the rows in our store
  (memories and Mem0's entity links) and, on a move of everything, the user's ``messages`` rows.

The hosted client (:func:`new_platform_client`) pings ``/v1/ping/`` with blocking ``requests`` in its
constructor: callers must build it off the event loop.
"""

from __future__ import annotations

import functools
import importlib
import json
import logging
import os
import sys
import threading
import uuid
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

from core.memory.attribution import EXTRACTION_INSTRUCTIONS
from core.memory.embedder import DIMS, LocalEmbedder
from core.memory.vectors import SQLiteVectorStore, VectorHit
from core.settings import LLMSettings
from core.store.private_files import private_dir, private_file, private_sqlite

log = logging.getLogger(__name__)

COLLECTION = "threadline_memories"
ENTITY_COLLECTION = f"{COLLECTION}_entities"
OFFLINE_API_KEY = "threadline-offline-no-llm"  # a placeholder Mem0 demands, not a secret
OFFLINE_BASE_URL = "http://127.0.0.1:9/v1"  # the discard port: nothing leaves the machine
EMBEDDING_MODEL = "all-MiniLM-L6-v2-onnx-int8"

_import_lock = threading.Lock()


def mem0_dir(data_dir: Path) -> Path:
    return data_dir / "mem0"


# ----- import and logging ----------------------------------------------------------------------


class _WithheldMem0Log(logging.Handler):
    """Re-emits mem0's log records through our logger without their text (it may hold memories)."""

    def emit(self, record: logging.LogRecord) -> None:
        exc = record.exc_info[1] if record.exc_info else None
        cause = f" ({type(exc).__name__})" if exc is not None else ""
        log.log(
            record.levelno, "mem0 %s line %d logged a message (withheld)%s", record.name, record.lineno, cause
        )


def _withhold_mem0_logs() -> None:
    mem0_logger = logging.getLogger("mem0")
    if not any(isinstance(h, _WithheldMem0Log) for h in mem0_logger.handlers):
        mem0_logger.addHandler(_WithheldMem0Log())
    mem0_logger.propagate = False  # child loggers reach our handler, never the root's handlers
    if mem0_logger.level == logging.NOTSET or mem0_logger.level < logging.WARNING:
        mem0_logger.setLevel(logging.WARNING)


def _never_load_spacy() -> None:
    """Mark spaCy as unavailable so mem0 never tries to download ``en_core_web_sm`` at run time.

    Without it mem0 lemmatises nothing (BM25 sees the plain text) and extracts no entities.
    """
    from mem0.utils import spacy_models

    spacy_models._load_failed_full = True
    spacy_models._load_failed_lemma = True


def _force_telemetry_off() -> None:
    """Belt and braces for when mem0 was imported before us (the env var is read only at import)."""
    from mem0.memory import main, telemetry

    telemetry.MEM0_TELEMETRY = False
    main.MEM0_TELEMETRY = False
    client_telemetry = getattr(telemetry, "client_telemetry", None)
    if client_telemetry is not None and client_telemetry.posthog is not None:
        client_telemetry.close()


def import_mem0(data_dir: Path) -> ModuleType:
    """Import mem0 with telemetry off and ``MEM0_DIR`` in the data dir; quiet its logs. Idempotent."""
    with _import_lock:
        if "mem0" not in sys.modules:
            os.environ["MEM0_TELEMETRY"] = "False"
            directory = mem0_dir(data_dir)
            private_dir(directory)
            os.environ["MEM0_DIR"] = str(directory)
        _withhold_mem0_logs()  # before the import: mem0 may log while it loads
        mem0 = importlib.import_module("mem0")
        _private_config(data_dir)
        _force_telemetry_off()
        _never_load_spacy()
        return mem0


# ----- our components, as the Mem0 classes it expects ------------------------------------------


@functools.cache
def _vector_store_class() -> type[SQLiteVectorStore]:
    from mem0.vector_stores.base import VectorStoreBase

    class Mem0SQLiteVectorStore(SQLiteVectorStore, VectorStoreBase):  # type: ignore[misc]
        """:class:`SQLiteVectorStore` as a ``VectorStoreBase``: it implements every abstract method."""

    return Mem0SQLiteVectorStore


def mem0_vector_store(path: Path, *, collection_name: str = COLLECTION) -> SQLiteVectorStore:
    """Our SQLite vector store as a subclass of Mem0's ``VectorStoreBase``."""
    return _vector_store_class()(path, collection_name=collection_name, embedding_model_dims=DIMS)


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


def _require_extraction_json(reply: Any) -> None:
    from mem0.memory.utils import extract_json, remove_code_blocks

    text = remove_code_blocks(reply)
    if not text:
        raise ExtractionGarbage("empty extraction answer")
    try:
        parsed = json.loads(text, strict=False)
    except json.JSONDecodeError:
        try:
            parsed = json.loads(extract_json(text), strict=False)
        except json.JSONDecodeError:
            raise ExtractionGarbage("extraction answer is not JSON") from None
    if not isinstance(parsed, dict) or not isinstance(parsed.get("memory"), list):
        raise ExtractionGarbage("extraction answer has no memory list")


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
            _require_extraction_json(reply)
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


def mem0_config(data_dir: Path, llm: LLMSettings) -> dict[str, Any]:
    """The Mem0 config: history under the data dir, OpenAI-compatible LLM, stand-ins for what we replace."""
    llm_config: dict[str, Any] = {
        "model": llm.model,
        "api_key": OFFLINE_API_KEY,
        "openai_base_url": OFFLINE_BASE_URL,
    }
    if llm.configured and llm.api_key is not None:
        llm_config["api_key"] = llm.api_key.get_secret_value()
        llm_config["openai_base_url"] = llm.base_url
    return {
        "history_db_path": str(mem0_dir(data_dir) / "history.db"),
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
    """A ready Mem0 ``Memory`` and the stores we put inside it."""

    memory: Any  # mem0.Memory
    store: SQLiteVectorStore
    entities: SQLiteVectorStore

    def close(self) -> None:
        self.memory.close()
        self.store.close()


def _tune_history_db(memory: Any) -> None:
    db = memory.db
    with db._lock:
        db.connection.execute("PRAGMA busy_timeout=10000")
        db.connection.execute("PRAGMA journal_mode=WAL")  # the server and the CLI may both open it
        db.connection.execute("PRAGMA secure_delete=ON")  # erased history is zeroed, not left in free pages


def build_oss_memory(*, data_dir: Path, llm: LLMSettings, embedder: LocalEmbedder) -> OssMemory:
    """Mem0 open source on our SQLite vector store and local embedder (blocking: call it in a thread)."""
    mem0 = import_mem0(data_dir)
    from mem0.configs.base import MemoryConfig
    from qdrant_client import QdrantClient

    private_dir(mem0_dir(data_dir))
    private_sqlite(mem0_dir(data_dir) / "history.db")  # 0600 before Mem0's SQLite creates it
    config = mem0_config(data_dir, llm)
    store = mem0_vector_store(mem0_dir(data_dir) / "vectors.sqlite3")
    standin = QdrantClient(location=":memory:")
    config["vector_store"]["config"]["client"] = standin
    try:
        # the stand-in is a local Qdrant that mem0 takes for a server and asks for
        # payload indexes, which makes qdrant-client warn
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Payload indexes have no effect", category=UserWarning)
            memory = mem0.Memory(MemoryConfig(**config))
    except BaseException:
        store.close()
        raise
    finally:
        standin.close()
    # The one place where Mem0's stand-ins are swapped for ours (its factories refuse other providers).
    entities = store.with_collection(ENTITY_COLLECTION)
    memory.vector_store = store
    memory._entity_store = entities
    memory.embedding_model = _embedding_adapter(embedder)
    memory.llm.client = _openai_client(llm)  # our timeout and retries; ignores OPENROUTER_API_KEY
    memory.llm = _StrictExtraction(memory.llm)
    memory.config.vector_store.config.client = None
    _tune_history_db(memory)
    _private_config(data_dir)
    return OssMemory(memory=memory, store=store, entities=entities)


def _private_config(data_dir: Path) -> None:
    """Mem0's ``config.json`` (an anonymous id it writes in ``MEM0_DIR``) 0600, when it is there."""
    config = mem0_dir(data_dir) / "config.json"
    if config.is_file():
        private_file(config)


# ----- forgetting ------------------------------------------------------------------------------


def session_scope(user_id: str) -> str:
    """The key Mem0 files a user's raw messages under in its ``messages`` table."""
    from mem0.memory.main import _build_session_scope

    scope: str = _build_session_scope({"user_id": user_id})
    return scope


def erase_leftovers(memory: Any, *, user_id: str, memory_ids: Iterable[str]) -> None:
    """Delete what ``delete_all`` leaves behind: history rows of those memories, the user's raw messages."""
    _erase_history(memory, memory_ids=memory_ids, user_id=user_id, before=None)


def erase_history_before(memory: Any, *, user_id: str, memory_ids: Iterable[str], cutoff: datetime) -> None:
    """Retention's share of Mem0's own tables: the history of deleted memories, and the user's raw
    messages (Mem0's extraction context) written before ``cutoff``."""
    _erase_history(memory, memory_ids=memory_ids, user_id=user_id, before=cutoff)


def _erase_history(memory: Any, *, memory_ids: Iterable[str], user_id: str, before: datetime | None) -> None:
    """One transaction on Mem0's history database, then a WAL checkpoint so nothing deleted lingers."""
    ids = [(str(i),) for i in memory_ids]
    messages = "DELETE FROM messages WHERE session_scope = ?"
    params: tuple[str, ...] = (session_scope(user_id),)
    if before is not None:
        messages += " AND created_at < ?"  # Mem0 writes UTC ISO 8601: the text order is the time order
        params += (before.astimezone(UTC).isoformat(),)
    db = memory.db
    with db._lock:
        conn = db.connection
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.executemany("DELETE FROM history WHERE memory_id = ?", ids)
            conn.execute(messages, params)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")


# ----- moving between customers ----------------------------------------------------------------


def _entity_key(payload: Mapping[str, Any]) -> str:
    """Mem0's identity of an entity within a scope: its text, trimmed, lower-cased, spaces collapsed."""
    text = payload.get("data")
    return " ".join(text.strip().lower().split()) if isinstance(text, str) else ""


def _linked(payload: Mapping[str, Any]) -> list[str]:
    raw = payload.get("linked_memory_ids")
    return [str(i) for i in raw] if isinstance(raw, list) else []


def _move_entity_links(entities: SQLiteVectorStore, from_user: str, to_user: str, moved: set[str]) -> None:
    """Make Mem0's entity rows follow the moved memories (call inside the store's transaction).

    An entity row of ``from_user`` links memory ids; the links to moved memories go to ``to_user``'s row
    of the same text (made when missing, by moving the row itself when nothing else links to it).
    """
    target_rows = entities.list(filters={"user_id": to_user})[0]
    targets = {_entity_key(hit.payload): hit for hit in target_rows}
    for hit in entities.list(filters={"user_id": from_user})[0]:
        linked = _linked(hit.payload)
        going = [i for i in linked if i in moved]
        if not going:
            continue
        staying = [i for i in linked if i not in moved]
        key = _entity_key(hit.payload)
        target = targets.get(key) if key else None
        if target is not None:
            merged = {
                **target.payload,
                "linked_memory_ids": list(dict.fromkeys([*_linked(target.payload), *going])),
            }
            entities.update(target.id, payload=merged)
            targets[key] = VectorHit(id=target.id, score=None, payload=merged)
        elif staying:
            vector = entities.get_vector(hit.id)
            if vector is not None:
                copy = {**hit.payload, "user_id": to_user, "linked_memory_ids": going}
                copy_id = str(uuid.uuid4())
                entities.insert([vector], payloads=[copy], ids=[copy_id])
                targets[key] = VectorHit(id=copy_id, score=None, payload=copy)
        else:  # nothing else links to it: the row itself moves
            moved_row = {**hit.payload, "user_id": to_user}
            entities.update(hit.id, payload=moved_row)
            targets[key] = VectorHit(id=hit.id, score=None, payload=moved_row)
            continue
        if staying:
            entities.update(hit.id, payload={**hit.payload, "linked_memory_ids": staying})
        else:
            entities.delete(hit.id)


def move_memories(
    oss: OssMemory, *, from_user: str, to_user: str, handles: frozenset[str] | None
) -> list[str]:
    """Give ``from_user``'s memories from ``handles`` (all when None) to ``to_user``; same ids, same text.

    The memory rows, their search indexes and Mem0's entity links move in one SQLite transaction. Mem0's
    history table is keyed by memory id and needs nothing. Its ``messages`` table (the last raw messages
    of a user, context for Mem0's own extraction) is keyed by user and does not say which handle a
    message came from: on a move of everything its rows follow; on a move of some handles they stay.
    Idempotent: what was moved is no longer ``from_user``'s, so a re-run moves what is left.
    """
    if from_user == to_user or (handles is not None and not handles):
        return []
    where = None if handles is None else {"source_handle": {"in": sorted(handles)}}
    with oss.store.transaction():
        moved = oss.store.reassign(from_user, to_user, where=where)
        if moved:
            _move_entity_links(oss.entities, from_user, to_user, set(moved))
    if handles is None:
        _move_session_messages(oss.memory, from_user=from_user, to_user=to_user)
    return moved


def _move_session_messages(memory: Any, *, from_user: str, to_user: str) -> None:
    db = memory.db
    with db._lock:
        conn = db.connection
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute(
                "UPDATE messages SET session_scope = ? WHERE session_scope = ?",
                (session_scope(to_user), session_scope(from_user)),
            )
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")


# ----- hosted Mem0 -----------------------------------------------------------------------------


def is_not_found(exc: BaseException) -> bool:
    """True for the hosted client's answer to a memory that does not exist (HTTP 404)."""
    from mem0.exceptions import MemoryNotFoundError

    return isinstance(exc, MemoryNotFoundError)


def new_platform_client(*, data_dir: Path, api_key: str, host: str, timeout: float) -> Any:
    """``mem0.AsyncMemoryClient`` with our HTTP timeout. Blocking (its constructor pings): run in a thread."""
    import httpx

    mem0 = import_mem0(data_dir)
    # an unused AsyncClient holds no connection: if the constructor's ping fails there is nothing to close
    return mem0.AsyncMemoryClient(api_key=api_key, host=host, client=httpx.AsyncClient(timeout=timeout))
