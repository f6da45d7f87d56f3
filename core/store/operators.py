"""Operator accounts and their console sessions (``operators``, ``operator_sessions``).

An operator is a person who signs in to the console (``core.web.console``) with a name and a password;
their ``role`` is ``admin`` (may change identities, forget, export, retry dead letters) or ``agent`` (may
take conversations over, reply and hand them back). ``threadline operators ...`` manages them.

- **Passwords** are hashed with argon2id (argon2-cffi's ``PasswordHasher``, its default parameters) and
  never stored, shown or logged. ``verify`` runs the hash in a worker thread (it is slow on purpose), and
  runs one against a dummy hash for a name nobody has (or a disabled one), so the time an answer takes
  does not tell a known name from an unknown one. A hash made with older parameters is renewed on the
  next successful sign-in.
- **Sessions.** ``create_session`` makes a random token for the cookie; the table keeps only its SHA-256
  (``OperatorSession.id``), so a copy of the database signs nobody in. Each session has its own CSRF token
  (sent back with every form). A session lasts ``session_hours``; ``lookup`` refuses an expired one (and
  deletes it), one of a disabled or removed operator, and a token it does not know. A new password ends
  every session of that operator.

Names are 1 to 64 letters, digits or ``. _ -`` (they appear as ``operator:<name>`` in the identity ledger
and the operator actions). Logs carry operator ids, never a password or token.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import hmac
import logging
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal, get_args

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import Conflict, NotFound
from core.store.db import Database
from core.store.models import Operator, OperatorSession, utcnow

log = logging.getLogger(__name__)

Role = Literal["admin", "agent"]
ROLES: tuple[Role, ...] = get_args(Role)
NAME = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
MIN_PASSWORD = 8
MAX_PASSWORD = 1024  # argon2 hashes any length; a bound keeps a sign-in cheap to refuse


@dataclass(frozen=True, slots=True, kw_only=True)
class OperatorView:
    """An operator as the console and the CLI show it (no hash)."""

    id: int
    name: str
    role: Role
    created_at: datetime
    disabled_at: datetime | None

    @property
    def active(self) -> bool:
        return self.disabled_at is None

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    @property
    def actor(self) -> str:
        """How the identity ledger names them."""
        return f"operator:{self.name}"

    @classmethod
    def of(cls, row: Operator) -> OperatorView:
        role: Role = "admin" if row.role == "admin" else "agent"
        return cls(
            id=row.id, name=row.name, role=role, created_at=row.created_at, disabled_at=row.disabled_at
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class SignedIn:
    """A live session: who, its CSRF token, and when it ends."""

    operator: OperatorView
    session_id: str  # the SHA-256 of the cookie's token
    csrf: str
    expires_at: datetime

    def csrf_matches(self, given: str | None) -> bool:
        return given is not None and hmac.compare_digest(given.encode(), self.csrf.encode())


@dataclass(frozen=True, slots=True, kw_only=True)
class NewSession:
    """A session just made: ``token`` goes into the cookie and is nowhere else."""

    token: str
    signed_in: SignedIn

    def __repr__(self) -> str:
        return f"NewSession(operator={self.signed_in.operator.id}, expires_at={self.signed_in.expires_at})"


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def check_name(name: str) -> str:
    if not NAME.match(name):
        raise ValueError("an operator name is 1 to 64 letters, digits or . _ -")
    return name


def check_role(role: str) -> Role:
    for known in ROLES:
        if role == known:
            return known
    raise ValueError(f"the role must be one of {', '.join(ROLES)} (got {role!r})")


def check_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise ValueError(f"the password must be at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise ValueError(f"the password must be at most {MAX_PASSWORD} characters")
    return password


@functools.cache
def _dummy_hash(hasher: PasswordHasher) -> str:
    """A hash with ``hasher``'s parameters that no password matches (verified for unknown names)."""
    return hasher.hash(secrets.token_urlsafe(32))


