"""Partitions across a month boundary, metric retention, and the live-pod rule."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from app.partitions import list_partitions
from sync.housekeeping import run_housekeeping
from tests.factories import make_cluster, make_org


@pytest.fixture
async def pool(own_pool: asyncpg.Pool) -> AsyncIterator[asyncpg.Pool]:
    yield own_pool
    await own_pool.execute("DELETE FROM organizations")


def month_name(parent: str, moment: datetime) -> str:
    return f"{parent}_y{moment:%Y}m{moment:%m}"


def add_months(moment: datetime, months: int) -> datetime:
    index = moment.year * 12 + moment.month - 1 + months
    return moment.replace(year=index // 12, month=index % 12 + 1, day=1)


async def test_partitions_are_maintained_across_a_month_boundary(pool: asyncpg.Pool) -> None:
    # Far ahead of any partition the migration made, so each run's effect is visible.
    month_start = add_months(datetime.now(UTC).replace(day=1, hour=0, minute=0, second=0,
                                                       microsecond=0), 24)
    before_boundary = month_start - timedelta(seconds=1)
    await run_housekeeping(pool, now=before_boundary, months_ahead=1, metrics_retention_days=10**4)
    async with pool.acquire() as conn:
        names = set(await list_partitions(conn, "k8s_resource_metrics"))
    assert month_name("k8s_resource_metrics", before_boundary) in names
    assert month_name("k8s_resource_metrics", month_start) in names
    assert month_name("k8s_resource_metrics", add_months(month_start, 1)) not in names
    # Across the boundary the window moves forward by one month.
    await run_housekeeping(pool, now=month_start + timedelta(seconds=1), months_ahead=1,
                           metrics_retention_days=10**4)
    async with pool.acquire() as conn:
        names = set(await list_partitions(conn, "k8s_pods"))
        assert month_name("k8s_pods", add_months(month_start, 1)) in names
        org = await make_org(conn)
        cluster = await make_cluster(conn, org)
        await conn.execute(
            "INSERT INTO k8s_resource_metrics (cluster_id, level, sampled_at)"
            " VALUES ($1, 'cluster', $2)",
            cluster, month_start,
        )
        home = await conn.fetchval(
            "SELECT tableoid::regclass::text FROM k8s_resource_metrics WHERE cluster_id = $1",
            cluster,
        )
    assert home == month_name("k8s_resource_metrics", month_start)


async def test_retention_drops_old_metric_months_but_never_a_running_pod(
    pool: asyncpg.Pool,
) -> None:
    now = datetime.now(UTC)
    old = add_months(now.replace(day=1, hour=0, minute=0, second=0, microsecond=0), -6)
    async with pool.acquire() as conn:
        await run_housekeeping(pool, now=old, months_ahead=0)  # a partition six months ago
        org = await make_org(conn)
        cluster = await make_cluster(conn, org)
        await conn.execute(
            "INSERT INTO k8s_resource_metrics (cluster_id, level, sampled_at) VALUES"
            " ($1, 'cluster', $2), ($1, 'cluster', $3)",
            cluster, old + timedelta(days=1), now,
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
    assert month_name("k8s_resource_metrics", old) in report.dropped
    assert month_name("k8s_pods", old) not in report.dropped  # it holds a running pod
    assert report.pods_deleted == 1
    pods = await pool.fetch("SELECT uid FROM k8s_pods WHERE cluster_id = $1 ORDER BY uid",
                            cluster)
    assert [p["uid"] for p in pods] == ["gone-recently", "running"]
    samples = await pool.fetchval(
        "SELECT count(*) FROM k8s_resource_metrics WHERE cluster_id = $1", cluster
    )
    assert samples == 1
    # Once the running pod is gone and past retention, its empty partition goes too.
    await pool.execute("UPDATE k8s_pods SET deleted_at = $2 WHERE cluster_id = $1", cluster,
                       now - timedelta(days=40))
    report = await run_housekeeping(pool, now=now, metrics_retention_days=60,
                                    pod_retention_days=30)
    assert month_name("k8s_pods", old) in report.dropped
