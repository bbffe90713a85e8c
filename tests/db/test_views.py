"""Both views against hand-made rows, with every expected figure worked out by hand below."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import asyncpg

from tests.factories import make_cluster, make_org

GIB = 1024**3
MIB = 1024**2


async def test_cluster_health_view_figures(db_pool: asyncpg.Pool) -> None:
    now = datetime.now(UTC)
    async with db_pool.acquire() as conn:
        org = await make_org(conn)
        cluster = await make_cluster(
            conn, org, price_cpu_core_hour=Decimal("0.04"), price_memory_gib_hour=Decimal("0.005")
        )
        nodes = [
            # name, ready, cores, memory, usage cores, usage memory, hourly_cost, deleted
            ("n1", True, 4, 16 * GIB, Decimal("1.5"), 4 * GIB, None, None),
            ("n2", False, 2, 8 * GIB, Decimal("0.5"), 2 * GIB, Decimal("0.5"), None),
            ("n3", True, 64, 256 * GIB, Decimal("9"), GIB, Decimal("9"), now),  # gone: ignored
        ]
        for name, ready, cores, mem, ucpu, umem, cost, deleted in nodes:
            await conn.execute(
                """INSERT INTO k8s_nodes (cluster_id, uid, name, ready, capacity_cpu_cores,
                       capacity_memory_bytes, usage_cpu_cores, usage_memory_bytes, hourly_cost,
                       deleted_at)
                   VALUES ($1, $2, $2, $3, $4, $5, $6, $7, $8, $9)""",
                cluster, name, ready, cores, mem, ucpu, umem, cost, deleted,
            )
        for name, desired, available, deleted in [
            ("d1", 3, 3, None), ("d2", 2, 1, None), ("d3", 1, 1, now)
        ]:
            await conn.execute(
                """INSERT INTO k8s_deployments (cluster_id, uid, namespace, name, replicas_desired,
                       replicas_available, deleted_at) VALUES ($1, $2, 'ns', $2, $3, $4, $5)""",
                cluster, name, desired, available, deleted,
            )
        pods = [
            ("a", "Running", Decimal("0.5"), GIB, None),
            ("b", "Running", Decimal("0.25"), 512 * MIB, None),
            ("c", "Pending", Decimal("0.1"), 128 * MIB, None),
            ("d", "Failed", Decimal("1"), GIB, None),
            ("e", "Succeeded", Decimal("1"), GIB, None),
            ("f", "Running", Decimal("8"), 8 * GIB, now),  # deleted: ignored
        ]
        for name, phase, cpu, mem, deleted in pods:
            await conn.execute(
                """INSERT INTO k8s_pods (cluster_id, uid, namespace, name, phase,
                       requests_cpu_cores, requests_memory_bytes, created_at, deleted_at)
                   VALUES ($1, $2, 'ns', $2, $3, $4, $5, now(), $6)""",
                cluster, name, phase, cpu, mem, deleted,
            )
        samples = [
            # pod a: counters 0 (30 h ago, outside the window), 2 (23 h ago), 5 (1 h ago)
            ("a", now - timedelta(hours=30), 0, 0),
            ("a", now - timedelta(hours=23), 2, 0),
            ("a", now - timedelta(hours=1), 5, 1),
            # pod b: one sample in the window, so no increase is visible
            ("b", now - timedelta(hours=2), 7, 3),
        ]
        for name, at, restarts, ooms in samples:
            await conn.execute(
                """INSERT INTO k8s_resource_metrics (cluster_id, level, namespace, name,
                       sampled_at, restarts, oom_kills) VALUES ($1, 'pod', 'ns', $2, $3, $4, $5)""",
                cluster, name, at, restarts, ooms,
            )
        row = await conn.fetchrow(
            "SELECT * FROM v_k8s_cluster_health WHERE cluster_id = $1", cluster
        )
    assert row is not None
    assert (row["nodes_total"], row["nodes_ready"]) == (2, 1)
    assert (row["deployments_total"], row["deployments_healthy"]) == (2, 1)
    assert (row["pods_total"], row["pods_running"], row["pods_pending"]) == (5, 2, 1)
    assert (row["pods_failed"], row["pods_succeeded"], row["pods_unknown"]) == (1, 1, 0)
    # a: 5 - 2 = 3 restarts and 1 - 0 = 1 OOM kill in 24 h; b: 7 - 7 = 0 and 3 - 3 = 0.
    assert (row["restarts_24h"], row["oom_kills_24h"]) == (3, 1)
    assert row["cpu_capacity_cores"] == 6 and row["memory_capacity_bytes"] == 24 * GIB
    assert row["cpu_usage_cores"] == Decimal("2.0") and row["memory_usage_bytes"] == 6 * GIB
    # Running + Pending requests: 0.5 + 0.25 + 0.1 cores; 1 GiB + 512 MiB + 128 MiB.
    assert row["cpu_requests_cores"] == Decimal("0.85")
    assert row["memory_requests_bytes"] == GIB + 512 * MIB + 128 * MIB
    # n1 from prices: 4 x 0.04 + 16 x 0.005 = 0.24; n2 has its own 0.50 -> 0.74 an hour,
    # x 730 hours = 540.20 a month.
    assert round(row["estimated_hourly_cost"], 6) == Decimal("0.740000")
    assert round(row["estimated_monthly_cost"], 2) == Decimal("540.20")


async def test_namespace_costs_view_figures(db_pool: asyncpg.Pool) -> None:
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    async with db_pool.acquire() as conn:
        cluster = await make_cluster(conn, await make_org(conn))
        for name, team, cc, deleted in [
            ("payments", "pay", "CC-1", None), ("empty", "web", "CC-2", None),
            ("gone", "pay", "CC-1", today),
        ]:
            await conn.execute(
                """INSERT INTO k8s_namespaces (cluster_id, uid, name, team, cost_center, deleted_at)
                   VALUES ($1, $2, $2, $3, $4, $5)""",
                cluster, name, team, cc, deleted,
            )
        rows = [
            # namespace, idle, granularity, period start, cpu, memory, total, core hours
            ("payments", False, "day", today, 6, 4, 10, 24),
            ("payments", False, "day", today - timedelta(days=5), 12, 8, 20, 48),
            ("payments", False, "day", today - timedelta(days=40), 600, 400, 1000, 9),  # too old
            ("payments", False, "hour", today, 50, 49, 99, 1),  # hourly: not in the daily sum
            ("__idle__", True, "day", today, 3, 3, 6, 0),  # idle is not a namespace's cost
        ]
        for ns, idle, gran, start, cpu, mem, total, hours in rows:
            await conn.execute(
                """INSERT INTO k8s_cost_attribution (cluster_id, namespace, is_idle, team,
                       cost_center, granularity, period_start, cpu_cost, memory_cost, total_cost,
                       cpu_core_hours)
                   VALUES ($1, $2, $3, 'pay', 'CC-1', $4, $5, $6, $7, $8, $9)""",
                cluster, ns, idle, gran, start, cpu, mem, total, hours,
            )
        found = {
            r["namespace"]: r
            for r in await conn.fetch(
                "SELECT * FROM v_k8s_namespace_costs WHERE cluster_id = $1", cluster
            )
        }
    assert set(found) == {"payments", "empty"}
    pay = found["payments"]
    # Two daily rows in the last 30 days: 10 + 20 = 30 over 2 days -> 15 a day.
    assert pay["total_cost_30d"] == 30 and pay["days_with_cost"] == 2
    assert pay["avg_daily_cost"] == 15
    assert (pay["cpu_cost_30d"], pay["memory_cost_30d"], pay["cpu_core_hours_30d"]) == (18, 12, 72)
    assert (pay["team"], pay["cost_center"]) == ("pay", "CC-1")
    empty = found["empty"]
    assert (empty["total_cost_30d"], empty["avg_daily_cost"], empty["team"]) == (0, 0, "web")
