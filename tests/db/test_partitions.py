"""Monthly partitions: rows land in their month, creation is idempotent and calendar-correct,
and a row outside every partition is kept (then split out by maintenance).

No expectation comes from today's date: partitions are made at tests/clock.py's instants,
and the migration's own partitions are checked against the server's ``now()``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from app.partitions import (
    PARTITIONED_TABLES,
    ensure_partitions,
    list_partitions,
    split_default_partitions,
)
from tests.clock import (
    FIRST_OF_MONTH,
    LAST_OF_MONTH,
    MID_MONTH,
    NEW_YEARS_EVE,
    add_months,
    at_each_instant,
)
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


def suffix(moment: datetime) -> str:
    """The partition suffix of ``moment``'s UTC month."""
    utc = moment.astimezone(UTC)
    return f"y{utc.year:04d}m{utc.month:02d}"


async def test_the_migrations_partitions_serve_the_servers_now(db_pool: asyncpg.Pool) -> None:
    """The migration ran ``fleetgraph_ensure_partitions(now(), 3)`` on the server's clock, so
    the expectation is read from that clock (fixed within the transaction), not from the
    calendar: the server's month and the two after it exist even if the month has turned
    since the migration ran, and a row stamped with the server's now lands in its month."""
    async with db_pool.acquire() as conn, conn.transaction():
        server_now: datetime = await conn.fetchval("SELECT now()")
        cluster = await make_cluster(conn, await make_org(conn))
        for parent in PARTITIONED_TABLES:
            names = set(await list_partitions(conn, parent))
            assert {f"{parent}_{suffix(add_months(server_now, i))}" for i in range(3)} <= names
        assert await _insert_pod(conn, cluster, server_now) == f"k8s_pods_{suffix(server_now)}"
        assert await _insert_metric(conn, cluster, server_now) \
            == f"k8s_resource_metrics_{suffix(server_now)}"


# Each instant's UTC month and the next, worked out by hand.
MONTHS_AT: dict[datetime, tuple[str, str]] = {
    FIRST_OF_MONTH: ("y2027m03", "y2027m04"),
    MID_MONTH: ("y2027m03", "y2027m04"),
    LAST_OF_MONTH: ("y2028m02", "y2028m03"),
    NEW_YEARS_EVE: ("y2027m12", "y2028m01"),
}


@at_each_instant
@pytest.mark.parametrize("session_zone", ["UTC", "Etc/GMT-14", "Etc/GMT+12"],
                         ids=["utc", "utc+14", "utc-12"])
async def test_rows_land_in_the_partition_of_their_utc_month(
    db_pool: asyncpg.Pool, instant: datetime, session_zone: str
) -> None:
    """Months are UTC months whatever the session's time zone says: at 23:30 UTC on the last
    of a month it is already the 1st in UTC+14, and at 00:30 UTC on the 1st it is still the
    previous month in UTC-12 (POSIX ``Etc/GMT-14`` is UTC+14)."""
    this_month, next_month = MONTHS_AT[instant]
    month_end = add_months(instant, 1)
    async with db_pool.acquire() as conn, conn.transaction():
        await conn.execute(f"SET LOCAL TimeZone = '{session_zone}'")
        cluster = await make_cluster(conn, await make_org(conn))
        assert await ensure_partitions(conn, instant, 1) == [
            f"{p}_{m}" for p in PARTITIONED_TABLES for m in (this_month, next_month)
        ]
        assert await _insert_pod(conn, cluster, instant) == f"k8s_pods_{this_month}"
        assert await _insert_metric(conn, cluster, instant) \
            == f"k8s_resource_metrics_{this_month}"
        # The month's last microsecond is still this month; the next one starts the next.
        assert await _insert_pod(conn, cluster, month_end - timedelta(microseconds=1)) \
            == f"k8s_pods_{this_month}"
        assert await _insert_pod(conn, cluster, month_end) == f"k8s_pods_{next_month}"


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
