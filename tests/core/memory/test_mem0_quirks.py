"""Mem0 as we import and build it: environment before import, quiet logs, our index in Mem0's hierarchy,
the config."""

from __future__ import annotations

import logging
import os
import random
from pathlib import Path
from types import SimpleNamespace

import pytest
from pydantic import SecretStr

from core.memory import mem0_oss, mem0_quirks
from core.settings import LLMSettings
from tests.core.memory.helpers import files_containing

SECRET = "zqsecretmemorytext"


@pytest.fixture
def mem0(tmp_path: Path) -> object:
    return mem0_quirks.import_mem0(tmp_path)


def test_telemetry_is_off_and_spacy_never_loads(mem0: object) -> None:
    from mem0.memory import main, telemetry
    from mem0.utils import spacy_models

    assert os.environ["MEM0_TELEMETRY"] == "False"
    assert os.environ["MEM0_DIR"].endswith("mem0")
    assert telemetry.MEM0_TELEMETRY is False
    assert main.MEM0_TELEMETRY is False
    assert spacy_models.get_nlp_lemma() is None
    assert spacy_models.get_nlp_full() is None


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_mem0_log_lines_are_withheld(mem0: object) -> None:
    # what the application's handlers (on the root logger) get; pytest's caplog also taps
    # non-propagating loggers, so it cannot show this
    collect = _Collect()
    root = logging.getLogger()
    root.addHandler(collect)
    level = root.level
    root.setLevel(logging.DEBUG)
    try:
        try:
            raise ValueError(SECRET)
        except ValueError:
            logging.getLogger("mem0.memory.main").exception("Skipping invalid message format: %s", SECRET)
        logging.getLogger("mem0.some.future.module").warning(f"Entity upsert failed for '{SECRET}'")  # noqa: G004 - as mem0 does
        logging.getLogger("mem0.memory.main").info(f"Updating memory with {SECRET=}")  # noqa: G004 - as mem0 does
    finally:
        root.removeHandler(collect)
        root.setLevel(level)
    text = "\n".join(collect.format(r) for r in collect.records)
    assert SECRET not in text
    assert [r.name for r in collect.records] == ["core.memory.mem0_quirks"] * 2  # info is below mem0's level
    assert collect.records[0].levelno == logging.ERROR
    assert "mem0.memory.main" in text and "ValueError" in text
    assert all(r.exc_info is None for r in collect.records)


def test_the_index_is_a_mem0_vector_store_with_keyword_search(mem0: object, tmp_path: Path) -> None:
    from mem0.vector_stores.base import VectorStoreBase

    index = mem0_oss.sqlite_index(tmp_path)
    try:
        adapter = mem0_oss._index_adapter()(index)
        assert isinstance(adapter, VectorStoreBase)
        assert type(adapter).keyword_search is not VectorStoreBase.keyword_search  # hybrid BM25 stays on
    finally:
        index.close()


def test_config_without_an_llm_uses_a_placeholder_that_goes_nowhere(tmp_path: Path) -> None:
    config = mem0_oss.mem0_config(tmp_path, LLMSettings())
    llm = config["llm"]["config"]
    assert config["llm"]["provider"] == "openai"
    assert llm["api_key"] == mem0_oss.OFFLINE_API_KEY
    assert llm["openai_base_url"].startswith("http://127.0.0.1:")
    assert config["history_db_path"] == str(tmp_path / "mem0" / "history.db")


def test_config_with_an_llm_uses_its_key_url_and_model(tmp_path: Path) -> None:
    settings = LLMSettings(api_key=SecretStr("sk-test"), base_url="http://127.0.0.1:1/v1", model="m-1")
    llm = mem0_oss.mem0_config(tmp_path, settings)["llm"]["config"]
    assert llm == {"model": "m-1", "api_key": "sk-test", "openai_base_url": "http://127.0.0.1:1/v1"}


def test_the_entity_collection_of_an_earlier_version_is_dropped(tmp_path: Path) -> None:
    old = mem0_oss.sqlite_index(tmp_path).with_collection(mem0_oss.LEGACY_ENTITY_COLLECTION)
    old.insert([[1.0] * old.embedding_model_dims], payloads=[{"user_id": "c", "data": "zqentitycanary"}])
    old.close()
    index = mem0_oss.sqlite_index(tmp_path)
    try:
        assert index.list_cols() == [mem0_quirks.COLLECTION]
    finally:
        index.close()
    assert files_containing(tmp_path, "zqentitycanary") == []


def _history_left_after_erasing(folder: Path, layout: int, *, rewrite: bool) -> bool:
    """Ana's history rows interleaved with Tom's, of varied lengths, Ana's erased: is her text still in
    any file under ``folder``?"""
    folder.mkdir()
    db = mem0_quirks.history_only_db(folder / "history.db")
    rng = random.Random(layout)
    gone = []
    for n in range(40):
        words = " router" * rng.randint(5, 150)
        if rng.random() < 0.5:
            db.add_history(f"m{n}", None, f"zqx7canary4forget {n}{words}", "ADD")
            gone.append(f"m{n}")
        else:
            db.add_history(f"m{n}", None, f"Tom {n}{words}", "ADD")
    mem0_quirks.erase_history(SimpleNamespace(db=db), gone, rewrite=rewrite)
    with db._lock:
        assert db.connection.execute("SELECT count(*) FROM history").fetchone()[0] == 40 - len(gone)
    db.close()
    return files_containing(folder, "zqx7canary4forget") != []


def test_erasing_history_with_a_rewrite_leaves_no_copy_after_pages_were_rebalanced(
    mem0: object, tmp_path: Path
) -> None:
    """Deleting history rows rebalances pages; a row moved between pages leaves its old bytes in the free
    gap of a page still in use, which ``secure_delete`` does not zero. Over 30 layouts: without the
    rewrite (retention) some leave a copy (layout 18 did on 2026-12-07); with it (erasure) none does."""
    without = [n for n in range(30) if _history_left_after_erasing(tmp_path / f"a{n}", n, rewrite=False)]
    assert without, "no layout left a copy without the rewrite: the test no longer shows the case"
    assert [n for n in range(30) if _history_left_after_erasing(tmp_path / f"b{n}", n, rewrite=True)] == []
