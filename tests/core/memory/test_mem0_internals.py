"""The guard of ``core.memory.mem0_quirks``: every Mem0 internal it names (``INTERNALS``) is checked here,
and a Mem0 upgrade that removes or changes one fails the test of that name, saying which and how.

The checks look at the internal itself (it exists, its signature, the source line of Mem0 that uses it)
and at its effect on a Mem0 built as ``LocalMemory`` builds it, around a fake LLM: one extraction for an
SMS handle, then one for a Telegram handle of the same customer.
"""

from __future__ import annotations

import inspect
import json
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from core.memory import mem0_oss, mem0_quirks
from core.memory.embedder import shared_embedder
from core.memory.mem0_oss import OssMemory
from core.messages import Provenance
from core.settings import LLMSettings
from tests.fakes.openai_server import FakeOpenAI, restating_responder

USER = "cust-probe"
SMS, TELEGRAM = "sms:+15550001111", "telegram:42"
SMS_CANARY = "zqsmsprobecanary"


@dataclass
class Probe:
    """A Mem0 built as ``LocalMemory`` builds it, after one SMS and one Telegram extraction."""

    oss: OssMemory
    data_dir: Path
    extractions: list[dict[str, Any]]  # the LLM requests: SMS first, then Telegram
    entity_store_after_adds: Any

    @property
    def memory(self) -> Any:
        return self.oss.memory

    def history_db(self) -> sqlite3.Connection:
        return sqlite3.connect(mem0_quirks.mem0_dir(self.data_dir) / "history.db")


def metadata(handle: str, turn: int) -> dict[str, Any]:
    return Provenance(
        channel=handle.split(":", 1)[0],
        handle=handle,
        message_ids=(f"inbox:{turn}",),
        category="support_history",
        turn_ids=(turn,),
    ).as_metadata()


@pytest.fixture(scope="module")
def probe(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Probe]:
    data_dir = tmp_path_factory.mktemp("mem0-internals")
    with FakeOpenAI(responder=restating_responder) as fake:
        llm = LLMSettings(api_key=SecretStr("sk-test"), base_url=fake.base_url, max_retries=0, timeout=7)
        oss = mem0_oss.build_oss_memory(
            data_dir=data_dir, llm=llm, embedder=shared_embedder(), index=mem0_oss.sqlite_index(data_dir)
        )
        try:
            for handle, turn, text in ((SMS, 1, f"my code word is {SMS_CANARY}"), (TELEGRAM, 2, "hello")):
                with mem0_oss.narrowed({"source_handle": handle}):
                    oss.memory.add(
                        [{"role": "user", "content": text}], user_id=USER, metadata=metadata(handle, turn)
                    )
            yield Probe(
                oss=oss,
                data_dir=data_dir,
                extractions=fake.calls,
                entity_store_after_adds=oss.memory._entity_store,
            )
        finally:
            oss.close()


def _source(obj: Any) -> str:
    return inspect.getsource(obj)


def _add_source() -> str:
    from mem0.memory.main import Memory

    return _source(Memory._add_to_vector_store)


def _params(function: Any) -> list[str]:
    return list(inspect.signature(function).parameters)


def _columns(probe: Probe, table: str) -> set[str]:
    with probe.history_db() as db:
        return {row[1] for row in db.execute(f"PRAGMA table_info({table})")}


def _missing(source: str, *needles: str) -> str | None:
    gone = [n for n in needles if n not in source]
    return f"Mem0's code no longer has {gone}" if gone else None


# ----- the checks, one per internal --------------------------------------------------------------


def spacy_full(probe: Probe) -> str | None:
    from mem0.utils import entity_extraction, spacy_models

    if not hasattr(spacy_models, "_load_failed_full"):
        return "the flag is gone: mem0 may download a spaCy model at run time"
    if spacy_models.get_nlp_full() is not None:
        return "get_nlp_full() loads a model despite the flag"
    if entity_extraction.extract_entities("Ana Smith flew to Paris for Acme Corp") != []:
        return "entities are extracted: Mem0 would make an entity store we do not keep in step"
    return None


def spacy_lemma(probe: Probe) -> str | None:
    from mem0.utils import lemmatization, spacy_models

    if not hasattr(spacy_models, "_load_failed_lemma"):
        return "the flag is gone: mem0 may download a spaCy model at run time"
    if (
        spacy_models.get_nlp_lemma() is not None
        or lemmatization.lemmatize_for_bm25("Dogs running") != "Dogs running"
    ):
        return "text is lemmatised despite the flag"
    return None


def telemetry_flag(probe: Probe) -> str | None:
    from mem0.memory import telemetry

    if getattr(telemetry, "MEM0_TELEMETRY", None) is not False:
        return "the module flag is missing or on"
    return _missing(_source(telemetry.capture_event), "MEM0_TELEMETRY")


