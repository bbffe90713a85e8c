"""PostgreSQL restarts under a running replica: the sync stops writing while it is gone (its
leases went with it), resumes as soon as it answers again, and the database converges with
the clusters, changes made during the outage included; subscriptions resume too.

The supervisor keeps production's 30 s rescan interval, so only the retry of a failed rescan
can explain a resume within seconds. The test asserts the order of events and the states; the
durations are printed (``pytest -s``) for the record.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import asyncpg
import pytest

from app.db import close_pool, create_pool
from app.events import ChangeHub
from app.network_guard import NetworkPolicy
from app.settings import Settings
from kubesim import KubeSim
from resolvers.events import SYNC_STATUS, ClusterEvent
from sync.cluster_sync import SyncOptions
from sync.supervisor import Supervisor
from tests.recovery.support import (
    Timeline,
    all_converged,
    churn,
    first_of,
    own_postgres,
    touch,
    until,
)
from tests.sync.factories import make_vault, register_cluster

# Production's intervals (a rescan every 30 s, a heartbeat every 15 s), local clusters allowed.
OPTIONS = SyncOptions(network=NetworkPolicy(allow_local=True), metrics_interval=3600.0,
                      health_interval=3600.0)


async def live_again(pool: asyncpg.Pool, cluster_ids: list[uuid.UUID], since: datetime) -> bool:
    """Every cluster ACTIVE with every kind watching since ``since``: a sync that started
    over, not the row as the outage left it."""
    try:
        rows = await pool.fetch("SELECT status, sync_progress FROM k8s_clusters"
                                " WHERE id = ANY($1::uuid[])", cluster_ids)
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
        return False
    return len(rows) == len(cluster_ids) and all(
        r["status"] == "active" and r["sync_progress"] and all(
            k["state"] == "watching" and datetime.fromisoformat(k["since"]) > since
            for k in r["sync_progress"].values())
        for r in rows)


async def outage_pods_stored(pool: asyncpg.Pool, tag: str) -> bool:
    try:
        return bool(await pool.fetchval(
            "SELECT count(*) FROM k8s_pods WHERE labels->>'made' = $1", tag))
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
        return False


@pytest.mark.db
async def test_sync_resumes_and_converges_within_seconds_of_postgresql_answering_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    vault = make_vault()
    timeline = Timeline()
    async with (
        own_postgres() as pg,
        KubeSim.start(fleet="small", seed=21) as one,
        KubeSim.start(fleet="small", seed=22) as two,
    ):
        pool = await create_pool(pg.url, max_size=10)
        hub = ChangeHub(pg.url, pool)
        supervisor = Supervisor(pool, vault, Settings(), options=OPTIONS, housekeeping=False)
        try:
            clusters: dict[uuid.UUID, KubeSim] = {}
            async with pool.acquire() as conn:
                for sim in (one, two):
                    clusters[await register_cluster(conn, vault, server=sim.url,
                                                    token=sim.token)] = sim
            ids = list(clusters)
            org = await pool.fetchval(
                "SELECT organization_id FROM k8s_clusters WHERE id = $1", ids[0])
            await hub.start()
            await supervisor.start()
            await until(lambda: _none_differ(pool, clusters), within=60, what="first sync")

            await pg.stop()
            timeline.mark("database stopped")
            # No lease without the database: every sync stops, nothing writes meanwhile.
            await until(lambda: asyncio.sleep(0, not supervisor.clusters), within=15,
                        what="syncs stopped")
            timeline.mark("syncs stopped")
            rescans = supervisor.rescans
            for sim in clusters.values():
                churn(sim, "outage")
            await asyncio.sleep(3)
            # Retrying, not waiting out its 30 s interval for a NOTIFY that cannot come.
            assert supervisor.rescans >= rescans + 2

            await pg.start()
            back = datetime.now(UTC)
            timeline.mark("database answers")
            await first_of(timeline, {
                "outage changes stored": lambda: outage_pods_stored(pool, "outage"),
                "converged": lambda: _none_differ(pool, clusters),
                "active and watching again": lambda: live_again(pool, ids, back),
            }, within=60)
            assert supervisor.clusters == frozenset(ids)

            # Subscriptions resume: a change after the restart reaches a subscriber.
            async with hub.subscribe(organization_id=org, topic=SYNC_STATUS,
                                     cluster_id=ids[0]) as events:
                heard = await _hear(events, clusters[ids[0]])
            timeline.mark("subscriber heard a change")
            assert heard.cluster_id == ids[0]
        finally:
            await supervisor.stop()
            await hub.stop()
            await close_pool(pool)
    print("\ndatabase outage:", timeline.report("database answers"))
    # ACTIVE never ran ahead of the data: it came with or after convergence.
    assert timeline.marks["converged"] <= timeline.marks["active and watching again"]
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [], [r.getMessage() for r in errors]


async def _none_differ(pool: asyncpg.Pool, clusters: dict[uuid.UUID, KubeSim]) -> bool:
    return not await all_converged(pool, clusters)


async def _hear(events: AsyncIterator[ClusterEvent], sim: KubeSim) -> ClusterEvent:
    """Make changes until the subscriber hears one (the LISTEN connection may still be on
    its way back; a notice sent before it is lost, the next one is not).

    One pending ``anext`` is kept across attempts: cancelling it (as ``wait_for`` does on a
    timeout) would throw into the generator and finish it, so the next attempt would get
    StopAsyncIteration instead of an event."""
    pending = asyncio.ensure_future(anext(events))
    try:
        for attempt in range(40):
            touch(sim, f"after-{attempt}")
            done, _ = await asyncio.wait({pending}, timeout=0.5)
            if done:
                return pending.result()
    finally:
        pending.cancel()
    raise AssertionError("no event reached the subscriber after the restart")
