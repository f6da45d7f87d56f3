"""The SQLite vector store: scoped search, BM25, turns, deletes, and several connections on one file."""

from __future__ import annotations

import random
import sqlite3
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from core.memory import sqlite_file
from core.memory.vectors import SQLiteVectorStore
from tests.core.memory.helpers import files_containing

ROOT = Path(__file__).resolve().parents[3]
DIMS = 384


def unit(seed: int) -> np.ndarray:
    vector = np.random.default_rng(seed).standard_normal(DIMS).astype(np.float32)
    return vector / np.linalg.norm(vector)


def near(vector: np.ndarray, seed: int, noise: float) -> np.ndarray:
    return vector + noise * unit(seed)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteVectorStore]:
    vectors = SQLiteVectorStore(tmp_path / "vectors.sqlite3")
    yield vectors
    vectors.close()


def payload(user: str, text: str, **extra: object) -> dict[str, object]:
    return {"user_id": user, "data": text, **extra}


def test_search_ranks_by_cosine_within_the_scope(store: SQLiteVectorStore) -> None:
    target = unit(1)
    store.insert(
        [near(target, 2, 0.1), near(target, 3, 1.0), unit(4), target],
        payloads=[
            payload("a", "close"),
            payload("a", "farther"),
            payload("a", "unrelated"),
            payload("b", "exact"),
        ],
        ids=["close", "farther", "unrelated", "other-user"],
    )
    hits = store.search("q", target, top_k=2, filters={"user_id": "a"})
    assert [h.id for h in hits] == ["close", "farther"]
    assert all(h.score is not None and 0.0 <= h.score <= 1.0 for h in hits)
    assert hits[0].payload == payload("a", "close")


def test_two_users_never_see_each_other(store: SQLiteVectorStore) -> None:
    store.insert([unit(1)], payloads=[payload("alice", "alice router wifi")], ids=["a1"])
    store.insert([unit(1)], payloads=[payload("bob", "bob router wifi")], ids=["b1"])
    for user, own in (("alice", "a1"), ("bob", "b1")):
        assert [h.id for h in store.search("q", unit(1), top_k=10, filters={"user_id": user})] == [own]
        assert [h.id for h in store.keyword_search("router wifi", top_k=10, filters={"user_id": user})] == [
            own
        ]
        assert [h.id for h in store.list({"user_id": user})] == [own]
        assert store.count({"user_id": user}) == 1


def test_no_scope_returns_nothing(store: SQLiteVectorStore) -> None:
    store.insert([unit(1)], payloads=[payload("alice", "router")], ids=["a1"])
    assert store.search("q", unit(1), top_k=10, filters=None) == []
    assert store.search("q", unit(1), top_k=10, filters={"category": "x"}) == []
    assert store.keyword_search("router", top_k=10, filters={}) == []
    assert store.list(None) == []
    assert store.count({}) == 0


def test_agent_and_run_scopes_are_indexed_too(store: SQLiteVectorStore) -> None:
    store.insert(
        [unit(1), unit(2)],
        payloads=[
            {"agent_id": "bot", "run_id": "r1", "data": "x"},
            {"agent_id": "bot", "run_id": "r2", "data": "x"},
        ],
        ids=["one", "two"],
    )
    assert {h.id for h in store.search("q", unit(1), top_k=5, filters={"agent_id": "bot"})} == {"one", "two"}
    assert [
        h.id for h in store.search("q", unit(1), top_k=5, filters={"agent_id": "bot", "run_id": "r2"})
    ] == ["two"]
    assert [h.id for h in store.keyword_search("x", top_k=5, filters={"run_id": "r1"})] == ["one"]


def test_metadata_filters(store: SQLiteVectorStore) -> None:
    store.insert(
        [unit(1), unit(2)],
        payloads=[payload("a", "tea", category="profile"), payload("a", "tea", category="support_history")],
        ids=["p", "s"],
    )
    only = {"user_id": "a", "category": "profile"}
    assert [h.id for h in store.search("q", unit(2), top_k=5, filters=only)] == ["p"]
    assert [h.id for h in store.keyword_search("tea", top_k=5, filters=only)] == ["p"]
    assert [h.id for h in store.list(only)] == ["p"]


def test_keyword_search_prefers_the_lemmatized_text(store: SQLiteVectorStore) -> None:
    store.insert([unit(1)], payloads=[payload("a", "He was running", text_lemmatized="run")], ids=["x"])
    assert [h.id for h in store.keyword_search("run", top_k=5, filters={"user_id": "a"})] == ["x"]


@pytest.mark.parametrize(
    "query", ['wifi" OR scope:*', "NEAR(a b)", "(((", "*", "wifi AND", "'; DROP TABLE x; --"]
)
def test_keyword_search_treats_query_syntax_as_words(store: SQLiteVectorStore, query: str) -> None:
    store.insert([unit(1)], payloads=[payload("a", "wifi")], ids=["x"])
    store.insert([unit(1)], payloads=[payload("b", "wifi scope")], ids=["y"])
    hits = store.keyword_search(query, top_k=5, filters={"user_id": "a"})
    assert {h.id for h in hits} <= {"x"}


