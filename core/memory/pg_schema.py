"""The tables of the PostgreSQL memory index, made by the index itself when it opens.

- ``memory_index_collections``: each collection's name and dimensions.
- ``memory_index_rows``: one row per memory: ``collection``, ``id``, the scope columns ``user_id`` /
  ``agent_id`` / ``run_id`` (indexed with the collection; ``user_id``, a customer's scope, with the
  ``rid`` too, so that a recall's check of a kept scope, ``core.memory.pg_scopes``, reads the index
  alone; a database made before gets that index, in place of ``(collection, user_id)``, when opened),
  ``created_at`` (text as Mem0 writes it, in byte order like SQLite's), the vector
  (``core.memory.pg_vectors``), the ``jsonb`` payload, and the keyword index of its text: ``terms`` (a
  ``tsvector``, GIN-indexed) and ``words`` (its length as FTS5 counts it, for BM25). The keyword index
  is a column of the row, so deleting the row deletes it.
- ``memory_index_turns``: the payloads' ``turn_ids`` per user, one probe for ``covers_turns``; its rows go
  with their memory row (``ON DELETE CASCADE``).
- ``terms`` holds the lexemes ``core.memory.lexemes`` makes in Python (each word stemmed in its text's
  language, as the SQLite index files them), given as a ``tsvector`` literal (``core.memory.pg_keywords``).
  Until 2026-12-07 PostgreSQL stemmed them itself (English Snowball, the configuration
  ``memory_index_text``, left in place in a database made before); the upgrade ``lexemes_1``
  (``core.memory.pg_row_upgrades``) files every stored row again.
- ``memory_index_scopes``: per customer (``collection``, ``user_id``), ``rows``: how many rows they have,
  and ``removed``: how many have left their scope (deleted, replaced, which gives the row a new rid, or
  moved to another customer). Kept by statement-level triggers on ``memory_index_rows`` (one per kind of
  write, with transition tables; a truncate zeroes every ``rows`` and counts a removal everywhere), so
  every writer of any process keeps them, in its own transaction. A recall's check of a kept scope reads
  them, and only the rids above the ones it keeps, when nothing left the scope, and the departures below
  when rows did (``core.memory.pg_scopes``). A database made before gets them, counted from its rows,
  when opened (the upgrade ``scope_counts``). A writer holds its customer's counter locked until it
  commits: two writes to one customer's memories commit one after the other.
- ``memory_index_departures``: each row out of a customer's scope (``collection``, ``user_id``, its
  ``rid``; an update logs the rows it changed, even in place), numbered by the value of ``removed`` it
  made; the same triggers write it and keep the last :data:`DEPARTURES_KEPT` per customer. A kept scope
  whose departures since it was read are all there drops those rows and reads the ones still in the
  scope again, not every rid (``core.memory.pg_scopes``). Ids only, no text. Made by the upgrade
  ``scope_departures``.
- ``memory_index_upgrades``: the one-time upgrades that are done (``scope_counts``, ``scope_departures``,
  here; the ones that read every stored row again, ``time_flag_3`` and ``lexemes_1``, run after this
  transaction, batch by batch: ``core.memory.pg_row_upgrades``).

The ``memory_index_`` prefix keeps clear of the store's tables (``core.store.models``: ``memory_moves``,
``memory_jobs``), which share the database. Many processes may open the index at once: everything is made
with ``IF NOT EXISTS`` / after a look, in one transaction holding :data:`SCHEMA_LOCK` as a transaction-level
advisory lock, so they queue instead of racing on the catalog.
"""

from __future__ import annotations

import logging
from typing import Any

import psycopg
from psycopg import sql

from core.memory.pg_vectors import VectorCodec, codec_for

log = logging.getLogger(__name__)

# pg_advisory_xact_lock key of the schema: any constant the store never uses ("tlmemidx" as 8 bytes)
SCHEMA_LOCK = int.from_bytes(b"tlmemidx", "big")