def main_flag(probe: Probe) -> str | None:
    from mem0.memory import main

    if getattr(main, "MEM0_TELEMETRY", None) is not False:
        return "the module flag is missing or on"
    return _missing(_source(main.Memory.__init__), "MEM0_TELEMETRY")


def client_telemetry(probe: Probe) -> str | None:
    from mem0.memory import telemetry

    client = getattr(telemetry, "client_telemetry", None)
    if client is None or not hasattr(client, "posthog") or not callable(getattr(client, "close", None)):
        return "no client_telemetry with posthog and close()"
    return None


def remove_code_blocks(probe: Probe) -> str | None:
    from mem0.memory.utils import remove_code_blocks as remove

    got = remove('```json\n{"memory": []}\n```')
    return None if got.strip() == '{"memory": []}' else f"a fenced answer comes back as {got!r}"


def extract_json(probe: Probe) -> str | None:
    from mem0.memory.utils import extract_json as extract

    got = extract('Sure: {"memory": []} done')
    return None if json.loads(got) == {"memory": []} else f"an embedded object comes back as {got!r}"


def vector_store(probe: Probe) -> str | None:
    if type(probe.memory.vector_store).__name__ != "Mem0Index":
        return "our index adapter is not in place"
    if probe.oss.index.count({"user_id": USER}) == 0:
        return "the extracted memories did not reach our index"
    return _missing(_add_source(), "self.vector_store.search(", "self.vector_store.insert(")


def embedding_model(probe: Probe) -> str | None:
    if type(probe.memory.embedding_model).__name__ != "LocalEmbedding":
        return "our embedder is not in place"
    return _missing(_add_source(), "self.embedding_model.embed")


def llm(probe: Probe) -> str | None:
    from mem0.llms.openai import OpenAILLM

    if not isinstance(probe.memory.llm, mem0_oss._StrictExtraction):
        return "the strict-extraction wrapper is not in place"
    if _params(OpenAILLM.generate_response)[:3] != ["self", "messages", "response_format"]:
        return f"generate_response takes {_params(OpenAILLM.generate_response)}"
    return _missing(_add_source(), "self.llm.generate_response(", 'response_format={"type": "json_object"}')


def llm_client(probe: Probe) -> str | None:
    from mem0.llms.openai import OpenAILLM

    client = probe.memory.llm.client
    if (client.max_retries, client.timeout) != (0, 7):
        return "the LLM is not on our client (timeout, retries)"
    if len(probe.extractions) != 2:
        return f"the fake LLM got {len(probe.extractions)} calls, not the 2 extractions"
    return _missing(_source(OpenAILLM.generate_response), "self.client.chat.completions.create")


def db(probe: Probe) -> str | None:
    if type(probe.memory.db).__name__ != "HistoryOnly":
        return "our history database is not in place"
    return _missing(_add_source(), "self.db.get_last_messages(", "self.db.save_messages(")


def config_client(probe: Probe) -> str | None:
    if probe.memory.config.vector_store.config.client is not None:
        return "the stand-in Qdrant client is still in the config"
    return None


def entity_store(probe: Probe) -> str | None:
    from mem0.memory.main import Memory

    if probe.entity_store_after_adds is not None:
        return "Mem0 made an entity store: its rows would not follow moves nor be forgotten"
    return _missing(_source(Memory.entity_store.fget), "self._entity_store is None") or _missing(
        _add_source(), "extract_entities_batch("
    )


def add_shows(probe: Probe) -> str | None:
    sms_call, telegram_call = probe.extractions
    if SMS_CANARY not in json.dumps(sms_call):
        return "the SMS extraction did not see its own message"
    if SMS_CANARY in json.dumps(telegram_call):
        return "the Telegram extraction was shown the SMS handle's words (last messages or existing memories)"
    return _missing(_add_source(), "last_k_messages=last_messages", "existing_memories=existing_memories")


def save_messages(probe: Probe) -> str | None:
    from mem0.memory.storage import SQLiteManager

    if _params(SQLiteManager.save_messages) != ["self", "messages", "session_scope"]:
        return f"its parameters are {_params(SQLiteManager.save_messages)}"
    with probe.history_db() as conn:
        if conn.execute("SELECT count(*) FROM messages").fetchone() != (0,):
            return "raw messages were kept"
    return None


def get_last_messages(probe: Probe) -> str | None:
    from mem0.memory.storage import SQLiteManager

    params = _params(SQLiteManager.get_last_messages)
    return None if params == ["self", "session_scope", "limit"] else f"its parameters are {params}"


