"""How the PostgreSQL memory index stores a vector: as ``bytea`` (the plain path, the one tested here), or
in a pgvector ``vector`` column when that extension could be installed as the tables were made.

Either way a row's vector is its float32 unit vector, and cosines are computed in numpy over the rows
of one scope (``core.memory.ranking`` needs every row's cosine, so an operator that ranks in SQL would
not save the read); the column type only decides how a vector travels. Which one an index uses is read
from the table (:func:`codec_for`), so every host opening the same tables agrees.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray
from psycopg import sql


class VectorCodec(Protocol):
    """A vector column: its SQL type, how a unit vector is written and read back."""

    kind: str
    column_type: sql.SQL
    read: sql.SQL  # the column as selected

    def write(self, placeholder: sql.Composable) -> sql.Composable:
        """The parameter ``placeholder`` as a value of the column."""
        ...

    def param(self, unit: NDArray[np.float32]) -> Any: ...

    def matrix(self, values: Sequence[Any], dims: int) -> NDArray[np.float32]:
        """The read values of ``len(values)`` rows as a ``(rows, dims)`` float32 matrix."""
        ...


class ByteaVectors:
    """float32 bytes, as the SQLite index stores them: the plain path, nothing to install."""

    kind = "bytea"
    column_type = sql.SQL("bytea")
    read = sql.SQL("vector")

    def write(self, placeholder: sql.Composable) -> sql.Composable:
        return placeholder

    def param(self, unit: NDArray[np.float32]) -> Any:
        return unit.astype("<f4").tobytes()

    def matrix(self, values: Sequence[Any], dims: int) -> NDArray[np.float32]:
        joined = b"".join(values)
        return np.frombuffer(joined, dtype="<f4").astype(np.float32, copy=False).reshape(len(values), dims)


class PgvectorVectors:
    """A pgvector ``vector`` column (only where ``CREATE EXTENSION vector`` worked): written from and read
    as ``real[]`` through pgvector's casts, so no pgvector client package is needed."""

    kind = "vector"
    column_type = sql.SQL("vector")
    read = sql.SQL("vector::real[]")

    def write(self, placeholder: sql.Composable) -> sql.Composable:
        return sql.SQL("{}::real[]::vector").format(placeholder)

    def param(self, unit: NDArray[np.float32]) -> Any:
        return [float(x) for x in unit]

    def matrix(self, values: Sequence[Any], dims: int) -> NDArray[np.float32]:
        return np.asarray(values, dtype=np.float32).reshape(len(values), dims)


def codec_for(column_type: str) -> VectorCodec:
    """The codec of a vector column whose type PostgreSQL names ``column_type`` (``format_type``)."""
    if column_type == "bytea":
        return ByteaVectors()
    if column_type.startswith("vector"):
        return PgvectorVectors()
    raise ValueError(f"the memory index's vector column has the unexpected type {column_type!r}")
