"""Every Mem0 internal Threadline touches, in one place; ``tests/core/memory/test_mem0_internals.py``
fails, naming the internal, when a Mem0 upgrade removes or changes one of them (:data:`INTERNALS`).

Mem0 (2.2.x) is imported lazily, by :func:`import_mem0`, never when ``core`` is imported, because
importing it has side effects that must be steered first; every other module imports mem0 only after it:

- ``MEM0_TELEMETRY`` and ``MEM0_DIR`` are read once, at import. Telemetry is forced off (it would also
  fetch a notice config from GitHub), also in ``mem0.memory.telemetry`` / ``mem0.memory.main`` when mem0
  was imported before us, and ``MEM0_DIR`` (its ``config.json``) goes to ``<data_dir>/mem0`` (0700,
  the files we know Mem0 writes there 0600). Process-wide: the first data dir to import mem0 wins.
- mem0 logs memory text and message content. Its loggers are cut off from the root logger and
  re-emitted through ours with the text withheld (:class:`_WithheldMem0Log`).
- mem0 downloads a spaCy model at run time when spaCy is installed: ``mem0.utils.spacy_models`` is
  marked as failed for good. Without spaCy Mem0 extracts no entities, so it never creates its entity
  store (``Memory.entity_store`` is built on the first entity): there is none to keep in step.

On a built ``Memory`` (:func:`install`): Mem0's factories accept only their own providers, so its
``vector_store``, ``embedding_model`` and ``llm.client`` are replaced after construction (the stand-ins
it was built with are never used), its ``llm`` is wrapped (``generate_response(messages,
response_format)``), and its ``db`` (``SQLiteManager``, the history database) with
:func:`history_only_db`, which keeps no raw messages: Mem0's "Last k Messages" are keyed by customer, not
by handle, so the words of one handle would reach the extraction of another's turn. Rows such a file
kept from before are deleted when it is opened. With a memory index that several hosts share (PostgreSQL),
Mem0 gets :func:`no_history_db` instead: in memory, keeping neither messages nor history rows, since a
history file in one host's data dir is out of reach of forget and retention run on another host. It
overrides ``add_history``, ``batch_add_history`` and ``get_history``, the history methods ``Memory`` calls
(in :data:`INTERNALS`); ``tests/core/memory/test_pg_memory.py`` also checks through Mem0 that nothing is
kept.

The "Existing Memories" ``Memory.add`` shows its extractor are what its ``vector_store.search`` returns
for the customer's scope, called in the caller's thread: ``core.memory.mem0_oss.narrowed`` narrows that
read to one handle.

``delete_all`` leaves the text behind in the ``history`` table (it even writes a DELETE row carrying
the old text): :func:`erase_history` deletes those rows on Mem0's own connection (``db._lock``,
``db.connection``), with ``secure_delete`` on so the bytes are zeroed.

An extraction answer that is not JSON makes Mem0 store nothing and return normally:
:func:`extraction_problem` parses it as Mem0 does (``mem0.memory.utils``) so the caller can raise.
"""

from __future__ import annotations

import functools
import importlib
import json
import logging
import os
import sys
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from types import ModuleType
from typing import Any, Final

from core.store.private_files import private_dir, private_file

log = logging.getLogger(__name__)

COLLECTION = "threadline_memories"  # the memories' collection in the vector file (bench reads it)

# What this module takes from Mem0 beyond its documented API (checked by the internals test).
INTERNALS: Final[tuple[str, ...]] = (
    "mem0.utils.spacy_models._load_failed_full",
    "mem0.utils.spacy_models._load_failed_lemma",
    "mem0.memory.telemetry.MEM0_TELEMETRY",
    "mem0.memory.main.MEM0_TELEMETRY",
    "mem0.memory.telemetry.client_telemetry",
    "mem0.memory.utils.remove_code_blocks",
    "mem0.memory.utils.extract_json",
    "Memory.vector_store",
    "Memory.embedding_model",
    "Memory.llm",
    "Memory.llm.client",
    "Memory.db",
    "Memory.config.vector_store.config.client",
    "Memory.entity_store only with entities",
    "Memory.add shows db.get_last_messages and vector_store.search",
    "SQLiteManager.save_messages",
    "SQLiteManager.get_last_messages",
    "SQLiteManager._lock",
    "SQLiteManager.connection",
    "history table (memory_id)",
    "messages table",
    "Memory.db history calls (no_history_db overrides them)",
)

_import_lock = threading.Lock()


