"""Alembic environment: migrations run on a connection handed in by ``core.store.db.migrate``."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from core.store.models import Base

target_metadata = Base.metadata


def _ours(obj: object, name: str | None, type_: str, reflected: bool, compare_to: object) -> bool:
    """Autogenerate and ``alembic check`` compare our tables only: the PostgreSQL memory index creates
    its own ``memory_index_*`` tables (``core.memory.pg_schema``), which are not ours to drop."""
    return not (type_ == "table" and reflected and (name or "").startswith("memory_index_"))


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        include_object=_ours,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError(
        "run migrations through `threadline` (core.store.db.migrate), which passes a connection"
    )
_run(connection)
