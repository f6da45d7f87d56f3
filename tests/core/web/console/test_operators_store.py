"""``core.store.operators``: accounts with argon2id hashes, sign-in checks, sessions kept as token hashes."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from sqlalchemy import select

from core.errors import Conflict, NotFound
from core.store.db import Database
from core.store.models import Operator, OperatorSession, utcnow
from core.store.operators import Operators
from tests.core.web.console.conftest import FAST, PASSWORD


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = await Database.open(f"sqlite+aiosqlite:///{tmp_path / 'store.db'}")
    yield database
    await database.aclose()


async def test_passwords_are_argon2id_hashes_and_verify_only_for_the_right_password(db: Database) -> None:
    store = Operators(db)  # the default hasher
    added = await store.add("ada", "admin", PASSWORD)
    assert (added.name, added.role, added.active, added.actor) == ("ada", "admin", True, "operator:ada")
    async with db.read() as session:
        [row] = list(await session.scalars(select(Operator)))
    assert row.password_hash.startswith("$argon2id$") and PASSWORD not in row.password_hash
    assert (await store.verify("ada", PASSWORD)) == added
    assert await store.verify("ada", "wrong password") is None
    assert await store.verify("nobody", PASSWORD) is None
    assert await store.verify("bad name!", PASSWORD) is None
    assert PASSWORD not in repr(store)


async def test_bad_names_roles_and_passwords_are_refused_and_names_are_unique(db: Database) -> None:
    store = Operators(db, hasher=FAST)
    await store.add("ada", "agent", PASSWORD)
    with pytest.raises(Conflict):
        await store.add("ada", "admin", PASSWORD)
    for name, role, password, refusal in (
        ("a b", "agent", PASSWORD, "operator name"),
        ("x" * 65, "agent", PASSWORD, "operator name"),
        ("", "agent", PASSWORD, "operator name"),
        ("bo", "root", PASSWORD, "the role must be one of admin, agent"),
        ("bo", "agent", "short", "at least 8 characters"),
    ):
        with pytest.raises(ValueError, match=refusal):
            await store.add(name, role, password)
    assert [o.name for o in await store.list()] == ["ada"]


async def test_an_unknown_name_costs_a_hash_too(db: Database) -> None:
    """The dummy verify: an unknown name runs one argon2 verify, as a known one does."""
    calls: list[str] = []

    class Counting(PasswordHasher):
        def verify(self, hash: str | bytes, password: str | bytes) -> bool:
            calls.append("verify")
            return super().verify(hash, password)

    store = Operators(db, hasher=Counting(time_cost=1, memory_cost=8, parallelism=1))
    await store.add("ada", "agent", PASSWORD)
    assert await store.verify("nobody", PASSWORD) is None
    assert await store.verify("ada", "wrong password") is None
    assert calls == ["verify", "verify"]


async def test_sessions_keep_only_the_tokens_hash_and_end_when_they_should(db: Database) -> None:
    now = [utcnow()]

    def clock() -> datetime:
        return now[0]

    store = Operators(db, hasher=FAST, session_hours=2, clock=clock)
    ada = await store.add("ada", "admin", PASSWORD)
    made = await store.create_session(ada)
    assert made.token not in repr(made)
    async with db.read() as session:
        [row] = list(await session.scalars(select(OperatorSession)))
    assert row.id == hashlib.sha256(made.token.encode()).hexdigest()
    assert row.expires_at == now[0] + timedelta(hours=2)
    found = await store.lookup(made.token)
    assert found is not None and found.operator == ada and found.csrf_matches(row.csrf)
    assert not found.csrf_matches("") and not found.csrf_matches(None) and not found.csrf_matches(row.id)
    assert await store.lookup(row.id) is None  # the stored hash is no token
    assert await store.lookup(None) is None and await store.lookup("x" * 500) is None
    now[0] += timedelta(hours=2)
    assert await store.lookup(made.token) is None  # expired, and deleted
    async with db.read() as session:
        assert list(await session.scalars(select(OperatorSession))) == []
    now[0] = utcnow()
    second = await store.create_session(ada)
    await store.set_disabled("ada")
    assert await store.lookup(second.token) is None
    await store.set_disabled("ada", False)
    third = await store.create_session(ada)
    await store.delete_session(third.token)
    assert await store.lookup(third.token) is None
    fourth = await store.create_session(ada)
    await store.set_password("ada", "a new password")
    assert await store.lookup(fourth.token) is None
    assert await store.verify("ada", "a new password") is not None


async def test_removing_an_operator_ends_their_sessions(db: Database) -> None:
    store = Operators(db, hasher=FAST)
    ada = await store.add("ada", "admin", PASSWORD)
    made = await store.create_session(ada)
    await store.remove("ada")
    assert await store.lookup(made.token) is None and await store.list() == []
    with pytest.raises(NotFound):
        await store.remove("ada")
    with pytest.raises(NotFound):
        await store.set_password("ada", PASSWORD)


async def test_a_hash_with_old_parameters_is_renewed_at_sign_in(db: Database) -> None:
    await Operators(db, hasher=FAST).add("ada", "agent", PASSWORD)
    stronger = PasswordHasher(time_cost=2, memory_cost=16, parallelism=1)
    assert await Operators(db, hasher=stronger).verify("ada", PASSWORD) is not None
    async with db.read() as session:
        [row] = list(await session.scalars(select(Operator)))
    assert not stronger.check_needs_rehash(row.password_hash)
