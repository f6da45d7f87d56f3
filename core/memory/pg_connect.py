"""Connections of the PostgreSQL memory index: the store's URL as libpq reads it, and a pool of them.

The store speaks asyncpg through SQLAlchemy (``postgresql+asyncpg://USER:PASSWORD@HOST/DB?ssl=require``);
the memory index is blocking (Mem0 calls it from its threads), so it speaks psycopg 3 on the same
database. :func:`libpq_dsn` turns the one URL into the other: the driver goes, asyncpg's ``ssl`` becomes
libpq's ``sslmode``, the query parameters libpq knows stay and any other is dropped (named in a warning,
never with its value). The URL holds the password: it is never logged, and the pool is named, not shown.
"""

from __future__ import annotations

import logging
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool
from sqlalchemy.engine import make_url

log = logging.getLogger(__name__)

POOL_NAME = "threadline-memory-index"
OPEN_TIMEOUT = 10.0  # seconds to wait for the first connection when the index opens
CHECKOUT_TIMEOUT = 30.0  # seconds a call waits for a free connection before it fails
# a connection beyond the first one idle this long is closed: every host's processes share the server
IDLE_TIMEOUT = 60.0

# libpq's connection parameters that may come in a URL's query (the rest are asyncpg's or SQLAlchemy's)
LIBPQ_PARAMETERS = frozenset(
    {
        "host",
        "hostaddr",
        "port",
        "dbname",
        "user",
        "password",
        "passfile",
        "channel_binding",
        "connect_timeout",
        "options",
        "application_name",
        "fallback_application_name",
        "keepalives",
        "keepalives_idle",
        "keepalives_interval",
        "keepalives_count",
        "tcp_user_timeout",
        "sslmode",
        "sslcompression",
        "sslcert",
        "sslkey",
        "sslpassword",
        "sslrootcert",
        "sslcrl",
        "sslcrldir",
        "sslsni",
        "ssl_min_protocol_version",
        "ssl_max_protocol_version",
        "gssencmode",
        "krbsrvname",
        "target_session_attrs",
        "load_balance_hosts",
    }
)
# asyncpg's ``ssl=`` values as libpq's ``sslmode``
_SSL_AS_SSLMODE = {"true": "require", "1": "require", "false": "disable", "0": "disable"}


def libpq_dsn(url: str) -> str:
    """``url`` (SQLAlchemy's ``postgresql+asyncpg://...``, or already libpq's ``postgresql://...``) as a
    libpq connection URI. ``ValueError`` for a URL of another database."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "postgresql":
        raise ValueError(f"the memory index needs a PostgreSQL URL, not {parsed.get_backend_name()!r}")
    query: dict[str, str] = {}
    dropped: list[str] = []
    for key, raw in parsed.query.items():
        value = raw if isinstance(raw, str) else raw[-1]
        if key == "ssl":
            query.setdefault("sslmode", _SSL_AS_SSLMODE.get(value.lower(), value))
        elif key in LIBPQ_PARAMETERS:
            query[key] = value
        else:
            dropped.append(key)
    if dropped:
        log.warning("memory index: URL parameters libpq does not know were left out: %s", sorted(dropped))
    return parsed.set(drivername="postgresql", query=query).render_as_string(hide_password=False)


def open_pool(url: str, *, max_size: int) -> ConnectionPool[psycopg.Connection[Any]]:
    """A pool of up to ``max_size`` connections to ``url``, open (one connection made, or
    ``psycopg_pool.PoolTimeout`` after :data:`OPEN_TIMEOUT`). Each checkout is checked first, so a
    connection PostgreSQL dropped (a restart, a failover) is replaced instead of failing a call."""
    pool: ConnectionPool[psycopg.Connection[Any]] = ConnectionPool(
        libpq_dsn(url),
        min_size=1,
        max_size=max_size,
        open=False,
        name=POOL_NAME,
        timeout=CHECKOUT_TIMEOUT,
        max_idle=IDLE_TIMEOUT,
        check=ConnectionPool.check_connection,
        kwargs={"fallback_application_name": "threadline-memory"},
    )
    try:
        pool.open(wait=True, timeout=OPEN_TIMEOUT)
    except BaseException:
        pool.close()
        raise
    return pool
