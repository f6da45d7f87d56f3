"""``threadline_dead_letters`` is the database's count, not this process's (issue 13).

Another process (here: its own engine on the same database) fails a reply for good, then an admin's
retry through yet another puts it back: each scrape of this process shows what the database holds.
Counted at scrape time, so every process reports the same total (aggregate with max, not sum).
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import update

from core.store.db import Database
from core.store.models import OutboxRow
from tests.apphost import Served, app_settings, serving


async def dead_letter_gauge(served: Served) -> float:
    text = (await served.client.get("/metrics")).text
    [line] = [ln for ln in text.splitlines() if ln.startswith("threadline_dead_letters ")]
    return float(line.split()[1])


async def test_the_gauge_counts_dead_letters_other_processes_made(database_url: str, tmp_path: Path) -> None:
    settings = app_settings(tmp_path / "data", database_url=database_url)
    async with serving(settings) as served:
        assert await dead_letter_gauge(served) == 0
        other = await Database.open(database_url, run_migrations=False)  # another host's process
        try:
            async with other.session() as session:
                session.add_all(
                    OutboxRow(
                        idempotency_key=f"elsewhere-{n}",
                        channel="telegram",
                        recipient="telegram:4242",
                        text="a reply another host could not deliver",
                        status="failed",
                        attempts=5,
                        last_error="permanent: Forbidden",
                    )
                    for n in range(3)
                )
            assert await dead_letter_gauge(served) == 3
            async with other.session() as session:  # one went out after all, retried on that host
                await session.execute(
                    update(OutboxRow).where(OutboxRow.idempotency_key == "elsewhere-0").values(status="sent")
                )
            assert await dead_letter_gauge(served) == 2
        finally:
            await other.aclose()
