"""The SQLite memory index (``core.memory.vectors``) against the ``MemoryIndex`` conformance suite."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from core.memory.vectors import SQLiteVectorStore
from tests.core.memory.conformance import DIMS, IndexConformance, Subject
from tests.core.memory.helpers import files_containing


class TestSQLiteIndex(IndexConformance):
    @pytest.fixture
    def subject(self, tmp_path: Path) -> Iterator[Subject]:
        folder = tmp_path / "index"
        store = SQLiteVectorStore(folder / "v.sqlite3", collection_name="memories", embedding_model_dims=DIMS)
        yield Subject(index=store, holds_text=lambda needle: bool(files_containing(folder, needle)))
        store.close()