def _tables(vector_type: sql.SQL) -> list[sql.SQL | sql.Composed]:
    return [
        sql.SQL(
            "CREATE TABLE IF NOT EXISTS memory_index_collections ("
            " name text PRIMARY KEY, dims integer NOT NULL, distance text NOT NULL)"
        ),
        sql.SQL(
            "CREATE TABLE IF NOT EXISTS memory_index_rows ("
            " rid bigserial PRIMARY KEY,"
            " collection text NOT NULL,"
            " id text NOT NULL,"
            " user_id text, agent_id text, run_id text,"
            ' created_at text COLLATE "C",'
            " vector {} NOT NULL,"
            " payload jsonb NOT NULL,"
            " terms tsvector NOT NULL,"
            " words integer NOT NULL,"
            " UNIQUE (collection, id))"
        ).format(vector_type),
        # a customer's scope, its rids in the index: a recall's check of a kept scope reads only the index
        sql.SQL(
            "CREATE INDEX IF NOT EXISTS memory_index_rows_user_rid"
            " ON memory_index_rows (collection, user_id, rid)"
        ),
        sql.SQL("DROP INDEX IF EXISTS memory_index_rows_user"),
        sql.SQL(
            "CREATE INDEX IF NOT EXISTS memory_index_rows_agent ON memory_index_rows (collection, agent_id)"
        ),
        sql.SQL("CREATE INDEX IF NOT EXISTS memory_index_rows_run ON memory_index_rows (collection, run_id)"),
        sql.SQL("CREATE INDEX IF NOT EXISTS memory_index_rows_terms ON memory_index_rows USING gin (terms)"),
        sql.SQL(
            "CREATE TABLE IF NOT EXISTS memory_index_turns ("
            " collection text NOT NULL, user_id text NOT NULL, turn_id bigint NOT NULL,"
            " rid bigint NOT NULL REFERENCES memory_index_rows (rid) ON DELETE CASCADE ON UPDATE CASCADE,"
            " PRIMARY KEY (collection, user_id, turn_id, rid))"
        ),
        sql.SQL("CREATE INDEX IF NOT EXISTS memory_index_turns_rid ON memory_index_turns (rid)"),
        # one-time upgrades of the stored rows that are done (``_flag_times``)
        sql.SQL("CREATE TABLE IF NOT EXISTS memory_index_upgrades (name text PRIMARY KEY)"),
    ]


# Each kind of write and the transition tables its trigger sees (one event per trigger: PostgreSQL allows
# transition tables only so; a truncate has none).
_COUNTED = (
    ("INSERT", "REFERENCING NEW TABLE AS new_rows"),
    ("UPDATE", "REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows"),
    ("DELETE", "REFERENCING OLD TABLE AS old_rows"),
    ("TRUNCATE", ""),
)
DEPARTURES_KEPT = 256  # the departures logged per customer (older ones are pruned)
# Rows out of the statement (``gone``: its old rows, numbered per customer in rid order) and ``{changed}``
# (rows in, +1 to ``rows``, and rows out, -1 to ``rows`` and +1 to ``removed``, per customer) added to the
# counters in one upsert, in key order: writes that touch several customers lock their counters in one
# order. Each row out is logged in ``memory_index_departures`` under the value of ``removed`` it made (a
# statement's rows out of one customer take the numbers its upsert added), and the customer's departures
# older than the last DEPARTURES_KEPT are pruned (a statement's own beyond those are never logged: the
# prune does not see them).
_COUNT_AND_LOG = """
        WITH gone AS (
            SELECT collection, user_id, rid,
                row_number() OVER (PARTITION BY collection, user_id ORDER BY rid) AS k,
                count(*) OVER (PARTITION BY collection, user_id) AS n
            FROM old_rows WHERE user_id IS NOT NULL
        ), changed AS ({changed}), counted AS (
            INSERT INTO memory_index_scopes AS s (collection, user_id, rows, removed)
            SELECT collection, user_id, sum(d), sum(g) FROM changed
            GROUP BY collection, user_id ORDER BY collection, user_id
            ON CONFLICT (collection, user_id)
            DO UPDATE SET rows = s.rows + excluded.rows, removed = s.removed + excluded.removed
            RETURNING s.collection, s.user_id, s.removed
        ), pruned AS (
            DELETE FROM memory_index_departures AS d USING counted AS c
            WHERE d.collection = c.collection AND d.user_id = c.user_id
            AND d.removed <= c.removed - {kept}
        )
        INSERT INTO memory_index_departures (collection, user_id, removed, rid)
        SELECT g.collection, g.user_id, c.removed - g.n + g.k, g.rid
        FROM gone AS g JOIN counted AS c ON c.collection = g.collection AND c.user_id = g.user_id
        WHERE g.k > g.n - {kept};"""
