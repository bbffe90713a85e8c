"""Cluster leases: which replica syncs which cluster, decided by PostgreSQL advisory locks.

Several FleetGraph replicas may run against one database and each cluster must be synced by
exactly one of them. A session-level ``pg_try_advisory_lock`` is the lease: PostgreSQL grants
it to one session only and releases it by itself when that session ends, so a replica that
dies (process killed, connection terminated) frees its clusters at once, with no expiry clock.

A replica that does not die but stops (its host froze, its network went silent) keeps its
session open as far as the server can tell. So the lease session carries an
``idle_session_timeout`` of ``ttl``: the holder proves it is alive with a round trip every
``lease interval`` (:meth:`ClusterLease.renew`), and a holder that stops doing so has its
session, and every lease, ended by the server after ``ttl``. The holder gives its leases up by
itself sooner, after ``ttl / 2`` without a successful renewal, so it has stopped writing before
the server can hand its clusters to anyone else. The same round trip takes every free lease
the caller asks for, which is how survivors notice a dead replica's clusters within seconds.

All of a replica's leases live on one dedicated connection (it also LISTENs for registry
changes), used by one caller at a time. If that connection is lost, every lease is lost with
it: the holder reports it and the supervisor stops those syncs before it tries to take
anything again.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any

import asyncpg

from app.db import CONNECTION_LOST, stop_if_cancelled

__all__ = ["ClusterLease", "lease_key"]

log = logging.getLogger(__name__)

_KEY_LABEL = b"fleetgraph/sync/cluster-lease/v1\x00"
# idle_session_timeout exists from PostgreSQL 14 on; before that only a dead connection (not a
# frozen holder) frees a lease.
_IDLE_TIMEOUT_SINCE = 14
_FAILURES: tuple[type[BaseException], ...] = (*CONNECTION_LOST, asyncpg.PostgresError)

# Every key asked for that this session holds once the statement is done: those it held
# already (never locked a second time: advisory locks count, and one unlock would then leave
# the lease held) and the free ones it takes now. Its answer is the truth even after a round
# trip that timed out on our side once the server had taken a lock.
_TAKE_FREE = """
WITH mine AS MATERIALIZED (
    SELECT (l.classid::bigint << 32) | l.objid::bigint AS key
      FROM pg_locks l
     WHERE l.locktype = 'advisory' AND l.objsubid = 1 AND l.granted
       AND l.pid = pg_backend_pid()
)
SELECT k FROM unnest($1::bigint[]) AS k
 WHERE CASE WHEN k IN (SELECT key FROM mine) THEN true ELSE pg_try_advisory_lock(k) END