class Operators:
    """The operators and sessions of one database (see the module docstring)."""

    def __init__(
        self,
        db: Database,
        *,
        session_hours: float = 12.0,
        hasher: PasswordHasher | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._db = db
        self._lifetime = timedelta(hours=session_hours)
        self._hasher = hasher or _default_hasher()
        self._clock = clock

    def __repr__(self) -> str:
        return f"Operators(session_hours={self._lifetime.total_seconds() / 3600:g})"

    # ----- accounts --------------------------------------------------------------------------------

    async def add(self, name: str, role: str, password: str) -> OperatorView:
        """A new operator. ``ValueError``: a bad name, role or password; ``Conflict``: the name is taken."""
        check_name(name)
        checked = check_role(role)
        check_password(password)
        hashed = await asyncio.to_thread(self._hasher.hash, password)
        async with self._db.session() as session:
            if await session.scalar(select(Operator.id).where(Operator.name == name)) is not None:
                raise Conflict(f"an operator named {name} exists already")
            row = Operator(name=name, role=checked, password_hash=hashed, created_at=self._clock())
            session.add(row)
            await session.flush()
            view = OperatorView.of(row)
        log.info("operator %s added (%s)", view.id, view.role)
        return view

    async def list(self) -> list[OperatorView]:
        async with self._db.read() as session:
            rows = await session.scalars(select(Operator).order_by(Operator.name))
            return [OperatorView.of(row) for row in rows]

    async def get(self, name: str) -> OperatorView:
        async with self._db.read() as session:
            row = await session.scalar(select(Operator).where(Operator.name == name))
            if row is None:
                raise NotFound(f"no operator named {name}")
            return OperatorView.of(row)

    async def set_disabled(self, name: str, disabled: bool = True) -> OperatorView:
        """Disable (or enable again) an operator; disabling ends their sessions."""
        async with self._db.session() as session:
            row = await self._named(session, name)
            row.disabled_at = self._clock() if disabled else None
            if disabled:
                await session.execute(delete(OperatorSession).where(OperatorSession.operator_id == row.id))
            view = OperatorView.of(row)
        log.info("operator %s %s", view.id, "disabled" if disabled else "enabled")
        return view

    async def remove(self, name: str) -> None:
        """Delete an operator and their sessions (their past actions stay, by name)."""
        async with self._db.session() as session:
            row = await self._named(session, name)
            await session.execute(delete(OperatorSession).where(OperatorSession.operator_id == row.id))
            await session.delete(row)
            operator_id = row.id
        log.info("operator %s removed", operator_id)

    async def set_password(self, name: str, password: str) -> None:
        """A new password; every session of the operator ends."""
        check_password(password)
        hashed = await asyncio.to_thread(self._hasher.hash, password)
        async with self._db.session() as session:
            row = await self._named(session, name)
            row.password_hash = hashed
            await session.execute(delete(OperatorSession).where(OperatorSession.operator_id == row.id))
            operator_id = row.id
        log.info("operator %s: password changed, sessions ended", operator_id)

    async def verify(self, name: str, password: str) -> OperatorView | None:
        """The active operator ``name`` if ``password`` is theirs, else None (one hash either way)."""
        async with self._db.read() as session:
            row = (
                await session.scalar(select(Operator).where(Operator.name == name))
                if NAME.match(name) and len(password) <= MAX_PASSWORD
                else None
            )
            stored = row.password_hash if row is not None and row.disabled_at is None else None
            view = OperatorView.of(row) if row is not None else None
        if stored is None or view is None:
            await asyncio.to_thread(self._matches, _dummy_hash(self._hasher), password[:MAX_PASSWORD])
            return None
        if not await asyncio.to_thread(self._matches, stored, password):
            return None
        if self._hasher.check_needs_rehash(stored):
            renewed = await asyncio.to_thread(self._hasher.hash, password)
            async with self._db.session() as session:
                current = await session.get(Operator, view.id)
                if current is not None and current.password_hash == stored:
                    current.password_hash = renewed
        return view

    def _matches(self, stored: str, password: str) -> bool:
        try:
            return self._hasher.verify(stored, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    @staticmethod
    async def _named(session: AsyncSession, name: str) -> Operator:
        row = await session.scalar(select(Operator).where(Operator.name == name))
        if row is None:
            raise NotFound(f"no operator named {name}")
        return row

    # ----- sessions --------------------------------------------------------------------------------

    async def create_session(self, operator: OperatorView) -> NewSession:
        """A session for ``operator`` (who just signed in); expired sessions are pruned on the way."""
        token = secrets.token_urlsafe(32)
        csrf = secrets.token_urlsafe(32)
        now = self._clock()
        expires = now + self._lifetime
        async with self._db.session() as session:
            await session.execute(delete(OperatorSession).where(OperatorSession.expires_at <= now))
            session.add(
                OperatorSession(
                    id=token_hash(token),
                    operator_id=operator.id,
                    csrf=csrf,
                    created_at=now,
                    expires_at=expires,
                )
            )
        log.info("operator %s signed in", operator.id)
        signed_in = SignedIn(operator=operator, session_id=token_hash(token), csrf=csrf, expires_at=expires)
        return NewSession(token=token, signed_in=signed_in)

    async def lookup(self, token: str | None) -> SignedIn | None:
        """The live session of a cookie's token; None for no token, an unknown, expired or disabled one."""
        if not token or len(token) > 128:
            return None
        key = token_hash(token)
        async with self._db.read() as session:
            found = (
                await session.execute(
                    select(OperatorSession, Operator)
                    .join(Operator, Operator.id == OperatorSession.operator_id)
                    .where(OperatorSession.id == key)
                )
            ).first()
        if found is None:
            return None
        row, operator = found
        if row.expires_at <= self._clock():
            await self._drop(key)
            return None
        if operator.disabled_at is not None:
            return None
        return SignedIn(
            operator=OperatorView.of(operator), session_id=key, csrf=row.csrf, expires_at=row.expires_at
        )

    async def delete_session(self, token: str | None) -> None:
        """Sign out: the session of this token is gone (an unknown token is no error)."""
        if token and len(token) <= 128:
            await self._drop(token_hash(token))

    async def _drop(self, key: str) -> None:
        async with self._db.session() as session:
            await session.execute(delete(OperatorSession).where(OperatorSession.id == key))


@functools.cache
def _default_hasher() -> PasswordHasher:
    return PasswordHasher()  # argon2id, RFC 9106's low-memory profile (argon2-cffi's default)
