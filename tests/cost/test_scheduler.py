"""The scheduler computes finished hours, backfills a gap within its bound, recomputes hours
that late samples arrived for, and starts/stops on the running loop — with its clock at each
of tests/clock.py's instants, so the hours and months involved never depend on today."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from decimal import Decimal

import asyncpg

from cost.allocation import floor_hour
from cost.query import CostRow, GroupBy, query_costs
from cost.scheduler import CostScheduler
from tests.clock import (
    FIRST_OF_MONTH,
    LAST_OF_MONTH,
    MID_MONTH,
    NEW_YEARS_EVE,
    FrozenClock,
    at_each_instant,
)
from tests.cost.helpers import BOOK, GIB, one_node_cluster

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
                WHERE cluster_id = $1 AND NOT provisional ORDER BY period_start""", cluster,
        )
        assert [r["period_start"] for r in rows] == expected_first + expected_second
        # After them, the hours not settled at the last tick are there, provisional.
        open_hours = await conn.fetch(
            """SELECT period_start FROM k8s_cost_hours WHERE cluster_id = $1 AND provisional
                ORDER BY period_start""", cluster,
        )
        assert [r["period_start"] for r in open_hours] == [
            expected_second[-1] + k * HOUR
            for k in range(1, int((floor_hour(later) - expected_second[-1]) / HOUR) + 1)
        ]
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
    """The loop ticks on the clock it was given: two hours old at the instant, two final
    hours, and the running one so far."""
    async with db_pool.acquire() as conn:
        org, cluster = await one_node_cluster(conn, created_at=floor_hour(instant) - 2 * HOUR)
    scheduler = CostScheduler(db_pool, book=BOOK, interval_s=0.05, organization_ids=[org],
                              settle=timedelta(0), clock=FrozenClock(instant))
    await scheduler.start()
    try:
        for _ in range(100):
            async with db_pool.acquire() as conn:
                done = await conn.fetchval(
                    """SELECT count(*) FILTER (WHERE NOT provisional)::text || '+'
                              || count(*) FILTER (WHERE provisional)
                         FROM k8s_cost_hours WHERE cluster_id = $1""", cluster
                )
            if done == "2+1":
                break
            await asyncio.sleep(0.05)
        assert done == "2+1"
    finally:
        await scheduler.stop()
    await scheduler.stop()  # idempotent


@at_each_instant
async def test_the_running_hour_is_provisional_then_final(
    db_pool: asyncpg.Pool, instant: datetime
) -> None:
    """The open hour is costed from the samples so far, marked provisional, and replaced by
    the final figure once it has settled.

    One 1-core node at 1.00 /core-hour (no memory), one pod requesting 0.5 core. H is the
    instant's hour; the clock reads H + 20 min, then H + 1 h 10 min.
    """
    h = floor_hour(instant)
    async with db_pool.acquire() as conn:
        org, cluster = await one_node_cluster(conn, created_at=h - timedelta(days=1))
        await conn.execute(
            """INSERT INTO k8s_pods (cluster_id, uid, namespace, name, node_name, phase,
                   requests_cpu_cores, created_at, start_time)
               VALUES ($1, 'p', 'app', 'p', 'n', 'Running', 0.5, $2, $2)""",
            cluster, h - timedelta(days=1),
        )
        await conn.execute(
            """INSERT INTO k8s_resource_metrics (cluster_id, level, namespace, name, sampled_at,
                   cpu_cores) VALUES ($1, 'pod', 'app', 'p', $2, 0.8)""",
            cluster, h + timedelta(minutes=10),
        )
    clock = FrozenClock(h + timedelta(minutes=20))
    scheduler = CostScheduler(db_pool, book=BOOK, backfill=HOUR, settle=SETTLE,
                              budget_alerts=False, organization_ids=[org], clock=clock)

    async def hour_figures(hour: datetime) -> tuple[Decimal, Decimal, Decimal, bool]:
        async with db_pool.acquire() as conn:
            row = await conn.fetchrow(
                """SELECT allocated_cost, idle_cost, total_cost, provisional FROM k8s_cost_hours
                    WHERE cluster_id = $1 AND period_start = $2""", cluster, hour)
        assert row is not None
        return row["allocated_cost"], row["idle_cost"], row["total_cost"], row["provisional"]

    async def costs_of_h() -> list[CostRow]:
        async with db_pool.acquire() as conn:
            return await query_costs(conn, organization_id=org, start=h, end=h + HOUR,
                                     group_by=[GroupBy.NAMESPACE])

    first = await scheduler.run_once()
    # H - 1 settled long ago: final. H is open (20 min in): provisional.
    assert (first.computed, first.provisional) == ([(cluster, h - HOUR)], [(cluster, h)])
    # 20 minutes so far: the node cost 1.00 x 20/60 = 0.333333; the pod's one sample allocates
    # max(0.5 requested, 0.8 used) = 0.8 core, x 20/60 = 0.266667; idle 0.333333 - 0.266667.
    assert await hour_figures(h) == (D("0.266667"), D("0.066666"), D("0.333333"), True)
    app_row, idle_row = await costs_of_h()
    assert (app_row.namespace, app_row.total_cost, app_row.provisional) == (
        "app", D("0.266667"), True)
    assert (idle_row.is_idle, idle_row.total_cost, idle_row.provisional) == (
        True, D("0.066666"), True)
    async with db_pool.acquire() as conn:
        # The cluster's settled figures count final hours only: H - 1 (0.5 + 0.5 idle).
        assert await conn.fetchval(
            "SELECT cost_last_hour FROM k8s_clusters WHERE id = $1", cluster) == D("1")
        # Another sample arrives later in H: 0.2 core used, so the request (0.5) counts.
        await conn.execute(
            """INSERT INTO k8s_resource_metrics (cluster_id, level, namespace, name, sampled_at,
                   cpu_cores) VALUES ($1, 'pod', 'app', 'p', $2, 0.2)""",
            cluster, h + timedelta(minutes=40),
        )

    clock.advance(timedelta(minutes=50))  # H + 1 h 10 min: H has settled
    second = await scheduler.run_once()
    assert second.computed == [(cluster, h)]
    assert second.provisional == [(cluster, h + HOUR)]
    # Final: per sample max(0.5, 0.8) = 0.8 and max(0.5, 0.2) = 0.5, averaged 0.65 core for the
    # whole hour = 0.65; the node 1.00, idle 0.35.
    assert await hour_figures(h) == (D("0.65"), D("0.35"), D("1"), False)
    app_row, idle_row = await costs_of_h()
    assert (app_row.total_cost, app_row.provisional) == (D("0.65"), False)
    assert (idle_row.total_cost, idle_row.provisional) == (D("0.35"), False)
    # H + 1 is now the open hour, 10 minutes in: node 1/6 = 0.166667, all of it on the
    # request (0.5 x 1/6 = 0.083333) and idle.
    assert await hour_figures(h + HOUR) == (D("0.083333"), D("0.083334"), D("0.166667"), True)
    async with db_pool.acquire() as conn:
        assert await conn.fetchval(
            "SELECT cost_last_hour FROM k8s_clusters WHERE id = $1", cluster) == D("1")


