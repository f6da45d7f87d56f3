"""The PostgreSQL memory index's URL handling (no database needed): the store's SQLAlchemy URL as libpq
reads it, and the password never shown."""

from __future__ import annotations

import logging

import pytest
from psycopg_pool import PoolTimeout

from core.memory import pg_connect
from core.memory.pg_connect import libpq_dsn
from core.memory.pg_index import PostgresIndex


@pytest.mark.parametrize(
    ("url", "dsn"),
    [
        ("postgresql+asyncpg://127.0.0.1:5432/test", "postgresql://127.0.0.1:5432/test"),
        (
            "postgresql+asyncpg://bot:p%40ss%2Fw0rd@db.internal:5433/threadline",
            "postgresql://bot:p%40ss%2Fw0rd@db.internal:5433/threadline",
        ),
        ("postgresql+asyncpg://db/threadline?ssl=require", "postgresql://db/threadline?sslmode=require"),
        ("postgresql+asyncpg://db/threadline?ssl=true", "postgresql://db/threadline?sslmode=require"),
        (
            "postgresql+asyncpg://db/t?sslmode=verify-full&ssl=require&sslrootcert=/etc/ca.pem",
            "postgresql://db/t?sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem",
        ),
        (
            "postgresql://db/threadline?application_name=hub",
            "postgresql://db/threadline?application_name=hub",
        ),
    ],
)
def test_the_store_url_as_libpq_reads_it(url: str, dsn: str) -> None:
    assert libpq_dsn(url) == dsn


def test_parameters_libpq_does_not_know_are_dropped_by_name_only(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="core.memory.pg_connect"):
        dsn = libpq_dsn(
            "postgresql+asyncpg://u:s3cret@db/t?prepared_statement_cache_size=0&command_timeout=9"
        )
    assert dsn == "postgresql://u:s3cret@db/t"
    assert "command_timeout" in caplog.text and "prepared_statement_cache_size" in caplog.text
    assert "s3cret" not in caplog.text


def test_a_url_of_another_database_is_refused() -> None:
    with pytest.raises(ValueError, match="PostgreSQL"):
        libpq_dsn("sqlite+aiosqlite:///tmp/x.db")


def test_an_unreachable_database_fails_without_showing_the_password(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pg_connect, "OPEN_TIMEOUT", 1.0)
    with caplog.at_level(logging.DEBUG), pytest.raises(PoolTimeout) as raised:
        PostgresIndex("postgresql+asyncpg://u:zqs3cretpw@127.0.0.1:9/t?connect_timeout=1")
    assert "zqs3cretpw" not in str(raised.value) and "zqs3cretpw" not in caplog.text
