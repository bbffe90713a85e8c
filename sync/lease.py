"""Cluster leases: which replica syncs which cluster, decided by PostgreSQL advisory locks.

Several FleetGraph replicas may run against one database and each cluster must be synced by
exactly one of them. A session-level ``pg_try_advisory_lock`` is the lease: PostgreSQL grants
it to one session only and releases it by itself when that session ends, so a replica that
dies (process killed, network cut, connection terminated) frees its clusters without any
expiry clock, and the next rescan of another replica takes them.

All of a replica's leases live on one dedicated connection (it also LISTENs for registry
changes). If that connection is lost, every lease is lost with it: the holder reports it and
the supervisor stops those syncs before it tries to take anything again.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import uuid
from collections.abc import Callable
from typing import Any

import asyncpg

__all__ = ["ClusterLease", "lease_key"]

log = logging.getLogger(__name__)

_KEY_LABEL = b"fleetgraph/sync/cluster-lease/v1\x00"


def lease_key(cluster_id: uuid.UUID) -> int:
    """The advisory-lock key of a cluster: 64 bits of a labelled hash of its id (signed,
    as ``pg_try_advisory_lock(bigint)`` wants)."""
    digest = hashlib.sha256(_KEY_LABEL + cluster_id.bytes).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class ClusterLease:
    """This replica's lease connection and the clusters it holds."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self._conn: Any = None  # a PoolConnectionProxy held for the supervisor's lifetime
        self._lost = False
        self._on_lost: Callable[[], None] | None = None
        self._listeners: dict[str, Callable[..., Any]] = {}
        self.held: set[uuid.UUID] = set()

    @property
    def connected(self) -> bool:
        return self._conn is not None and not self._lost and not self._conn.is_closed()

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
            for channel, callback in self._listeners.items():
                await conn.add_listener(channel, callback)
        except BaseException:
            await self._pool.release(conn)
            raise
        self._conn = conn

    def _on_terminated(self, *_: object) -> None:
        self._lost = True
        if self._on_lost is not None:
            self._on_lost()

    async def alive(self) -> bool:
        """A round trip on the lease connection; ``False`` means every lease is gone."""
        if not self.connected:
            return False
        try:
            await self._conn.fetchval("SELECT 1", timeout=5)
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError):
            self._lost = True
            return False
        return True

    async def try_acquire(self, cluster_id: uuid.UUID) -> bool:
        if cluster_id in self.held:
            return True
        got = bool(
            await self._conn.fetchval("SELECT pg_try_advisory_lock($1)", lease_key(cluster_id))
        )
        if got:
            self.held.add(cluster_id)
        return got

    async def release(self, cluster_id: uuid.UUID) -> None:
        if cluster_id not in self.held:
            return
        self.held.discard(cluster_id)
        if self.connected:
            with contextlib.suppress(asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
                await self._conn.fetchval("SELECT pg_advisory_unlock($1)", lease_key(cluster_id))

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
        if self._lost or conn.is_closed():
            with contextlib.suppress(asyncpg.InterfaceError):
                conn.terminate()
        else:
            for channel, callback in self._listeners.items():
                with contextlib.suppress(asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
                    await conn.remove_listener(channel, callback)
        try:
            await self._pool.release(conn, timeout=5)
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError):
            conn.terminate()
