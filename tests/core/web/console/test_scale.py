"""The console on either store, and in every role: on PostgreSQL the sign-in limits are shared by every
process (two apps on one database count together); a process of role ``worker`` serves the console too."""

from __future__ import annotations

from contextlib import AsyncExitStack
from pathlib import Path

import httpx
from pydantic import SecretStr

from core.settings import ConsoleSettings
from core.store.operators import Operators
from tests.apphost import app_settings, serving
from tests.core.web.console.conftest import ADMIN_TOKEN, FAST, PASSWORD, Browser, services


async def test_sign_in_limits_are_shared_by_the_processes_of_one_database(
    database_url: str, tmp_path: Path
) -> None:
    postgres = database_url.startswith("postgresql")
    async with AsyncExitStack() as stack:
        apps = []
        for n in range(2 if postgres else 1):  # SQLite: one serving process per data dir
            settings = app_settings(
                tmp_path / f"data{n}",
                admin_token=SecretStr(ADMIN_TOKEN),
                database_url=database_url,
                console=ConsoleSettings(login_attempts=3),
            )
            apps.append(await stack.enter_async_context(serving(settings)))
        await Operators(services(apps[0]).db, hasher=FAST).add("ada", "admin", PASSWORD)
        first = Browser(await stack.enter_async_context(httpx.AsyncClient(base_url=apps[0].url)))
        for _ in range(3):
            assert (await first.sign_in("ada", "wrong password")).status_code == 401
        last = Browser(await stack.enter_async_context(httpx.AsyncClient(base_url=apps[-1].url)))
        assert (await last.sign_in("ada")).status_code == 429
        other = Browser(await stack.enter_async_context(httpx.AsyncClient(base_url=apps[-1].url)))
        assert (await other.sign_in("ada")).status_code == 429  # the name's attempts are used up


async def test_a_worker_process_serves_the_console(tmp_path: Path) -> None:
    settings = app_settings(tmp_path / "data", admin_token=SecretStr(ADMIN_TOKEN))
    async with serving(settings, role="worker") as served:
        await Operators(services(served).db, hasher=FAST).add("ada", "agent", PASSWORD)
        async with httpx.AsyncClient(base_url=served.url) as client:
            signed = Browser(client)
            assert (await signed.sign_in("ada")).status_code == 303
            assert (await signed.get("/console/")).status_code == 200
