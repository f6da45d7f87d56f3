"""Looking for a planted string everywhere a hub keeps data: every file under a folder, every table."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import inspect, text

from core.pipeline.hub import Hub


def files_holding(folder: Path, needle: bytes) -> list[str]:
    """The files under ``folder`` (relative paths, sorted) whose bytes contain ``needle``."""
    return sorted(
        str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() and needle in p.read_bytes()
    )


async def tables_holding(hub: Hub, needle: str) -> list[str]:
    """Tables with a row whose text (any column, cast to text) contains ``needle``."""
    async with hub.db.engine.connect() as conn:
        tables = await conn.run_sync(lambda c: inspect(c).get_table_names())
        found = []
        for table in tables:
            rows = (await conn.execute(text(f'SELECT * FROM "{table}"'))).fetchall()  # noqa: S608
            if any(needle in str(value) for row in rows for value in row):
                found.append(table)
    return found
