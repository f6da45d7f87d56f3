"""Which rows of ``memory_index_rows`` a read of the PostgreSQL index (``core.memory.pg_index``) may see.

A read names its scope (``core.memory.filters.scope_of``: a ``user_id``, ``agent_id`` or ``run_id``
equality) or gets nothing: :func:`scope_where` is the scope's ``WHERE`` clause on the indexed scope
columns, with named parameters; Mem0's other filters (``filters.beyond_scope``) are checked in Python
against each row's payload (:func:`scope_rows`), so a read costs what the customer has.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import psycopg
from psycopg import sql

from core.memory.filters import beyond_scope, matches, scope_of

log = logging.getLogger(__name__)

Where = tuple[sql.Composed, dict[str, Any]]


def scope_where(collection: str, filters: Mapping[str, Any] | None) -> Where | None:
    """The WHERE clause (named parameters) of the filters' scope in ``collection``; None without a scope."""
    scope = scope_of(filters)
    if not scope:
        return None
    clauses = [sql.SQL("collection = %(collection)s")] + [
        sql.SQL("{} = {}").format(sql.Identifier(key), sql.Placeholder(key)) for key in scope
    ]
    return sql.SQL(" AND ").join(clauses), {"collection": collection, **scope}


def scope_rows(
    conn: psycopg.Connection[Any],
    collection: str,
    columns: sql.Composable,
    filters: Mapping[str, Any] | None,
    what: str,
) -> list[Any]:
    """``columns`` of the scope's rows in the order stored, Mem0's other filters applied (the payload is
    then read as one more, last, column). Binary: vectors arrive as raw bytes. ``what`` names the read
    in the warning logged when it has no scope (and gets nothing)."""
    where = scope_where(collection, filters)
    if where is None:
        log.warning("%s without a user_id/agent_id/run_id refused", what)
        return []
    extra = beyond_scope(filters)
    selected = sql.SQL("{}, payload").format(columns) if extra else columns
    statement = sql.SQL("SELECT {} FROM memory_index_rows WHERE {} ORDER BY rid").format(selected, where[0])
    with conn.cursor(binary=True) as cursor:
        rows = cursor.execute(statement, where[1]).fetchall()
    return [r for r in rows if matches(r[-1], extra)] if extra else rows