def mem0_dir(data_dir: Path) -> Path:
    """Mem0's corner of the data dir: ``MEM0_DIR``, its history database, our vector file."""
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
    """Mark spaCy as unavailable: mem0 never downloads ``en_core_web_sm``, lemmatises nothing (BM25 sees
    the plain text) and extracts no entities (so it never makes an entity store)."""
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


def private_config(data_dir: Path) -> None:
    """Mem0's ``config.json`` (an anonymous id it writes in ``MEM0_DIR``) 0600, when it is there."""
    config = mem0_dir(data_dir) / "config.json"
    if config.is_file():
        private_file(config)


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
        private_config(data_dir)
        _force_telemetry_off()
        _never_load_spacy()
        return mem0


# ----- extraction answers ----------------------------------------------------------------------


def extraction_problem(reply: Any) -> str | None:
    """Why ``reply`` is not extraction JSON (``{"memory": [...]}``) as Mem0 parses it; None if it is."""
    from mem0.memory.utils import extract_json, remove_code_blocks

    text = remove_code_blocks(reply)
    if not text:
        return "empty extraction answer"
    try:
        parsed = json.loads(text, strict=False)
    except json.JSONDecodeError:
        try:
            parsed = json.loads(extract_json(text), strict=False)
        except json.JSONDecodeError:
            return "extraction answer is not JSON"
    if not isinstance(parsed, dict) or not isinstance(parsed.get("memory"), list):
        return "extraction answer has no memory list"
    return None


# ----- a built Memory --------------------------------------------------------------------------


@functools.cache
def _history_only_class() -> type[Any]:
    from mem0.memory.storage import SQLiteManager

    class HistoryOnly(SQLiteManager):  # type: ignore[misc]
        """Mem0's history database without its raw-message store (see the module docstring)."""

        def save_messages(self, messages: list[dict[str, Any]], session_scope: str) -> None:
            return None

        def get_last_messages(self, session_scope: str, limit: int = 10) -> list[dict[str, Any]]:
            return []

    return HistoryOnly


def history_only_db(path: Path) -> Any:
    """Mem0's history database at ``path`` keeping no raw messages (those kept before are deleted),
    tuned: WAL (the server and the CLI may both open it), ``secure_delete`` (erased rows are zeroed)."""
    db = _history_only_class()(str(path))
    with db._lock:
        conn = db.connection
        conn.execute("PRAGMA busy_timeout=10000")
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA secure_delete=ON")
        if conn.execute("SELECT 1 FROM messages LIMIT 1").fetchone() is not None:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("DELETE FROM messages")
            conn.execute("COMMIT")
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return db


@functools.cache
def _no_history_class() -> type[Any]:
    class NoHistory(_history_only_class()):  # type: ignore[misc]
        """Mem0's history database keeping nothing: no raw messages, no history rows (see the module
        docstring). Should Mem0 rename these methods, what it writes stays in memory, never in a file."""

        def add_history(self, memory_id: str, old_memory: Any, new_memory: Any, event: str, **_: Any) -> None:
            return None

        def batch_add_history(self, records: list[dict[str, Any]]) -> None:
            return None

        def get_history(self, memory_id: str) -> list[dict[str, Any]]:
            return []

    return NoHistory


def no_history_db() -> Any:
    """Mem0's history database for an index that several hosts share: in memory, keeping nothing."""
    return _no_history_class()(":memory:")


def install(
    memory: Any,
    *,
    vector_store: Any,
    embedding_model: Any,
    llm_client: Any,
    wrap_llm: Callable[[Any], Any],
    db: Any,
) -> None:
    """Put our components into a built ``mem0.Memory`` in place of its stand-ins; its LLM, on our
    client, wrapped by ``wrap_llm``."""
    standin_db = memory.db
    memory.vector_store = vector_store
    memory.embedding_model = embedding_model
    memory.llm.client = llm_client
    memory.llm = wrap_llm(memory.llm)
    memory.db = db
    memory.config.vector_store.config.client = None  # the stand-in client, closed by the caller
    standin_db.close()


def erase_history(memory: Any, memory_ids: Iterable[str], *, rewrite: bool = False) -> None:
    """Delete the history rows of ``memory_ids`` (they hold the memories' text), then checkpoint the
    WAL so nothing deleted lingers. One transaction on Mem0's own connection. With ``rewrite`` (erasure)
    the file is rewritten first (``VACUUM``): rows moved between pages leave copies ``secure_delete``
    does not zero (``core.memory.sqlite_file.SharedConnection.rewrite``)."""
    ids = [(str(i),) for i in memory_ids]
    if not ids:
        return
    db = memory.db
    with db._lock:
        conn = db.connection
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.executemany("DELETE FROM history WHERE memory_id = ?", ids)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        if rewrite:
            conn.execute("VACUUM")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
