"""Partitions across a month boundary, metric retention, and the live-pod rule — with the
housekeeping clock at each of tests/clock.py's instants.

Each test starts from a database of this module's own with no monthly partition at all (the
migration's, made for the server's real month, are dropped first), so which partitions exist
is decided by the instants the test runs housekeeping at, never by today's date.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta

import asyncpg
import pytest

from app.partitions import PARTITIONED_TABLES, list_partitions
from sync.housekeeping import run_housekeeping
from tests.clock import add_months, at_each_instant
from tests.factories import make_cluster, make_org

SECOND = timedelta(seconds=1)


async def _drop_monthly_partitions(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        for parent in PARTITIONED_TABLES:
            for name in await list_partitions(conn, parent):
                if name != f"{parent}_default":
                    await conn.execute(f'DROP TABLE "{name}"')


@pytest.fixture
async def pool(own_pool: asyncpg.Pool) -> AsyncIterator[asyncpg.Pool]:
    await own_pool.execute("DELETE FROM organizations")
    await _drop_monthly_partitions(own_pool)
    yield own_pool
    await own_pool.execute("DELETE FROM organizations")


def month_name(parent: str, moment: datetime) -> str:
    return f"{parent}_y{moment:%Y}m{moment:%m}"


async def partitions(pool: asyncpg.Pool, parent: str) -> set[str]:
    async with pool.acquire() as conn:
        return set(await list_partitions(conn, parent))


@at_each_instant
async def test_partitions_are_maintained_across_a_month_boundary(
    pool: asyncpg.Pool, instant: datetime
) -> None:
    this_month, next_month = add_months(instant, 0), add_months(instant, 1)
    window = {this_month, next_month}
    for parent in PARTITIONED_TABLES:
        assert await partitions(pool, parent) == {f"{parent}_default"}

    report = await run_housekeeping(pool, now=instant, months_ahead=1,
                                    metrics_retention_days=10**4)
    assert report.ran and report.dropped == []
    for parent in PARTITIONED_TABLES:
        assert await partitions(pool, parent) == {f"{parent}_default"} | {
            month_name(parent, m) for m in window}
    # The month's last second changes nothing; the next month's first moves the window on.
    await run_housekeeping(pool, now=next_month - SECOND, months_ahead=1,
                           metrics_retention_days=10**4)
    assert await partitions(pool, "k8s_pods") == {"k8s_pods_default"} | {
        month_name("k8s_pods", m) for m in window}
    await run_housekeeping(pool, now=next_month + SECOND, months_ahead=1,
                           metrics_retention_days=10**4)
    window.add(add_months(instant, 2))
    for parent in PARTITIONED_TABLES:
        assert await partitions(pool, parent) == {f"{parent}_default"} | {
            month_name(parent, m) for m in window}
    async with pool.acquire() as conn:
        cluster = await make_cluster(conn, await make_org(conn))
        await conn.execute(
            "INSERT INTO k8s_resource_metrics (cluster_id, level, sampled_at)"
            " VALUES ($1, 'cluster', $2), ($1, 'cluster', $3)",
            cluster, next_month - SECOND, next_month,
        )
        homes = await conn.fetch(
            """SELECT tableoid::regclass::text AS home FROM k8s_resource_metrics
                WHERE cluster_id = $1 ORDER BY sampled_at""",
            cluster,
        )
    assert [h["home"] for h in homes] == [month_name("k8s_resource_metrics", this_month),
                                          month_name("k8s_resource_metrics", next_month)]


@at_each_instant
async def test_retention_drops_old_metric_months_but_never_a_running_pod(
    pool: asyncpg.Pool, instant: datetime
) -> None:
    now = instant
    old = add_months(now, -6)  # the 1st of the month six months before
    async with pool.acquire() as conn:
        await run_housekeeping(pool, now=old, months_ahead=0)  # a partition six months ago
        cluster = await make_cluster(conn, await make_org(conn))
        # A sample in the old month, one at now (its month has no partition yet: DEFAULT), and
        # one in the month before the old one (no partition ever: DEFAULT, past retention).
        await conn.execute(
            "INSERT INTO k8s_resource_metrics (cluster_id, level, sampled_at) VALUES"
            " ($1, 'cluster', $2), ($1, 'cluster', $3), ($1, 'cluster', $4)",
            cluster, old + timedelta(days=1), now, add_months(now, -7) + timedelta(days=1),
        )
        await conn.execute(
            """
            INSERT INTO k8s_pods (cluster_id, uid, namespace, name, created_at, deleted_at) VALUES
              ($1, 'running', 'ns', 'still-running', $2, NULL),
              ($1, 'gone-long-ago', 'ns', 'gone', $2, $2::timestamptz + interval '2 days'),
              ($1, 'gone-recently', 'ns', 'gone-recently', $2, $3::timestamptz - interval '1 day')
            """,
            cluster, old + timedelta(days=1), now,
        )
    report = await run_housekeeping(pool, now=now, metrics_retention_days=60,
                                    pod_retention_days=30)
    # The clock's month and three ahead were made; only the old metrics month went, whole.
    assert report.partitions == [month_name(p, add_months(now, i))
                                 for p in PARTITIONED_TABLES for i in range(4)]
    assert report.dropped == [month_name("k8s_resource_metrics", old)]  # not the pods': live pod
    assert (report.pods_deleted, report.metrics_deleted) == (1, 1)
    pods = await pool.fetch("SELECT uid FROM k8s_pods WHERE cluster_id = $1 ORDER BY uid",
                            cluster)
    assert [p["uid"] for p in pods] == ["gone-recently", "running"]
    samples = await pool.fetch(
        "SELECT tableoid::regclass::text AS home, sampled_at FROM k8s_resource_metrics"
        " WHERE cluster_id = $1", cluster
    )
    # The sample at now moved out of DEFAULT into its month's new partition.
    assert [(s["home"], s["sampled_at"]) for s in samples] == [
        (month_name("k8s_resource_metrics", now), now)]
    # Once the running pod is gone and past retention, its empty partition goes too.
    await pool.execute("UPDATE k8s_pods SET deleted_at = $2 WHERE cluster_id = $1", cluster,
                       now - timedelta(days=40))
    report = await run_housekeeping(pool, now=now, metrics_retention_days=60,
                                    pod_retention_days=30)
    assert report.dropped == [month_name("k8s_pods", old)]
    assert await partitions(pool, "k8s_pods") == {"k8s_pods_default"} | {
        month_name("k8s_pods", add_months(now, i)) for i in range(4)}