def test_get_update_delete(store: SQLiteVectorStore) -> None:
    store.insert([unit(1)], payloads=[payload("a", "old text", turn_ids=[7])], ids=["m"])
    hit = store.get("m")
    assert hit is not None and hit.payload["data"] == "old text" and hit.score is None
    store.update("m", payload=payload("a", "new words", turn_ids=[8]))
    assert store.keyword_search("old", top_k=5, filters={"user_id": "a"}) == []
    assert [h.id for h in store.keyword_search("words", top_k=5, filters={"user_id": "a"})] == ["m"]
    assert not store.covers_turns("a", [7]) and store.covers_turns("a", [8])
    store.update("m", vector=unit(9))
    assert store.search("q", unit(9), top_k=1, filters={"user_id": "a"})[0].score == pytest.approx(
        1.0, abs=1e-5
    )
    store.delete("m")
    assert store.get("m") is None
    assert store.search("q", unit(9), top_k=5, filters={"user_id": "a"}) == []
    assert store.keyword_search("words", top_k=5, filters={"user_id": "a"}) == []
    assert not store.covers_turns("a", [8])


def test_insert_with_an_existing_id_replaces_the_row(store: SQLiteVectorStore) -> None:
    store.insert([unit(1)], payloads=[payload("a", "first")], ids=["m"])
    store.insert([unit(2)], payloads=[payload("a", "second")], ids=["m"])
    assert [h.payload["data"] for h in store.list({"user_id": "a"})] == ["second"]
    assert store.keyword_search("first", top_k=5, filters={"user_id": "a"}) == []


def test_list_is_newest_first_and_honours_top_k(store: SQLiteVectorStore) -> None:
    store.insert(
        [unit(1), unit(2), unit(3)],
        payloads=[
            payload("a", "middle", created_at="2024-05-02T00:00:00+00:00"),
            payload("a", "newest", created_at="2024-05-03T00:00:00+00:00"),
            payload("a", "oldest", created_at="2024-05-01T00:00:00+00:00"),
        ],
    )
    assert [h.payload["data"] for h in store.list({"user_id": "a"})] == ["newest", "middle", "oldest"]
    assert [h.payload["data"] for h in store.list({"user_id": "a"}, top_k=1)] == ["newest"]


def test_covers_turns_is_per_customer(store: SQLiteVectorStore) -> None:
    store.insert([unit(1)], payloads=[payload("a", "x", turn_ids=[1, 2])], ids=["m"])
    assert store.covers_turns("a", [2, 99])
    assert not store.covers_turns("a", [3])
    assert not store.covers_turns("b", [1, 2])
    assert not store.covers_turns("a", [])


def test_wrong_dimensions_are_refused(store: SQLiteVectorStore) -> None:
    with pytest.raises(ValueError, match="dimensions"):
        store.insert([[0.1, 0.2]], payloads=[payload("a", "x")])


def test_collections_share_the_file_but_not_rows(store: SQLiteVectorStore) -> None:
    entities = store.with_collection("entities")
    entities.insert([unit(1)], payloads=[payload("a", "router")], ids=["e"])
    store.insert([unit(1)], payloads=[payload("a", "router")], ids=["m"])
    assert [h.id for h in entities.search("q", unit(1), top_k=5, filters={"user_id": "a"})] == ["e"]
    assert [h.id for h in store.keyword_search("router", top_k=5, filters={"user_id": "a"})] == ["m"]
    assert set(store.list_cols()) == {"threadline", "entities"}
    entities.delete_col()
    assert store.list_cols() == ["threadline"]
    assert entities.count({"user_id": "a"}) == 0 and store.count({"user_id": "a"}) == 1


def test_forget_scope_leaves_no_text_in_the_file(tmp_path: Path) -> None:
    store = SQLiteVectorStore(tmp_path / "v.sqlite3")
    store.insert(
        [unit(1)], payloads=[payload("a", "zqforgetmecanary lives here", turn_ids=[1])], ids=["gone"]
    )
    store.insert([unit(2)], payloads=[payload("b", "zqkeepmecanary stays")], ids=["kept"])
    store.update("gone", payload=payload("a", "zqforgetmecanary lives here still", turn_ids=[1]))
    assert store.forget_scope({"user_id": "a"}) == ["gone"]
    with pytest.raises(ValueError, match="user_id"):
        store.forget_scope({})
    assert store.list({"user_id": "a"}) == [] and not store.covers_turns("a", [1])
    store.close()
    assert files_containing(tmp_path, "zqforgetmecanary") == []
    assert files_containing(tmp_path, "zqkeepmecanary") != []