def db_lock(probe: Probe) -> str | None:
    lock = getattr(probe.memory.db, "_lock", None)
    return None if hasattr(lock, "__enter__") and hasattr(lock, "__exit__") else "no _lock to hold"


def db_connection(probe: Probe) -> str | None:
    connection = getattr(probe.memory.db, "connection", None)
    return None if isinstance(connection, sqlite3.Connection) else "no sqlite3 connection"


def history_table(probe: Probe) -> str | None:
    if not {"memory_id", "old_memory", "new_memory"} <= _columns(probe, "history"):
        return f"the history table has the columns {sorted(_columns(probe, 'history'))}"
    gone = "cust-probe-forgotten"
    added = probe.memory.add("zqhistorycanary", user_id=gone, infer=False)
    ids = [item["id"] for item in added["results"]]
    probe.memory.delete_all(user_id=gone)
    with probe.history_db() as conn:
        if not conn.execute(
            "SELECT count(*) FROM history WHERE new_memory LIKE '%zqhistorycanary%'"
        ).fetchone()[0]:
            return "the text is no longer kept in history rows (erase_history looks there)"
    mem0_quirks.erase_history(probe.memory, ids)
    with probe.history_db() as conn:
        left = conn.execute("SELECT count(*) FROM history WHERE memory_id = ?", (ids[0],)).fetchone()[0]
    return None if left == 0 else "erase_history left history rows"


def messages_table(probe: Probe) -> str | None:
    wanted = {"session_scope", "role", "content", "created_at"}
    columns = _columns(probe, "messages")
    return None if wanted <= columns else f"the messages table has the columns {sorted(columns)}"


def history_calls(probe: Probe) -> str | None:
    """``no_history_db`` keeps nothing because it overrides every history method ``Memory`` calls."""
    import re

    from mem0.memory import main

    source = inspect.getsource(main)
    called = {name for name in re.findall(r"self\.db\.(\w+)\(", source) if "history" in name}
    overridden = {"add_history", "batch_add_history", "get_history"}
    if called - overridden:
        return f"Memory calls history methods no_history_db does not override: {sorted(called - overridden)}"
    keeper = mem0_quirks.no_history_db()
    try:
        keeper.add_history("m1", None, "zqcanary", "ADD")
        keeper.batch_add_history([{"memory_id": "m2", "new_memory": "zqcanary", "event": "ADD"}])
        with keeper._lock:
            rows = keeper.connection.execute("SELECT count(*) FROM history").fetchone()[0]
    finally:
        keeper.close()
    return None if rows == 0 and keeper.get_history("m1") == [] else "no_history_db kept history rows"


CHECKS: dict[str, Callable[[Probe], str | None]] = {
    "mem0.utils.spacy_models._load_failed_full": spacy_full,
    "mem0.utils.spacy_models._load_failed_lemma": spacy_lemma,
    "mem0.memory.telemetry.MEM0_TELEMETRY": telemetry_flag,
    "mem0.memory.main.MEM0_TELEMETRY": main_flag,
    "mem0.memory.telemetry.client_telemetry": client_telemetry,
    "mem0.memory.utils.remove_code_blocks": remove_code_blocks,
    "mem0.memory.utils.extract_json": extract_json,
    "Memory.vector_store": vector_store,
    "Memory.embedding_model": embedding_model,
    "Memory.llm": llm,
    "Memory.llm.client": llm_client,
    "Memory.db": db,
    "Memory.config.vector_store.config.client": config_client,
    "Memory.entity_store only with entities": entity_store,
    "Memory.add shows db.get_last_messages and vector_store.search": add_shows,
    "SQLiteManager.save_messages": save_messages,
    "SQLiteManager.get_last_messages": get_last_messages,
    "SQLiteManager._lock": db_lock,
    "SQLiteManager.connection": db_connection,
    "history table (memory_id)": history_table,
    "messages table": messages_table,
    "Memory.db history calls (no_history_db overrides them)": history_calls,
}


def test_every_internal_has_a_check() -> None:
    assert sorted(CHECKS) == sorted(mem0_quirks.INTERNALS)


@pytest.mark.parametrize("internal", mem0_quirks.INTERNALS)
def test_mem0_internal(probe: Probe, internal: str) -> None:
    check = CHECKS.get(internal)
    assert check is not None, f"no check for the Mem0 internal {internal!r}"
    try:
        problem = check(probe)
    except Exception as exc:  # an internal that is gone often raises (ImportError, AttributeError, ...)
        problem = f"{type(exc).__name__}: {exc}"
    assert problem is None, (
        f"mem0ai {version('mem0ai')} changed {internal!r}, "
        f"which core/memory/mem0_quirks.py relies on: {problem}"
    )
