"""Shared helpers of the memory tests: provenance values and byte-level greps of a data dir."""

from __future__ import annotations

from pathlib import Path

import psycopg
from psycopg import sql

from core.memory.pg_connect import libpq_dsn
from core.messages import MemoryCategory, Provenance


def provenance(
    *, turn_ids: tuple[int, ...] = (1,), channel: str = "sms", category: MemoryCategory = "support_history"
) -> Provenance:
    return Provenance(
        channel=channel,
        handle=f"{channel}:+15550001111",
        message_ids=tuple(f"inbox:{t}" for t in turn_ids),
        category=category,
        turn_ids=turn_ids,
    )


def files_containing(root: Path, needle: str) -> list[Path]:
    """Every file under ``root`` whose raw bytes contain ``needle`` (any case)."""
    wanted = needle.encode().lower()
    return [p for p in root.rglob("*") if p.is_file() and wanted in p.read_bytes().lower()]


def tables_holding(url: str, needle: str) -> list[str]:
    """The PostgreSQL memory index's tables (``memory_index_*`` in the database at ``url``) with a row that
    holds ``needle`` (any case), each row read whole as text: payload, vector, keyword index (``tsvector``)
    and turn index alike.

    For PostgreSQL this is the honest check of what is left: a deleted row's old version stays in the
    table's pages until vacuum reclaims it, but once the delete has committed it is invisible, and nothing
    of it can be read back through the database."""
    found: list[str] = []
    with psycopg.connect(libpq_dsn(url), autocommit=True) as conn:
        tables = conn.execute(
            "SELECT c.relname FROM pg_class AS c WHERE c.relkind = 'r' AND c.relname LIKE %s"
            " AND pg_table_is_visible(c.oid) ORDER BY c.relname",
            ("memory\\_index\\_%",),
        ).fetchall()
        for (table,) in tables:
            statement = sql.SQL(
                "SELECT EXISTS (SELECT 1 FROM {} AS r WHERE strpos(lower(r::text), lower(%s)) > 0)"
            ).format(sql.Identifier(table))
            row = conn.execute(statement, (needle,)).fetchone()
            if row and row[0]:
                found.append(str(table))
    return found
