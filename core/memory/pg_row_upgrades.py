"""The one-time upgrades of the PostgreSQL memory index that read every stored row again, run when an
index opens (``core.memory.pg_index``), after the schema (``core.memory.pg_schema.ensure``) is in place.

- ``time_flag_3``: every row has the time flag the rule of ``core.memory.time_words`` gives its text now
  ("time_flag" for the English rule, "time_flag_2" since it reads five more languages, "time_flag_3"
  since French "hier" needs a French text and English month abbreviations a date).
- ``lexemes_<VERSION>``: every row's ``terms`` and ``words`` are those ``core.memory.lexemes`` makes
  now (until 2026-12-07 PostgreSQL stemmed them itself, in English).

How they run, so that a live database keeps answering while one does:

- **Batch by batch, each its own transaction** (:data:`BATCH` rows). A row an upgrade changes gets a new
  rid, as any write does (so the scopes other processes keep, ``core.memory.pg_scopes``, read it again),
  and the triggers that count each customer's rows lock that customer's counter until the batch commits:
  a writer of any process waits for one batch at most, never for the whole table (in one transaction, a
  million rows held every customer's writes for about a minute and a half, and a writer holding a row a
  later batch needed deadlocked with it).
- **Once done, marked** in ``memory_index_upgrades`` (``pg_schema.mark_upgrade_done``). A process killed
  midway leaves what it committed, and the next open does the rest: each upgrade reads the rows again and
  writes only those that differ from what the rule gives.
- **One process at a time**: the one that takes :data:`UPGRADE_LOCK` (a session-level advisory lock,
  tried, not waited for) files the rows; one that finds it taken opens at once and recalls from rows as
  they are (the old lexemes of a row not yet filed match fewer of a question's words, nothing worse).
- Rows written meanwhile by this release are written under the new rules already (rids above the last
  one read at the start). A process of the release before, left running beside (a rolling deploy),
  still writes the old way: those rows are filed again by the next upgrade, not by this one.
"""

from __future__ import annotations

import logging
from typing import Any

import psycopg

from core.memory import lexemes, pg_keywords
from core.memory.pg_schema import mark_upgrade_done, upgrade_done
from core.memory.sqlite_keywords import body
from core.memory.time_words import MENTIONS_TIME, says_when

log = logging.getLogger(__name__)

# pg_try_advisory_lock key of the row upgrades: any constant the store never uses ("tlmemupg" as 8 bytes)
UPGRADE_LOCK = int.from_bytes(b"tlmemupg", "big")
BATCH = 500
TIME_FLAG = "time_flag_3"
LEXEMES = f"lexemes_{lexemes.VERSION}"


def run(conn: psycopg.Connection[Any]) -> None:
    """Run the row upgrades not done yet in this database (see the module); ``conn`` has no transaction
    open, and is left with none."""
    with conn.transaction():
        pending = [name for name in (TIME_FLAG, LEXEMES) if not upgrade_done(conn, name)]
    if not pending:
        return
    with conn.transaction():
        row = conn.execute("SELECT pg_try_advisory_lock(%s)", (UPGRADE_LOCK,)).fetchone()
    if not (row and row[0]):
        log.info("memory index: another process is upgrading the stored rows; opening beside it")
        return
    try:
        if TIME_FLAG in pending:
            _flag_times(conn)
        if LEXEMES in pending:
            _file_lexemes(conn)
    finally:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_unlock(%s)", (UPGRADE_LOCK,))


def _last_rid(conn: psycopg.Connection[Any], name: str) -> int | None:
    """The last rid to read for the upgrade ``name`` (rows given a new rid by it are not read again); None
    when another process did it meanwhile."""
    with conn.transaction():
        if upgrade_done(conn, name):
            return None
        row = conn.execute("SELECT max(rid) FROM memory_index_rows").fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def _flag_times(conn: psycopg.Connection[Any]) -> None:
    """Give every row the time flag the rule of ``time_words`` gives its text now (rows stored before the
    flag, or flagged under an earlier rule, which also flagged some texts the rule no longer does)."""
    end = _last_rid(conn, TIME_FLAG)
    if end is None:
        return
    last = flagged = unflagged = 0
    while True:
        with conn.transaction():
            batch = conn.execute(
                "SELECT rid, payload ->> 'data', coalesce(payload -> %s = 'true'::jsonb, false)"
                " FROM memory_index_rows WHERE rid > %s AND rid <= %s ORDER BY rid LIMIT %s",
                (MENTIONS_TIME, last, end, BATCH),
            ).fetchall()
            if not batch:
                mark_upgrade_done(conn, TIME_FLAG)
                break
            rule = [
                (int(rid), bool(was), isinstance(text, str) and says_when(text)) for rid, text, was in batch
            ]
            dated = [rid for rid, was, now in rule if now and not was]
            undated = [rid for rid, was, now in rule if was and not now]
            if dated:
                conn.execute(
                    "UPDATE memory_index_rows SET payload = payload || jsonb_build_object(%s::text, true),"
                    " rid = DEFAULT WHERE rid = ANY(%s)",
                    (MENTIONS_TIME, dated),
                )
            if undated:
                conn.execute(
                    "UPDATE memory_index_rows SET payload = payload - %s::text, rid = DEFAULT"
                    " WHERE rid = ANY(%s)",
                    (MENTIONS_TIME, undated),
                )
        flagged, unflagged = flagged + len(dated), unflagged + len(undated)
        last = int(batch[-1][0])
    if flagged or unflagged:
        log.info("memory index: %d memories flagged as saying when, %d no longer", flagged, unflagged)


def _file_lexemes(conn: psycopg.Connection[Any]) -> None:
    """File every row under the lexemes of ``core.memory.lexemes`` (``terms`` and ``words`` made again
    from its text); a row whose terms are already those is left as it is."""
    end = _last_rid(conn, LEXEMES)
    if end is None:
        return
    last = count = 0
    while True:
        with conn.transaction():
            batch = conn.execute(
                "SELECT rid, payload -> 'text_lemmatized', payload -> 'data',"
                " (user_id IS NOT NULL)::int + (agent_id IS NOT NULL)::int + (run_id IS NOT NULL)::int"
                " FROM memory_index_rows WHERE rid > %s AND rid <= %s ORDER BY rid LIMIT %s",
                (last, end, BATCH),
            ).fetchall()
            if not batch:
                mark_upgrade_done(conn, LEXEMES)
                break
            rids, literals, lengths = [], [], []
            for rid, lemmatized, data, scope_words in batch:
                literal, words = pg_keywords.terms_of(body({"text_lemmatized": lemmatized, "data": data}))
                rids.append(int(rid))
                literals.append(literal)
                lengths.append(words + int(scope_words))
            changed = conn.execute(
                "UPDATE memory_index_rows AS r SET terms = u.terms::tsvector, words = u.words, rid = DEFAULT"
                " FROM unnest(%s::bigint[], %s::text[], %s::int[]) AS u(rid, terms, words)"
                " WHERE r.rid = u.rid AND (r.terms <> u.terms::tsvector OR r.words <> u.words)",
                (rids, literals, lengths),
            )
        count += changed.rowcount
        last = rids[-1]
    if count:
        log.info("memory index: %d memories filed again under lexemes v%d", count, lexemes.VERSION)
