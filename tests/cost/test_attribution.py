"""How samples and claims become an hour's cost, worked by hand (issue 14): the network counter
across an hour boundary and through a reset, a pod re-created under its name inside an hour,
OpenCost's per-sample ``max(request, usage)``, and storage from PersistentVolumeClaims.

Every cluster here is ``one_node_cluster``: CPU 1.00 /core-hour, memory 0.10 /GiB-hour,
storage 0.01 /GiB-hour, network 0.05 /GiB. ``H`` is 10:00 UTC on the day before the test's
instant (tests/clock.py), so nothing depends on the day the suite runs.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from decimal import Decimal

import asyncpg

from cost.allocation import compute_hour
from cost.query import CostRow, GroupBy, query_costs
from tests.clock import MID_MONTH
from tests.cost.helpers import BOOK, GIB, one_node_cluster
from tests.cost.scenario import yesterday_10

D = Decimal
HOUR = timedelta(hours=1)
M = timedelta(minutes=1)
H = yesterday_10(MID_MONTH)


async def _pod(
    conn: asyncpg.Connection, cluster: uuid.UUID, *, uid: str, name: str, cpu: str,
    created: datetime, deleted: datetime | None = None, namespace: str = "app",
) -> None:
    await conn.execute(
        """INSERT INTO k8s_pods (cluster_id, uid, namespace, name, node_name, phase,
               requests_cpu_cores, requests_memory_bytes, created_at, start_time, deleted_at)
           VALUES ($1, $2, $3, $4, 'n', 'Running', $5, 0, $6, $6, $7)""",
        cluster, uid, namespace, name, D(cpu), created, deleted,
    )


async def _samples(
    conn: asyncpg.Connection, cluster: uuid.UUID, name: str,
    points: list[tuple[datetime, str | None, str | None]], namespace: str = "app",
) -> None:
    """``(time, cpu cores, transmitted GiB so far)`` samples of pod ``name``."""
    await conn.executemany(
        """INSERT INTO k8s_resource_metrics (cluster_id, level, namespace, name, sampled_at,
               cpu_cores, network_tx_bytes)
           VALUES ($1, 'pod', $2, $3, $4, $5, $6)""",
        [(cluster, namespace, name, at, None if cpu is None else D(cpu),
          None if tx is None else int(D(tx) * GIB)) for at, cpu, tx in points],
    )


async def _hour(pool: asyncpg.Pool, org: uuid.UUID, hour: datetime) -> dict[str, CostRow]:
    async with pool.acquire() as conn:
        rows = await query_costs(conn, organization_id=org, start=hour, end=hour + HOUR,
                                 group_by=[GroupBy.NAMESPACE])
    return {"__idle__" if r.is_idle else str(r.namespace): r for r in rows}


async def _ledger_samples(pool: asyncpg.Pool, cluster: uuid.UUID, hour: datetime) -> int:
    count: int = await pool.fetchval(
        "SELECT sample_count FROM k8s_cost_hours WHERE cluster_id = $1 AND period_start = $2",
        cluster, hour,
    )
    return count


async def test_network_delta_across_an_hour_boundary_is_split_by_time(
    db_pool: asyncpg.Pool,
) -> None:
    async with db_pool.acquire() as conn:
        org, cluster = await one_node_cluster(conn, created_at=H - timedelta(days=1))
        await _pod(conn, cluster, uid="p", name="p", cpu="0", created=H - timedelta(days=1))
        # Counter: 0 GiB at 10:10, 1 GiB at 10:50, 3 GiB at 11:10.
        await _samples(conn, cluster, "p", [
            (H + 10 * M, None, "0"), (H + 50 * M, None, "1"), (H + 70 * M, None, "3"),
        ])
        for hour in (H, H + HOUR):
            await compute_hour(conn, cluster_id=cluster, hour=hour, book=BOOK, now=MID_MONTH)
    first, second = await _hour(db_pool, org, H), await _hour(db_pool, org, H + HOUR)
    # 10:10-10:50: 1 GiB, all in H. 10:50-11:10: 2 GiB over 20 minutes, 10 of them in H:
    # 1 GiB to H, 1 GiB to H+1. H: 2 GiB x 0.05 = 0.10; H+1: 1 GiB = 0.05. (Max - min inside
    # each hour would have charged 1 GiB and nothing.)
    assert (first["app"].network_gib, first["app"].network_cost) == (D("2"), D("0.10"))
    assert (second["app"].network_gib, second["app"].network_cost) == (D("1"), D("0.05"))
    # What each hour read: H its two samples and the 10:50-11:10 interval reaching out of it;
    # H+1 its one sample and the same interval reaching in.
    assert await _ledger_samples(db_pool, cluster, H) == 2 + 1
    assert await _ledger_samples(db_pool, cluster, H + HOUR) == 1 + 1


async def test_a_counter_that_goes_down_was_reset(db_pool: asyncpg.Pool) -> None:
    async with db_pool.acquire() as conn:
        org, cluster = await one_node_cluster(conn, created_at=H - timedelta(days=1))
        await _pod(conn, cluster, uid="p", name="p", cpu="0", created=H - timedelta(days=1))
        # 5 GiB at 10:10, 6 at 10:20; the container restarts: 1 at 10:30, 2 at 10:40.
        await _samples(conn, cluster, "p", [
            (H + 10 * M, None, "5"), (H + 20 * M, None, "6"),
            (H + 30 * M, None, "1"), (H + 40 * M, None, "2"),
        ])
        await compute_hour(conn, cluster_id=cluster, hour=H, book=BOOK, now=MID_MONTH)
    app = (await _hour(db_pool, org, H))["app"]
    # Deltas 6 - 5 = 1, then a reset (1 < 6): the new value, 1, then 2 - 1 = 1: 3 GiB = 0.15.
    # (Max - min would say 6 - 1 = 5 GiB.)
    assert (app.network_gib, app.network_cost) == (D("3"), D("0.15"))


async def test_a_pod_recreated_by_name_inside_an_hour_is_two_incarnations(
    db_pool: asyncpg.Pool,
) -> None:
    async with db_pool.acquire() as conn:
        org, cluster = await one_node_cluster(conn, created_at=H - timedelta(days=1))
        # A StatefulSet rollout: db-0 (uid a, 0.25 core) deleted at 10:30, db-0 (uid b,
        # 0.5 core) created at 10:31.
        await _pod(conn, cluster, uid="a", name="db-0", cpu="0.25",
                   created=H - timedelta(days=1), deleted=H + 30 * M)
        await _pod(conn, cluster, uid="b", name="db-0", cpu="0.5", created=H + 31 * M)
        await _samples(conn, cluster, "db-0", [
            (H + 10 * M, "0.5", "10"), (H + 25 * M, "0.5", "11"),  # a: 10 -> 11 GiB
            (H + 40 * M, "0.1", "0.5"), (H + 55 * M, "0.1", "1.5"),  # b: its own counter
        ])
        await compute_hour(conn, cluster_id=cluster, hour=H, book=BOOK, now=MID_MONTH)
    hour = await _hour(db_pool, org, H)
    app = hour["app"]
    # a: max(0.25, 0.5) = 0.5 core for the 30 minutes it ran = 0.25 core-hours;
    # b: max(0.5, 0.1) = 0.5 core for 29 minutes = 0.241667. 0.491667 core-hours x 1.00.
    # (Matched by name, both would average 0.3 core: a 0.15, b 0.241667.)
    assert (app.cpu_core_hours, app.cpu_cost) == (D("0.491667"), D("0.491667"))
    # a sent 1 GiB, b 1 GiB: 2 GiB = 0.10. (By name, the span 0.5 -> 11 GiB crosses b's
    # reset and each incarnation would be charged 10.5 GiB.)
    assert (app.network_gib, app.network_cost) == (D("2"), D("0.10"))
    assert hour["__idle__"].cpu_cost == D("0.508333")  # the node's 1.00 - 0.491667


async def test_allocation_is_max_of_request_and_usage_per_sample_then_averaged(
    db_pool: asyncpg.Pool,
) -> None:
    async with db_pool.acquire() as conn:
        org, cluster = await one_node_cluster(conn, created_at=H - timedelta(days=1))
        await _pod(conn, cluster, uid="p", name="p", cpu="0.5", created=H - timedelta(days=1))
        await _samples(conn, cluster, "p", [(H + 10 * M, "0.2", None), (H + 40 * M, "0.9", None)])
        await compute_hour(conn, cluster_id=cluster, hour=H, book=BOOK, now=MID_MONTH)
    app = (await _hour(db_pool, org, H))["app"]
    # OpenCost: max(0.5, 0.2) = 0.5 and max(0.5, 0.9) = 0.9, averaged: 0.7 core for the hour.
    # (The max of the request and the hour's average usage would be max(0.5, 0.55) = 0.55.)
    assert (app.cpu_core_hours, app.cpu_cost) == (D("0.7"), D("0.7"))


async def test_bound_claims_are_charged_their_requested_capacity_per_gib_hour(
    db_pool: asyncpg.Pool,
) -> None:
    async with db_pool.acquire() as conn:
        org, cluster = await one_node_cluster(
            conn, created_at=H - timedelta(days=1),
            storage_classes={"premium": D("0.002"), "cheap": D("0.0005")},
        )
        await conn.execute(
            """INSERT INTO k8s_namespaces (cluster_id, uid, name, team, created_at)
               VALUES ($1, 'db', 'db', 'data', $2)""", cluster, H - timedelta(days=1))
        await _pod(conn, cluster, uid="db-0", name="db-0", cpu="0.5", namespace="db",
                   created=H - timedelta(days=1))
        claims = [
            # name, phase, class, volume, requested GiB, created
            ("data-db-0", "Bound", "standard", "pv-1", 10, H - timedelta(days=1)),
            ("logs-db-0", "Bound", "standard", "pv-2", 5, H + 30 * M),
            ("cache-db-0", "Bound", "cheap", "pv-gone", 4, H - timedelta(days=1)),
            ("waiting", "Pending", "premium", None, 100, H - timedelta(days=1)),
        ]
        await conn.executemany(
            """INSERT INTO k8s_persistent_volume_claims (cluster_id, uid, namespace, name, phase,
                   storage_class, volume_name, requests_storage_bytes, created_at)
               VALUES ($1, $2, 'db', $2, $3, $4, $5, $6, $7)""",
            [(cluster, name, phase, cls, volume, gib * GIB, created)
             for name, phase, cls, volume, gib, created in claims],
        )
        await conn.executemany(
            """INSERT INTO k8s_persistent_volumes (cluster_id, uid, name, storage_class,
                   capacity_bytes, phase, claim_namespace, claim_name, created_at)
               VALUES ($1, $2, $2, $3, $4, 'Bound', 'db', $5, $6)""",
            [(cluster, "pv-1", "premium", 10 * GIB, "data-db-0", H - timedelta(days=1)),
             (cluster, "pv-2", "standard", 5 * GIB, "logs-db-0", H + 30 * M)],
        )
        await compute_hour(conn, cluster_id=cluster, hour=H, book=BOOK, now=MID_MONTH)
        row = await conn.fetchrow(
            """SELECT team, pod_count, storage_gib_hours, storage_cost FROM k8s_cost_allocations
                WHERE cluster_id = $1 AND granularity = 'hour' AND namespace = 'db'""", cluster)
    # data-db-0: 10 GiB x 1 h on a premium volume (0.002) = 0.02;
    # logs-db-0: 5 GiB from 10:30 = 2.5 GiB-h, standard has no price: the cluster's 0.01 = 0.025;
    # cache-db-0: its volume is unknown, its own class "cheap" (0.0005): 4 GiB-h = 0.002;
    # waiting is not bound: nothing. 16.5 GiB-hours, 0.047, on the pod's namespace row.
    assert row is not None
    assert (row["team"], row["pod_count"], row["storage_gib_hours"], row["storage_cost"]) == (
        "data", 1, D("16.5"), D("0.047"))
    db = (await _hour(db_pool, org, H))["db"]
    assert (db.cpu_cost, db.storage_cost, db.total_cost) == (D("0.5"), D("0.047"), D("0.547"))