_ROWS_OUT = "SELECT collection, user_id, -1 AS d, 1 AS g FROM gone"
_ROWS_IN_AND_OUT = (
    "SELECT collection, user_id, 1 AS d, 0 AS g FROM new_rows WHERE user_id IS NOT NULL"
    " UNION ALL SELECT collection, user_id, -1, 1 FROM gone"
)
# Per customer: an insert counts its rows in; a delete its rows out; an update its rows out and in again,
# whatever it changed; a truncate empties every scope and the log (a kept scope reads every rid after it:
# its departures are not logged). Made of constants only.
_ON_DELETE = _COUNT_AND_LOG.format(changed=_ROWS_OUT, kept=DEPARTURES_KEPT)
_ON_UPDATE = _COUNT_AND_LOG.format(changed=_ROWS_IN_AND_OUT, kept=DEPARTURES_KEPT)
_COUNT_FUNCTION = f"""
CREATE OR REPLACE FUNCTION memory_index_count_scopes() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO memory_index_scopes AS s (collection, user_id, rows, removed)
        SELECT collection, user_id, count(*), 0 FROM new_rows WHERE user_id IS NOT NULL
        GROUP BY collection, user_id ORDER BY collection, user_id
        ON CONFLICT (collection, user_id) DO UPDATE SET rows = s.rows + excluded.rows;
    ELSIF TG_OP = 'DELETE' THEN{_ON_DELETE}
    ELSIF TG_OP = 'UPDATE' THEN{_ON_UPDATE}
    ELSE
        UPDATE memory_index_scopes SET rows = 0, removed = removed + 1;
        DELETE FROM memory_index_departures;
    END IF;
    RETURN NULL;
END
$$"""  # noqa: S608 - made of the constants above, no value from outside
_SCOPE_COUNTS = "scope_counts"  # the upgrade that made memory_index_scopes and its triggers


def upgrade_done(conn: psycopg.Connection[Any], upgrade: str) -> bool:
    """Whether the one-time ``upgrade`` is done in this database (``memory_index_upgrades``)."""
    found = conn.execute("SELECT 1 FROM memory_index_upgrades WHERE name = %s", (upgrade,)).fetchone()
    return found is not None


def mark_upgrade_done(conn: psycopg.Connection[Any], upgrade: str) -> None:
    conn.execute("INSERT INTO memory_index_upgrades (name) VALUES (%s) ON CONFLICT DO NOTHING", (upgrade,))


def _count_scopes(conn: psycopg.Connection[Any]) -> None:
    """Make ``memory_index_scopes``, filled with the rows stored so far, and the triggers that keep it,
    once per database (under the schema lock; making a trigger waits for the table's writers and holds
    new ones until this transaction commits, so nothing is counted twice or missed)."""
    if upgrade_done(conn, _SCOPE_COUNTS):
        return
    conn.execute(
        "CREATE TABLE IF NOT EXISTS memory_index_scopes ("
        " collection text NOT NULL, user_id text NOT NULL,"
        " rows bigint NOT NULL, removed bigint NOT NULL, PRIMARY KEY (collection, user_id))"
    )
    conn.execute(_COUNT_FUNCTION)
    for event, tables in _COUNTED:
        name = sql.Identifier(f"memory_index_scopes_{event.lower()}")
        conn.execute(sql.SQL("DROP TRIGGER IF EXISTS {} ON memory_index_rows").format(name))
        conn.execute(
            sql.SQL(
                "CREATE TRIGGER {} AFTER {} ON memory_index_rows {}"
                " FOR EACH STATEMENT EXECUTE FUNCTION memory_index_count_scopes()"
            ).format(name, sql.SQL(event), sql.SQL(tables))
        )
    conn.execute(
        "INSERT INTO memory_index_scopes (collection, user_id, rows, removed)"
        " SELECT collection, user_id, count(*), 0 FROM memory_index_rows WHERE user_id IS NOT NULL"
        " GROUP BY collection, user_id ON CONFLICT DO NOTHING"
    )
    mark_upgrade_done(conn, _SCOPE_COUNTS)


