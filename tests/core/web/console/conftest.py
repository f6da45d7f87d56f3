"""The console through the real app over HTTP: operators made in the store, a browser-like client per
operator (its own cookie jar), and rows written straight into the store for what a page should show."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from argon2 import PasswordHasher
from pydantic import SecretStr
from sqlalchemy import func, select

from core.compose import Services
from core.messages import Address
from core.settings import ConsoleSettings
from core.store.models import Base, InboxRow, Turn, utcnow
from core.store.operators import Operators
from tests.apphost import Served, app_settings, serving

ADMIN_TOKEN = "console-admin-token-0123456789"
PASSWORD = "correct horse battery"
# cheap hashes keep the tests fast; the store's own default (argon2-cffi's RFC 9106 profile) is tested apart
FAST = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
_KEY = re.compile(r'name="key" value="([^"]+)"')


def services(served: Served) -> Services:
    svc: Services = served.app.state.admin
    return svc


def operators(served: Served) -> Operators:
    return Operators(services(served).db, hasher=FAST)


def csrf_of(html: str) -> str:
    found = _CSRF.search(html)
    assert found is not None, html[:500]
    return found.group(1)


def key_of(html: str) -> str:
    found = _KEY.search(html)
    assert found is not None
    return found.group(1)


@dataclass
class Browser:
    """One operator's client: its own cookies, and the CSRF token of the page it saw last."""

    client: httpx.AsyncClient
    csrf: str = ""

    async def get(self, path: str, **kw: Any) -> httpx.Response:
        response = await self.client.get(path, **kw)
        if response.status_code == 200 and 'name="csrf_token"' in response.text:
            self.csrf = csrf_of(response.text)
        return response

    async def post(
        self, path: str, data: dict[str, str] | None = None, *, csrf: bool = True
    ) -> httpx.Response:
        form = dict(data or {})
        if csrf:
            form.setdefault("csrf_token", self.csrf)
        return await self.client.post(path, data=form)

    async def sign_in(self, name: str, password: str = PASSWORD) -> httpx.Response:
        page = await self.get("/console/login")
        assert page.status_code == 200
        return await self.client.post(
            "/console/login", data={"name": name, "password": password, "csrf_token": csrf_of(page.text)}
        )


async def count(served: Served, table: type[Base], *where: Any) -> int:
    async with services(served).db.read() as session:
        return int(await session.scalar(select(func.count()).select_from(table).where(*where)) or 0)


async def new_customer(served: Served, address: str) -> str:
    return (await served.hub.resolver.resolve(Address.parse(address))).customer_id


async def conversation(served: Served, address: str, *lines: tuple[str, str]) -> str:
    """A customer on ``address`` who wrote (and was answered) as ``lines`` say: (role, text) turns, with a
    handled private inbox row to reply to."""
    customer_id = await new_customer(served, address)
    parsed = Address.parse(address)
    async with services(served).db.session() as session:
        row = InboxRow(
            channel=parsed.channel,
            provider_message_id=f"m-{address}-{len(lines)}",
            sender=address,
            text=lines[0][1] if lines else "hello",
            reply_target={"chat_id": parsed.handle},
            received_at=utcnow(),
            customer_id=customer_id,
            status="done",
            private=True,
            reply_policy="answer",
            sender_assurance="platform_attested",
        )
        session.add(row)
        await session.flush()
        for role, text in lines:
            session.add(
                Turn(
                    customer_id=customer_id,
                    channel=parsed.channel,
                    address=address,
                    role=role,
                    text=text,
                    inbox_id=row.id if role == "customer" else None,
                )
            )
    return customer_id


Factory = Callable[..., Awaitable[Browser]]


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[Served]:
    settings = app_settings(
        tmp_path / "data", admin_token=SecretStr(ADMIN_TOKEN), console=ConsoleSettings(login_attempts=5)
    )
    async with serving(settings) as app:
        yield app


@pytest.fixture
async def browser(served: Served) -> AsyncIterator[Callable[[], Browser]]:
    """Makes a fresh client (no cookies) for the served app."""
    clients: list[httpx.AsyncClient] = []

    def make() -> Browser:
        client = httpx.AsyncClient(base_url=served.url, timeout=30)
        clients.append(client)
        return Browser(client)

    yield make
    for client in clients:
        await client.aclose()


@pytest.fixture
async def admin(served: Served, browser: Callable[[], Browser]) -> Browser:
    await operators(served).add("ada", "admin", PASSWORD)
    signed = browser()
    assert (await signed.sign_in("ada")).status_code == 303
    await signed.get("/console/")
    return signed


@pytest.fixture
async def agent(served: Served, browser: Callable[[], Browser]) -> Browser:
    await operators(served).add("ben", "agent", PASSWORD)
    signed = browser()
    assert (await signed.sign_in("ben")).status_code == 303
    await signed.get("/console/")
    return signed
