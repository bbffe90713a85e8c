"""Monthly partitions: rows land in their month, creation is idempotent and calendar-correct,
and a row outside every partition is kept (then split out by maintenance)."""

from __future__ import annotations

from datetime import UTC, datetime

import asyncpg

from app.partitions import ensure_partitions, list_partitions, split_default_partitions
from tests.factories import make_cluster, make_org


async def _insert_pod(conn: asyncpg.Connection, cluster_id: object, created_at: datetime) -> str:
    table: str = await conn.fetchval(
        """INSERT INTO k8s_pods (cluster_id, uid, namespace, name, created_at)
           VALUES ($1, gen_random_uuid()::text, 'default', 'p', $2)
           RETURNING tableoid::regclass::text""",
        cluster_id, created_at,
    )
    return table


async def _insert_metric(conn: asyncpg.Connection, cluster_id: object, at: datetime) -> str:
    table: str = await conn.fetchval(
        """INSERT INTO k8s_resource_metrics (cluster_id, level, sampled_at, cpu_cores)
           VALUES ($1, 'cluster', $2, 1) RETURNING tableoid::regclass::text""",
        cluster_id, at,
    )
    return table


async def test_pod_and_metric_rows_land_in_their_monthly_partition(db_pool: asyncpg.Pool) -> None:
    async with db_pool.acquire() as conn:
        cluster = await make_cluster(conn, await make_org(conn))
        now = datetime.now(UTC)
        suffix = f"y{now.year:04d}m{now.month:02d}"
        assert await _insert_pod(conn, cluster, now) == f"k8s_pods_{suffix}"
        assert await _insert_metric(conn, cluster, now) == f"k8s_resource_metrics_{suffix}"


async def test_ensure_partitions_is_idempotent_across_december_and_a_leap_february(
    db_pool: asyncpg.Pool,
) -> None:
    async with db_pool.acquire() as conn:
        cluster = await make_cluster(conn, await make_org(conn))
        created = await ensure_partitions(conn, datetime(2027, 12, 31, 23, 30, tzinfo=UTC), 3)
        expected = [f"{p}_{s}" for p in ("k8s_pods", "k8s_resource_metrics")
                    for s in ("y2027m12", "y2028m01", "y2028m02", "y2028m03")]
        assert created == expected
        before = await list_partitions(conn, "k8s_pods")
        assert await ensure_partitions(conn, datetime(2027, 12, 1, tzinfo=UTC), 3) == expected
        assert await list_partitions(conn, "k8s_pods") == before

        # The bounds are whole UTC months: 29 Feb 2028 exists, 1 Mar starts the next one.
        assert await _insert_pod(conn, cluster, datetime(2027, 12, 31, 23, 59, 59, tzinfo=UTC)) \
            == "k8s_pods_y2027m12"
        assert await _insert_pod(conn, cluster, datetime(2028, 1, 1, tzinfo=UTC)) \
            == "k8s_pods_y2028m01"
        assert await _insert_pod(conn, cluster, datetime(2028, 2, 29, 23, 59, 59, tzinfo=UTC)) \
            == "k8s_pods_y2028m02"
        assert await _insert_pod(conn, cluster, datetime(2028, 3, 1, tzinfo=UTC)) \
            == "k8s_pods_y2028m03"
        bounds = await conn.fetchval(
            "SELECT pg_get_expr(relpartbound, oid) FROM pg_class WHERE relname = $1",
            "k8s_pods_y2028m02",
        )
        assert "2028-02-01 00:00:00+00" in bounds and "2028-03-01 00:00:00+00" in bounds


async def test_row_outside_every_partition_is_stored_then_split_out(db_pool: asyncpg.Pool) -> None:
    async with db_pool.acquire() as conn:
        cluster = await make_cluster(conn, await make_org(conn))
        far_past = datetime(1999, 7, 4, 12, tzinfo=UTC)
        assert await _insert_pod(conn, cluster, far_past) == "k8s_pods_default"
        assert await _insert_metric(conn, cluster, far_past) == "k8s_resource_metrics_default"

        # A partition created later for a month the default holds rows of takes those rows.
        created = await split_default_partitions(conn)
        assert "k8s_pods_y1999m07" in created and "k8s_resource_metrics_y1999m07" in created
        where = await conn.fetch(
            "SELECT tableoid::regclass::text AS t FROM k8s_pods WHERE cluster_id = $1", cluster
        )
        assert [r["t"] for r in where] == ["k8s_pods_y1999m07"]
        assert await conn.fetchval("SELECT count(*) FROM k8s_pods_default") == 0
        assert await conn.fetchval(
            "SELECT count(*) FROM k8s_resource_metrics WHERE cluster_id = $1", cluster
        ) == 1
