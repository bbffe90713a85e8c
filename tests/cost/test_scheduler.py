"""The scheduler computes finished hours, backfills a gap within its bound, recomputes hours
that late samples arrived for, and starts/stops on the running loop."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import asyncpg

from sync.cost.allocation import floor_hour
from sync.cost.scheduler import CostScheduler
from tests.cost.helpers import BOOK, one_node_cluster

D = Decimal
HOUR = timedelta(hours=1)


async def test_backfill_after_a_gap_and_late_samples(db_pool: asyncpg.Pool) -> None:
    t = floor_hour(datetime.now(UTC)) - timedelta(days=1) + timedelta(minutes=7)
    base = floor_hour(t)
    async with db_pool.acquire() as conn:
        # Created 30 days ago, but the backfill bound is 6 hours.
        org, cluster = await one_node_cluster(conn, created_at=t - timedelta(days=30))
        # A pod requesting 0.5 core all along: each hour 0.50 allocated + 0.50 idle = 1.00.
        await conn.execute(
            """INSERT INTO k8s_pods (cluster_id, uid, namespace, name, node_name, phase,
                   requests_cpu_cores, created_at, start_time)
               VALUES ($1, 'p', 'app', 'p', 'n', 'Running', 0.5, $2, $2)""",
            cluster, t - timedelta(days=30),
        )
    scheduler = CostScheduler(db_pool, book=BOOK, backfill=timedelta(hours=6),
                              budget_alerts=False, organization_ids=[org])

    first = await scheduler.run_once(t)
    # 07 past the hour, settle 5 min: the last finished hour is base-1h; bound is base-6h.
    assert sorted(h for _, h in first.computed) == [base - k * HOUR for k in range(6, 0, -1)]
    assert (await scheduler.run_once(t)).computed == []

    # Down for five hours: the next tick fills exactly the missed hours.
    later = t + 5 * HOUR
    second = await scheduler.run_once(later)
    assert sorted(h for _, h in second.computed) == [base + k * HOUR for k in range(5)]

    # A sample for base+1h arrives late (0.8 core used > 0.5 requested).
    async with db_pool.acquire() as conn:
        await conn.execute(
            """INSERT INTO k8s_resource_metrics (cluster_id, level, namespace, name, sampled_at,
                   cpu_cores) VALUES ($1, 'pod', 'app', 'p', $2, 0.8)""",
            cluster, base + HOUR + timedelta(minutes=30),
        )
    third = await scheduler.run_once(later)
    assert third.computed == [] and third.recomputed == [(cluster, base + HOUR)]
    assert (await scheduler.run_once(later)).recomputed == []

    async with db_pool.acquire() as conn:
        rows = await conn.fetch(
            """SELECT period_start, allocated_cost, idle_cost, total_cost FROM k8s_cost_hours
                WHERE cluster_id = $1 ORDER BY period_start""", cluster,
        )
        assert len(rows) == 11
        assert all(r["total_cost"] == D("1") for r in rows)
        late = next(r for r in rows if r["period_start"] == base + HOUR)
        assert (late["allocated_cost"], late["idle_cost"]) == (D("0.8"), D("0.2"))
        # month-to-date and last hour on the cluster row follow the ledger
        last = await conn.fetchval("SELECT cost_last_hour FROM k8s_clusters WHERE id = $1",
                                   cluster)
        assert last == D("1")


async def test_start_and_stop_on_the_running_loop(db_pool: asyncpg.Pool) -> None:
    async with db_pool.acquire() as conn:
        org, cluster = await one_node_cluster(
            conn, created_at=floor_hour(datetime.now(UTC)) - 2 * HOUR
        )
    scheduler = CostScheduler(db_pool, book=BOOK, interval_s=0.05, organization_ids=[org],
                              settle=timedelta(0))
    await scheduler.start()
    try:
        for _ in range(100):
            async with db_pool.acquire() as conn:
                done = await conn.fetchval(
                    "SELECT count(*) FROM k8s_cost_hours WHERE cluster_id = $1", cluster
                )
            if done == 2:
                break
            await asyncio.sleep(0.05)
        assert done == 2
    finally:
        await scheduler.stop()
    await scheduler.stop()  # idempotent
