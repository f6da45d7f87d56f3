"""Migration 0012 on a store made before it: cases the bot resolved asked for their rating with the
resolution, so they get ``rating_asked_at`` = their resolution time; open cases and a person's resolutions
(before 0012 a person could not tell the customer) were never asked. On SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime

from alembic import command
from sqlalchemy import Connection, select, text

from core.store.db import Database, alembic_config, create_engine, migrate
from core.store.models import Case

RESOLVED_AT = datetime(2026, 11, 30, 9, 15, tzinfo=UTC)


def _upgrade_to(connection: Connection, revision: str) -> None:
    cfg = alembic_config()
    cfg.attributes["connection"] = connection
    command.upgrade(cfg, revision)


async def test_bot_resolved_cases_were_asked_at_their_resolution(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(_upgrade_to, "0011")
            for number, status, resolved_by in (
                (1, "resolved", "rules"),
                (2, "resolved", "assistant"),
                (3, "resolved", "operator:bea"),
                (4, "open", None),
            ):
                await conn.execute(
                    text(
                        "INSERT INTO cases (id, customer_id, title, status, opened_at, resolved_at,"
                        " opened_by, resolved_by, turn_ids) VALUES (:id, 'cus_1', 't', :status, :opened,"
                        " :resolved, 'rules', :by, '[]')"
                    ),
                    {
                        "id": number,
                        "status": status,
                        "opened": RESOLVED_AT,
                        "resolved": RESOLVED_AT if status == "resolved" else None,
                        "by": resolved_by,
                    },
                )
        assert await migrate(engine) == ("0011", "0012")
    finally:
        await engine.dispose()
    db = await Database.open(database_url)
    try:
        async with db.read() as session:
            asked = {row.id: row.rating_asked_at for row in await session.scalars(select(Case))}
        assert asked == {1: RESOLVED_AT, 2: RESOLVED_AT, 3: None, 4: None}
    finally:
        await db.aclose()