async def test_a_late_sample_in_the_next_hour_recomputes_the_hour_its_delta_reaches(
    db_pool: asyncpg.Pool,
) -> None:
    """The counter's first sample after an hour carries bytes sent in that hour; arriving
    after the hour was made final, it still reaches it (and only the hours it spans)."""
    h = floor_hour(MID_MONTH) - 3 * HOUR  # 09:00; the clock reads 12:00
    async with db_pool.acquire() as conn:
        org, cluster = await one_node_cluster(conn, created_at=h - timedelta(days=1))
        await conn.execute(
            """INSERT INTO k8s_pods (cluster_id, uid, namespace, name, node_name, phase,
                   requests_cpu_cores, created_at, start_time)
               VALUES ($1, 'p', 'app', 'p', 'n', 'Running', 0, $2, $2)""",
            cluster, h - timedelta(days=1),
        )
        await conn.execute(
            """INSERT INTO k8s_resource_metrics (cluster_id, level, namespace, name, sampled_at,
                   network_tx_bytes) VALUES ($1, 'pod', 'app', 'p', $2, 0)""",
            cluster, h + timedelta(minutes=50),
        )
    scheduler = CostScheduler(db_pool, book=BOOK, backfill=BACKFILL, settle=SETTLE,
                              budget_alerts=False, organization_ids=[org])
    await scheduler.run_once(MID_MONTH)
    async with db_pool.acquire() as conn:
        # 10:10, 2 GiB: 20 minutes after the 09:50 sample, 10 of them in 09:00.
        await conn.execute(
            """INSERT INTO k8s_resource_metrics (cluster_id, level, namespace, name, sampled_at,
                   network_tx_bytes) VALUES ($1, 'pod', 'app', 'p', $2, $3)""",
            cluster, h + timedelta(minutes=70), 2 * GIB,
        )
    tick = await scheduler.run_once(MID_MONTH)
    assert sorted(tick.recomputed) == [(cluster, h), (cluster, h + HOUR)]
    async with db_pool.acquire() as conn:
        network = await conn.fetch(
            """SELECT period_start, network_cost FROM k8s_cost_hours
                 JOIN k8s_cost_allocations a USING (cluster_id, period_start)
                WHERE cluster_id = $1 AND a.granularity = 'hour' AND a.namespace = 'app'
                ORDER BY period_start""", cluster)
    # 1 GiB each side of 10:00, at 0.05.
    assert {r["period_start"]: r["network_cost"] for r in network}[h] == D("0.05")
    assert {r["period_start"]: r["network_cost"] for r in network}[h + HOUR] == D("0.05")
    assert (await scheduler.run_once(MID_MONTH)).recomputed == []
