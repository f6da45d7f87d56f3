"""The PostgreSQL memory index (``core.memory.pg_index``) against the ``MemoryIndex`` conformance suite.

Each test gets a fresh database on the local PostgreSQL (``database_url`` of ``tests/conftest.py``):
skipped with the reason where none answers, a failure under ``CI=true``. The raw storage looked in is
every row of the index's tables read as text (``helpers.tables_holding`` says why that is the honest check).
"""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest

from core.memory import pg_schema
from core.memory.pg_connect import libpq_dsn
from core.memory.pg_index import PostgresIndex
from tests.core.memory.conformance import DIMS, IndexConformance, Subject
from tests.core.memory.helpers import tables_holding


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
class TestPostgresIndex(IndexConformance):
    @pytest.fixture
    def subject(self, database_url: str) -> Iterator[Subject]:
        index = PostgresIndex(database_url, collection_name="memories", embedding_model_dims=DIMS)
        yield Subject(index=index, holds_text=lambda needle: bool(tables_holding(database_url, needle)))
        index.close()


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
class TestPostgresIndexOnAVectorColumn(IndexConformance):
    """The pgvector branch (``pg_vectors.PgvectorVectors``) where pgvector is not installed: a domain
    ``vector`` over ``real[]`` stands in for its type, with the same casts to and from ``real[]``, and the
    schema is told the extension is there. What it cannot check is pgvector's own type."""

    @pytest.fixture
    def subject(self, database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Subject]:
        with psycopg.connect(libpq_dsn(database_url), autocommit=True) as conn:
            conn.execute("CREATE DOMAIN vector AS real[]")
        real = pg_schema._extension
        monkeypatch.setattr(pg_schema, "_extension", lambda conn, name: name == "vector" or real(conn, name))
        index = PostgresIndex(database_url, collection_name="memories", embedding_model_dims=DIMS)
        assert repr(index) == "PostgresIndex(collection='memories', vectors='vector')"
        yield Subject(index=index, holds_text=lambda needle: bool(tables_holding(database_url, needle)))
        index.close()