_SCOPE_DEPARTURES = "scope_departures"  # the upgrade that made memory_index_departures


def _log_departures(conn: psycopg.Connection[Any]) -> None:
    """Make ``memory_index_departures`` and have the counters' triggers log each row out in it, once per
    database (after ``_count_scopes``, under the schema lock). Departures before it are not logged: a
    scope kept from then reads every rid once, as before."""
    if upgrade_done(conn, _SCOPE_DEPARTURES):
        return
    conn.execute(
        "CREATE TABLE IF NOT EXISTS memory_index_departures ("
        " collection text NOT NULL, user_id text NOT NULL, removed bigint NOT NULL, rid bigint NOT NULL,"
        " PRIMARY KEY (collection, user_id, removed))"
    )
    conn.execute(_COUNT_FUNCTION)
    mark_upgrade_done(conn, _SCOPE_DEPARTURES)


def _extension(conn: psycopg.Connection[Any], name: str) -> bool:
    """True when the extension ``name`` is installed in the database, installing it if PostgreSQL has it
    and we may (in a savepoint: a refusal leaves the transaction usable)."""
    if conn.execute("SELECT 1 FROM pg_extension WHERE extname = %s", (name,)).fetchone():
        return True
    if not conn.execute("SELECT 1 FROM pg_available_extensions WHERE name = %s", (name,)).fetchone():
        return False
    try:
        with conn.transaction():
            conn.execute(sql.SQL("CREATE EXTENSION IF NOT EXISTS {}").format(sql.Identifier(name)))
    except psycopg.Error as exc:
        log.info("memory index: extension %s not installed (%s)", name, type(exc).__name__)
        return False
    return True


def _column_type(conn: psycopg.Connection[Any]) -> str | None:
    """The type of ``memory_index_rows.vector`` as PostgreSQL names it; None before the table exists."""
    row = conn.execute(
        "SELECT format_type(a.atttypid, a.atttypmod) FROM pg_attribute AS a"
        " WHERE a.attrelid = to_regclass('memory_index_rows') AND a.attname = 'vector' AND NOT a.attisdropped"
    ).fetchone()
    return None if row is None else str(row[0])


def _vector_type(conn: psycopg.Connection[Any], *, pgvector: bool) -> sql.SQL:
    """The type of the vector column: the table's when it exists, else ``vector`` when pgvector is (or can
    be) installed and wanted, else ``bytea``."""
    existing = _column_type(conn)
    if existing is not None:
        return codec_for(existing).column_type
    if pgvector and _extension(conn, "vector"):  # pgvector: only where PostgreSQL has it installed
        return codec_for("vector").column_type
    return codec_for("bytea").column_type


def ensure(conn: psycopg.Connection[Any], collection: str, dims: int, *, pgvector: bool) -> VectorCodec:
    """Make whatever of the schema is missing and register ``collection``; returns the vector codec of the
    table. ``ValueError`` when the collection exists with other dimensions."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
        vector_type = _vector_type(conn, pgvector=pgvector)
        for statement in _tables(vector_type):
            conn.execute(statement)
        conn.execute(
            "INSERT INTO memory_index_collections (name, dims, distance) VALUES (%s, %s, 'cosine')"
            " ON CONFLICT (name) DO NOTHING",
            (collection, dims),
        )
        stored = conn.execute(
            "SELECT dims FROM memory_index_collections WHERE name = %s", (collection,)
        ).fetchone()
        column = _column_type(conn)
        _count_scopes(conn)
        _log_departures(conn)
    if stored is None or int(stored[0]) != dims or column is None:
        raise ValueError(f"the collection {collection!r} was made with {stored and stored[0]} dimensions")
    return codec_for(column)
