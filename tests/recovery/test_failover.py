"""Two replicas, one killed with SIGKILL or frozen with SIGSTOP: the survivor takes every
cluster over, the database converges with the clusters (changes made meanwhile included), and
each cluster is synced by exactly one replica throughout.

The doomed replica is a process of its own (``tests.recovery.replica``): that is the honest
``kill -9``. Both replicas keep a 30 s rescan interval, so only the lease keeper (liveness
round trips and free-lease probes every ``lease_interval``) explains a takeover in seconds.
Order and states are asserted; the durations are printed (``pytest -s``).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest

from app.db import close_pool, create_pool
from app.network_guard import NetworkPolicy
from app.settings import Settings
from kubesim import KubeSim
from sync.cluster_sync import SyncOptions
from sync.supervisor import Supervisor
from tests.recovery.support import (
    ReplicaProcess,
    RestartablePostgres,
    Timeline,
    all_converged,
    churn,
    first_of,
    own_postgres,
    until,
)
from tests.recovery.test_database_outage import live_again
from tests.sync.factories import TEST_KEY, make_vault, register_cluster
from tests.sync.test_supervisor import lock_holders

SLOW_RESCAN: dict[str, Any] = {"rescan_interval": 30.0, "metrics_interval": 3600.0,
                               "health_interval": 3600.0}
# A short lease for the frozen replica's test: the server ends its idle session after 3 s.
SHORT_LEASE: dict[str, Any] = {**SLOW_RESCAN, "lease_ttl": 3.0, "lease_interval": 0.5}


@dataclass
class Fleet:
    pg: RestartablePostgres
    pool: asyncpg.Pool
    clusters: dict[uuid.UUID, KubeSim]

    @property
    def ids(self) -> list[uuid.UUID]:
        return list(self.clusters)

    async def converged(self) -> bool:
        return not await all_converged(self.pool, self.clusters)

    async def holders(self) -> set[int]:
        return set((await lock_holders(self.pool, self.ids)).values())


@contextlib.asynccontextmanager
async def fleet(count: int = 3) -> AsyncIterator[Fleet]:
    """A database of the test's own (supervisors act on every cluster in it) and ``count``
    kubesim clusters registered in it."""
    vault = make_vault()
    async with own_postgres() as pg, contextlib.AsyncExitStack() as stack:
        sims = [await stack.enter_async_context(KubeSim.start(fleet="small", seed=30 + i))
                for i in range(count)]
        pool = await create_pool(pg.url, max_size=10)
        try:
            clusters: dict[uuid.UUID, KubeSim] = {}
            async with pool.acquire() as conn:
                for sim in sims:
                    clusters[await register_cluster(conn, vault, server=sim.url,
                                                    token=sim.token)] = sim
            yield Fleet(pg, pool, clusters)
        finally:
            await close_pool(pool)


def survivor(pool: asyncpg.Pool, options: dict[str, Any]) -> Supervisor:
    return Supervisor(pool, make_vault(), Settings(), housekeeping=False,
                      options=SyncOptions(**options, network=NetworkPolicy(allow_local=True)))


async def doomed_replica(world: Fleet, options: dict[str, Any]) -> ReplicaProcess:
    """The replica to kill, started first so that it leases every cluster."""
    replica = ReplicaProcess(dsn=world.pg.url, key=TEST_KEY, options=options)
    await replica.start()
    await until(lambda: asyncio.sleep(0, replica.clusters == frozenset(world.ids)), within=30,
                what="the first replica leasing every cluster")
    await until(world.converged, within=60, what="first sync")
    return replica


@pytest.mark.db
async def test_a_killed_replica_s_clusters_are_taken_over_by_the_survivor() -> None:
    timeline = Timeline()
    async with fleet() as world:
        doomed = await doomed_replica(world, SLOW_RESCAN)
        other = survivor(world.pool, SLOW_RESCAN)
        try:
            await other.start()
            await until(lambda: asyncio.sleep(0, other.rescans >= 1 and other.lease_pid),
                        within=10, what="the survivor's first rescan")
            await asyncio.sleep(1)  # several lease rounds: every lease is taken
            assert other.clusters == frozenset()
            assert await world.holders() == {doomed.lease_pid}

            doomed.kill()
            killed = datetime.now(UTC)
            timeline.mark("killed")
            for sim in world.clusters.values():
                churn(sim, "after-kill")
            await until(lambda: asyncio.sleep(0, other.clusters == frozenset(world.ids)),
                        within=20, what="takeover")  # < the 30 s rescan: the lease keeper
            timeline.mark("taken over")
            await until(world.converged, within=20, what="convergence")
            timeline.mark("converged")
            await until(lambda: live_again(world.pool, world.ids, killed), within=20,
                        what="active again")
            timeline.mark("active again")
            assert await world.holders() == {other.lease_pid}
        finally:
            await other.stop()
            await doomed.close()
    print("\nkill -9 failover:", timeline.report("killed"))


@pytest.mark.db
async def test_a_frozen_replica_loses_its_leases_and_stops_syncing_when_it_wakes() -> None:
    timeline = Timeline()
    async with fleet(count=2) as world:
        frozen = await doomed_replica(world, SHORT_LEASE)
        other = survivor(world.pool, SHORT_LEASE)
        try:
            await other.start()
            await until(lambda: asyncio.sleep(0, other.rescans >= 1), within=10,
                        what="the survivor's first rescan")
            old_pid = frozen.lease_pid
            assert old_pid is not None and await world.holders() == {old_pid}

            frozen.pause()  # alive, sockets open, silent: only the server's idle timer helps
            paused = datetime.now(UTC)
            timeline.mark("frozen")

            async def session_ended() -> bool:
                return not await world.pool.fetchval(
                    "SELECT count(*) FROM pg_stat_activity WHERE pid = $1", old_pid)

            await first_of(timeline, {
                "its lease session ended": session_ended,
                "taken over": lambda: asyncio.sleep(
                    0, other.clusters == frozenset(world.ids)),
            }, within=30)
            for sim in world.clusters.values():
                churn(sim, "while-frozen")
            await until(world.converged, within=20, what="convergence")
            await until(lambda: live_again(world.pool, world.ids, paused), within=20,
                        what="active again")
            timeline.mark("converged")

            frozen.resume()
            # Awake again, it finds its lease session gone and stops every sync of its own.
            await until(lambda: asyncio.sleep(0, frozen.clusters == frozenset()), within=20,
                        what="the woken replica stopping its syncs")
            timeline.mark("woken replica stopped")
            await asyncio.sleep(1)  # several of its lease rounds: it takes nothing back
            assert frozen.clusters == frozenset()
            assert await world.holders() == {other.lease_pid}
            assert await world.converged()
        finally:
            await other.stop()
            await frozen.close()
    print("\nfrozen replica failover:", timeline.report("frozen"))
    marks = timeline.marks
    # The server freed the leases first; only then could the survivor take them.
    assert marks["its lease session ended"] <= marks["taken over"]

