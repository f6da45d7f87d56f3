"""One row of the PostgreSQL memory index across its tables: written with its keyword and turn index,
and moved between users (``core.memory.pg_index`` calls these inside its transactions).

A row is ``memory_index_rows`` (scope columns, vector, ``jsonb`` payload, ``terms`` and ``words`` of its
text) plus its ``memory_index_turns`` (``core.memory.pg_schema``). :func:`write_row` keeps the two in step;
:func:`move_rows` changes the user of rows in both, leaving ids, vectors and the rest of the payload.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from core.memory import pg_keywords
from core.memory.filters import SCOPE_KEYS
from core.memory.pg_vectors import VectorCodec
from core.memory.sqlite_keywords import body
from core.memory.time_words import with_time_flag

# A replaced row (same collection and id) gets a new rid, as the SQLite index's delete-and-insert does:
# the rid is the order written, which breaks ties of ``created_at``.
_UPSERT = sql.SQL(
    "INSERT INTO memory_index_rows"
    " (collection, id, user_id, agent_id, run_id, created_at, vector, payload, terms, words)"
    " VALUES (%(collection)s, %(id)s, %(user_id)s, %(agent_id)s, %(run_id)s, %(created_at)s, {vector},"
    " %(payload)s, %(terms)s::tsvector, %(words)s)"
    " ON CONFLICT (collection, id) DO UPDATE SET rid = DEFAULT, user_id = EXCLUDED.user_id,"
    " agent_id = EXCLUDED.agent_id, run_id = EXCLUDED.run_id, created_at = EXCLUDED.created_at,"
    " vector = EXCLUDED.vector, payload = EXCLUDED.payload, terms = EXCLUDED.terms, words = EXCLUDED.words"
    " RETURNING rid"
)


def _dumps(value: Any) -> str:
    return json.dumps(value, default=str)  # as the SQLite index writes a payload


def _scope_value(payload: Mapping[str, Any], key: str) -> str | None:
    value = payload.get(key)
    return None if value in (None, "") else str(value)


def turn_ids(payload: Mapping[str, Any]) -> list[int]:
    """The payload's ``turn_ids`` that are integers."""
    raw = payload.get("turn_ids")
    if not isinstance(raw, list):
        return []
    return [int(t) for t in raw if isinstance(t, int) and not isinstance(t, bool)]


def write_row(
    conn: psycopg.Connection[Any],
    collection: str,
    vectors: VectorCodec,
    vector_id: str,
    vector: Any,
    payload: Mapping[str, Any],
) -> None:
    """Store one row (``vector`` as ``vectors.param`` made it), replacing the row of the same id, with its
    keyword index (``terms``, ``words``) and its turn index; the payload gets whether its text says when
    (``time_words.with_time_flag``)."""
    payload = with_time_flag(payload)
    created_at = payload.get("created_at")
    scope = {key: _scope_value(payload, key) for key in SCOPE_KEYS}
    terms, words = pg_keywords.terms_of(body(payload))
    params = {
        "collection": collection,
        "id": vector_id,
        **scope,
        "created_at": None if created_at is None else str(created_at),
        "vector": vector,
        "payload": Jsonb(dict(payload), dumps=_dumps),
        "terms": terms,
        "words": words + sum(value is not None for value in scope.values()),  # FTS5 counts scope tokens
    }
    statement = _UPSERT.format(vector=vectors.write(sql.Placeholder("vector")))
    row = conn.execute(statement, params).fetchone()
    if row is None:  # pragma: no cover - an INSERT ... RETURNING always returns its row
        raise psycopg.DatabaseError("insert returned no row")
    rid = int(row[0])
    conn.execute("DELETE FROM memory_index_turns WHERE rid = %s", (rid,))
    user_id = _scope_value(payload, "user_id")
    turns = turn_ids(payload)
    if user_id is not None and turns:
        conn.execute(
            "INSERT INTO memory_index_turns (collection, user_id, turn_id, rid)"
            " SELECT %s, %s, t, %s FROM unnest(%s::bigint[]) AS t ON CONFLICT DO NOTHING",
            (collection, user_id, rid, turns),
        )


def move_rows(
    conn: psycopg.Connection[Any],
    collection: str,
    from_user: str,
    to_user: str,
    handles: Collection[str] | None,
) -> list[tuple[int, str]]:
    """Give ``from_user``'s rows whose payload's ``source_handle`` is one of ``handles`` (every row when
    None) to ``to_user``: the ``user_id`` column, the payload's ``user_id`` and the turn index. Returns
    ``(rid, id)`` of the rows moved. Rows another transaction is moving are waited for, then re-checked."""
    moved = conn.execute(
        "UPDATE memory_index_rows"
        " SET user_id = %(to)s, payload = jsonb_set(payload, '{user_id}', to_jsonb(%(to)s::text))"
        " WHERE collection = %(collection)s AND user_id = %(from)s"
        " AND (%(every)s OR (jsonb_typeof(payload -> 'source_handle') = 'string'"
        " AND payload ->> 'source_handle' = ANY(%(handles)s::text[])))"
        " RETURNING rid, id",
        {
            "to": to_user,
            "from": from_user,
            "collection": collection,
            "every": handles is None,
            "handles": sorted(handles or ()),
        },
    ).fetchall()
    rids = [int(r[0]) for r in moved]
    if rids:
        conn.execute("UPDATE memory_index_turns SET user_id = %s WHERE rid = ANY(%s)", (to_user, rids))
    return [(int(rid), str(vector_id)) for rid, vector_id in moved]
