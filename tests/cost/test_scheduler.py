"""The scheduler computes finished hours, backfills a gap within its bound, recomputes hours
that late samples arrived for, and starts/stops on the running loop — with its clock at each
of tests/clock.py's instants, so the hours and months involved never depend on today."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from decimal import Decimal

import asyncpg

from cost.allocation import floor_hour
from cost.scheduler import CostScheduler
from tests.clock import (
    FIRST_OF_MONTH,
    LAST_OF_MONTH,
    MID_MONTH,
    NEW_YEARS_EVE,
    FrozenClock,
    at_each_instant,
)
from tests.cost.helpers import BOOK, one_node_cluster

D = Decimal
HOUR = timedelta(hours=1)
SETTLE = timedelta(minutes=5)
BACKFILL = timedelta(hours=6)

# Each hour costs 1.00; the cluster's month-to-date after the last tick (at instant + 5 h)
# counts the computed hours in that tick's UTC month:
MONTH_TO_DATE_AT: dict[datetime, Decimal] = {
    FIRST_OF_MONTH: D("5"),  # 1 Mar 05:30: 00:00-04:00 (18:00-23:00 on 28 Feb do not count)
    MID_MONTH: D("10"),  # 15 Mar 17:00: 06:00-15:00, all March
    LAST_OF_MONTH: D("4"),  # 1 Mar 2028 04:30: 00:00-03:00 (29 Feb's hours do not count)
    NEW_YEARS_EVE: D("4"),  # 1 Jan 2028 04:30: 00:00-03:00 (2027's hours do not count)
}


def settled_hours(*, after: datetime, now: datetime) -> list[datetime]:
    """The hours from ``after`` on that have ended at least SETTLE before ``now``, oldest first.

    Spelled out here because the instants are not all past the settle time: at 12:00 sharp the
    11:00 hour has only just ended and must wait for its last samples."""
    last = floor_hour(now - SETTLE) - HOUR
    return [after + k * HOUR for k in range(int((last - after) / HOUR) + 1)]


@at_each_instant
async def test_backfill_after_a_gap_and_late_samples(
    db_pool: asyncpg.Pool, instant: datetime
) -> None:
    t = instant
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
    scheduler = CostScheduler(db_pool, book=BOOK, backfill=BACKFILL, settle=SETTLE,
                              budget_alerts=False, organization_ids=[org])

    first = await scheduler.run_once(t)
    # From the backfill bound (6 h before t's hour) to the last settled hour.
    expected_first = settled_hours(after=floor_hour(t) - BACKFILL, now=t)
    assert sorted(h for _, h in first.computed) == expected_first
    assert (await scheduler.run_once(t)).computed == []

    # Down for five hours: the next tick fills exactly the missed hours.
    later = t + 5 * HOUR
    second = await scheduler.run_once(later)
    expected_second = settled_hours(after=expected_first[-1] + HOUR, now=later)
    assert len(expected_second) == 5
    assert sorted(h for _, h in second.computed) == expected_second

    # A sample for an hour of the second tick arrives late (0.8 core used > 0.5 requested).
    late_hour = expected_second[1]
    async with db_pool.acquire() as conn:
        await conn.execute(
            """INSERT INTO k8s_resource_metrics (cluster_id, level, namespace, name, sampled_at,
                   cpu_cores) VALUES ($1, 'pod', 'app', 'p', $2, 0.8)""",
            cluster, late_hour + timedelta(minutes=30),
        )
    third = await scheduler.run_once(later)
    assert third.computed == [] and third.recomputed == [(cluster, late_hour)]
    assert (await scheduler.run_once(later)).recomputed == []

    async with db_pool.acquire() as conn:
        rows = await conn.fetch(
            """SELECT period_start, allocated_cost, idle_cost, total_cost FROM k8s_cost_hours
                WHERE cluster_id = $1 ORDER BY period_start""", cluster,
        )
        assert [r["period_start"] for r in rows] == expected_first + expected_second
        assert all(r["total_cost"] == D("1") for r in rows)
        late = next(r for r in rows if r["period_start"] == late_hour)
        assert (late["allocated_cost"], late["idle_cost"]) == (D("0.8"), D("0.2"))
        # Last hour and month-to-date on the cluster row follow the ledger; month-to-date
        # counts only the hours in the UTC month of the last tick's clock (``later``).
        totals = await conn.fetchrow(
            "SELECT cost_last_hour, cost_month_to_date FROM k8s_clusters WHERE id = $1", cluster
        )
        assert totals is not None
        assert (totals["cost_last_hour"], totals["cost_month_to_date"]) == (
            D("1"), MONTH_TO_DATE_AT[instant]
        )


@at_each_instant
async def test_start_and_stop_on_the_running_loop(
    db_pool: asyncpg.Pool, instant: datetime
) -> None:
    """The loop ticks on the clock it was given: two hours old at the instant, two hours."""
    async with db_pool.acquire() as conn:
        org, cluster = await one_node_cluster(conn, created_at=floor_hour(instant) - 2 * HOUR)
    scheduler = CostScheduler(db_pool, book=BOOK, interval_s=0.05, organization_ids=[org],
                              settle=timedelta(0), clock=FrozenClock(instant))
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