@pytest.mark.parametrize("layout", [18, 20, 34])  # layouts where rebalancing left a copy before the rewrite
def test_forget_scope_leaves_no_copy_after_pages_were_rebalanced(tmp_path: Path, layout: int) -> None:
    """``secure_delete`` zeroes a deleted row, but deleting rows rebalances pages, and a row moved between
    pages leaves its old bytes in the free gap of a page still in use (the CI run of 2026-12-07 found one
    in the memory file). Ana's memories interleaved with Tom's, of varied lengths: none left after forget."""
    store = SQLiteVectorStore(tmp_path / "v.sqlite3")
    rng = random.Random(layout)
    for n in range(40):
        words = " router" * rng.randint(5, 150)
        ana = rng.random() < 0.5
        user, text = ("a", f"zqx7canary4forget {n}{words}") if ana else ("b", f"Tom {n}{words}")
        store.insert([unit(n)], payloads=[payload(user, text)], ids=[f"m{n}"])
    kept = store.count({"user_id": "b"})
    store.forget_scope({"user_id": "a"})
    assert store.count({"user_id": "b"}) == kept and store.count({"user_id": "a"}) == 0
    store.close()
    assert files_containing(tmp_path, "zqx7canary4forget") == []


def test_opening_waits_for_another_process_holding_the_file_past_the_busy_timeout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process upgrading the file (``_upgrade``: about 9 s per 100,000 memories) holds its write
    lock past the busy timeout: opening waits for it (``OPEN_BUSY_TIMEOUT_MS``) instead of failing with
    "database is locked". Scaled down: a 0.2 s busy timeout, the lock held 1 s by another connection."""
    path = tmp_path / "v.sqlite3"
    SQLiteVectorStore(path).close()
    monkeypatch.setattr(sqlite_file, "BUSY_TIMEOUT_MS", 200)
    monkeypatch.setattr(sqlite_file, "OPEN_BUSY_TIMEOUT_MS", 20_000)
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")  # as an upgrade in progress holds it
    release = threading.Timer(1.0, lambda: other.execute("COMMIT"))
    release.start()
    try:
        store = SQLiteVectorStore(path)
    finally:
        release.join()
        other.close()
    store.insert([unit(1)], payloads=[payload("a", "opened after the wait")], ids=["m1"])
    assert [hit.id for hit in store.list({"user_id": "a"})] == ["m1"]
    store.close()


def test_a_checkpoint_a_reader_holds_up_is_reported_and_the_next_completes_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A reader of another process on an older snapshot keeps the WAL from being emptied past the busy
    timeout: the checkpoint says so (a warning, no text of any memory) and the next one empties it."""
    monkeypatch.setattr(sqlite_file, "BUSY_TIMEOUT_MS", 200)
    monkeypatch.setattr(sqlite_file, "OPEN_BUSY_TIMEOUT_MS", 200)
    path = tmp_path / "v.sqlite3"
    store = SQLiteVectorStore(path)
    store.insert([unit(1)], payloads=[payload("a", "zqwalcanary one")], ids=["m1"])
    reader = sqlite3.connect(path, isolation_level=None)
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM memory_vectors").fetchone()  # holds this snapshot
    store.insert([unit(2)], payloads=[payload("a", "zqwalcanary two")], ids=["m2"])
    with caplog.at_level("WARNING", logger="core.memory.sqlite_file"):
        store.compact()
    assert "checkpoint stayed busy" in caplog.text and "zqwalcanary" not in caplog.text
    assert Path(f"{path}-wal").stat().st_size > 0
    reader.execute("COMMIT")
    reader.close()
    caplog.clear()
    with caplog.at_level("WARNING", logger="core.memory.sqlite_file"):
        store.compact()
    assert caplog.text == "" and Path(f"{path}-wal").stat().st_size == 0
    store.close()


def test_two_connections_on_one_file(tmp_path: Path) -> None:
    first = SQLiteVectorStore(tmp_path / "v.sqlite3")
    second = SQLiteVectorStore(tmp_path / "v.sqlite3")
    try:
        first.insert([unit(1)], payloads=[payload("a", "from first")], ids=["1"])
        second.insert([unit(2)], payloads=[payload("a", "from second")], ids=["2"])
        assert {h.id for h in first.list({"user_id": "a"})} == {"1", "2"}
        assert [h.id for h in second.keyword_search("first", top_k=5, filters={"user_id": "a"})] == ["1"]
        second.delete("1")
        assert first.get("1") is None
    finally:
        first.close()
        second.close()


WRITER = textwrap.dedent(
    """
    import sys
    import numpy as np
    from core.memory.vectors import SQLiteVectorStore

    store = SQLiteVectorStore(sys.argv[1])
    rng = np.random.default_rng(7)
    for i in range(int(sys.argv[2])):
        store.insert([rng.standard_normal(384)], payloads=[{"user_id": "shared", "data": f"child row {i}"}])
    store.close()
    """
)


@pytest.mark.slow
def test_two_processes_write_one_file_at_once(tmp_path: Path) -> None:
    path = tmp_path / "v.sqlite3"
    rows = 150
    store = SQLiteVectorStore(path)
    child = subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(rows)], cwd=ROOT)
    try:
        for i in range(rows):
            store.insert([unit(i)], payloads=[{"user_id": "shared", "data": f"parent row {i}"}])
        assert child.wait(timeout=120) == 0
        assert store.count({"user_id": "shared"}) == 2 * rows
        assert len(store.keyword_search("child", top_k=1000, filters={"user_id": "shared"})) == rows
    finally:
        if child.poll() is None:
            child.kill()
        store.close()