"""


def lease_key(cluster_id: uuid.UUID) -> int:
    """The advisory-lock key of a cluster: 64 bits of a labelled hash of its id (signed,
    as ``pg_try_advisory_lock(bigint)`` wants)."""
    digest = hashlib.sha256(_KEY_LABEL + cluster_id.bytes).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class ClusterLease:
    """This replica's lease connection and the clusters it holds."""

    def __init__(self, pool: asyncpg.Pool, *, ttl: float = 8.0) -> None:
        self._pool = pool
        self._ttl = ttl
        self._conn: Any = None  # a PoolConnectionProxy held for the supervisor's lifetime
        self._lost = False
        self._on_lost: Callable[[], None] | None = None
        self._listeners: dict[str, Callable[..., Any]] = {}
        self._lock = asyncio.Lock()  # one statement at a time on the lease connection
        self._renewed = 0.0  # monotonic time of the last successful round trip
        self.held: set[uuid.UUID] = set()

    @property
    def connected(self) -> bool:
        return self._conn is not None and not self._lost and not self._conn.is_closed()

    @property
    def pid(self) -> int | None:
        """The server process of the lease session (whose ``pg_locks`` rows are the leases)."""
        return int(self._conn.get_server_pid()) if self.connected else None

    async def open(
        self,
        *,
        listen: dict[str, Callable[..., Any]] | None = None,
        on_lost: Callable[[], None] | None = None,
    ) -> None:
        """Take a connection out of the pool for good, LISTEN on ``listen`` channels, and
        call ``on_lost`` as soon as the connection (and with it every lease) is gone."""
        self._on_lost = on_lost
        self._lost = False
        self.held.clear()
        conn = await self._pool.acquire()
        self._listeners = dict(listen or {})
        try:
            conn.add_termination_listener(self._on_terminated)
            if conn.get_server_version().major >= _IDLE_TIMEOUT_SINCE:
                await conn.execute(
                    f"SET idle_session_timeout = {max(1, round(self._ttl * 1000))}"
                )
            for channel, callback in self._listeners.items():
                await conn.add_listener(channel, callback)
        except BaseException:
            with contextlib.suppress(*_FAILURES):
                conn.remove_termination_listener(self._on_terminated)
            with contextlib.suppress(*_FAILURES):
                await self._pool.release(conn, timeout=5)
            raise
        self._conn = conn
        self._renewed = time.monotonic()

    def _on_terminated(self, *_: object) -> None:
        self._give_up()

    def _give_up(self) -> None:
        if self._lost:
            return
        self._lost = True
        if self._on_lost is not None:
            self._on_lost()

    async def renew(
        self, candidates: Callable[[], Iterable[uuid.UUID]] = tuple
    ) -> set[uuid.UUID]:
        """Prove this replica alive and take every free lease among ``candidates()``, in one
        round trip; returns the clusters newly leased. ``candidates`` is called once this
        caller has the connection, so a cluster disabled meanwhile is not taken again.

        A failed round trip is survived for ``ttl / 2`` (a slow checkpoint must not cost every
        sync); past that, or if the connection is gone, every lease is given up (``on_lost``
        is called): the server will end the session soon and someone else take them."""
        if not self.connected:
            return set()
        try:
            async with self._lock:
                wanted = {lease_key(c): c for c in candidates() if c not in self.held}
                rows = await self._conn.fetch(_TAKE_FREE, list(wanted), timeout=self._ttl / 4)
                taken = {wanted[row[0]] for row in rows}
                self.held |= taken  # before anyone else may ask for the same keys
        except _FAILURES as exc:
            stop_if_cancelled()
            silent = time.monotonic() - self._renewed
            if not self.connected or silent >= self._ttl / 2:
                log.warning("lease connection failed (%s) %.1fs after its last renewal: "
                            "giving up every lease", type(exc).__name__, silent)
                self._give_up()
                self._terminate()
            return set()
        self._renewed = time.monotonic()
        return taken

    async def release(self, cluster_id: uuid.UUID) -> None:
        if cluster_id not in self.held:
            return
        self.held.discard(cluster_id)
        if self.connected:
            with contextlib.suppress(*_FAILURES):
                async with self._lock:
                    await self._conn.fetchval("SELECT pg_advisory_unlock($1)",
                                              lease_key(cluster_id))
            stop_if_cancelled()

    def _terminate(self) -> None:
        """Close the socket now: the server then ends the session, and the leases with it."""
        if self._conn is not None:
            with contextlib.suppress(*_FAILURES):
                self._conn.terminate()

    async def close(self) -> None:
        """Give every lease back (the pool's reset unlocks all and UNLISTENs)."""
        conn, self._conn = self._conn, None
        self.held.clear()
        if conn is None:
            return
        # A connection the server killed may already be detached: nothing here may raise,
        # or the supervisor could never open a new lease connection.
        with contextlib.suppress(asyncpg.InterfaceError):
            conn.remove_termination_listener(self._on_terminated)
        async with self._lock:
            if self._lost or conn.is_closed():
                with contextlib.suppress(*_FAILURES):
                    conn.terminate()
            else:
                for channel, callback in self._listeners.items():
                    with contextlib.suppress(*_FAILURES):
                        await conn.remove_listener(channel, callback)
            try:
                await self._pool.release(conn, timeout=5)
            except _FAILURES:
                conn.terminate()
        stop_if_cancelled()
