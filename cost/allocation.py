"""Allocation of one finished cluster-hour, the way OpenCost defines it, set-based in SQL.

Per pod: CPU and memory are charged on ``max(request, average usage in the hour)`` times the
price times the fraction of the hour the pod ran (``start_time``, else ``created_at``, up to
``deleted_at``; a pod that finished without being deleted ends at its last sync; a running pod
ends at ``now``), clipped to the hour. A pod with no samples is charged on its request. Pods
never bound to a node are not running anywhere and cost nothing. Storage is the average of the
``storage_bytes`` gauge; network is the growth of the ``network_tx_bytes`` counter within the
hour (transmitted bytes: egress is what providers bill).

Team and cost center come from the namespace (``team`` / ``cost_center`` columns, else its
``team`` / ``cost-center`` labels) unless the pod carries a label of the same name, OpenCost's
convention. Node cost (the node's own ``hourly_cost``, else its instance type's price, else
capacity times prices; split into CPU and memory by the list ratio) minus what was allocated
is the hour's single idle row, namespace ``__idle__``; it is never spread at write time.

Recomputing replaces the hour's rows in one transaction under a per-cluster advisory lock, so
two replicas computing the same hour serialize and the result is the same rows.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import asyncpg

from cost.pricing import PriceBook, PriceSheet, effective_prices
from cost.rollup import refresh_cluster_totals, rollup_hour

IDLE_NAMESPACE = "__idle__"
HOUR = timedelta(hours=1)
# First key of the two-int advisory lock; the second is the cluster's hash.
LOCK_CLASS = 0x0C057

# $1 cluster, $2 hour start, $3 hour end, $4 now (end of still-running pods),
# $5..$8 cpu, memory, storage, network prices, $9 price source.
_ALLOCATE_SQL = """
WITH pods AS (
    SELECT p.namespace, p.name, COALESCE(p.deployment_name, '') AS deployment,
           NULLIF(p.labels->>'team', '') AS pod_team,
           NULLIF(p.labels->>'cost-center', '') AS pod_cost_center,
           COALESCE(p.requests_cpu_cores, 0) AS request_cpu,
           COALESCE(p.requests_memory_bytes, 0) AS request_memory,
           GREATEST(COALESCE(p.start_time, p.created_at), $2) AS run_from,
           LEAST(COALESCE(p.deleted_at,
                          CASE WHEN p.phase IN ('Succeeded', 'Failed') THEN p.synced_at END,
                          $4), $3) AS run_to
      FROM k8s_pods p
     WHERE p.cluster_id = $1 AND p.node_name IS NOT NULL
       AND p.created_at < $3 AND COALESCE(p.start_time, p.created_at) < $3
       AND (p.deleted_at IS NULL OR p.deleted_at > $2)
),
running AS (
    SELECT pods.*, extract(epoch FROM run_to - run_from) / 3600.0 AS fraction
      FROM pods WHERE run_to > run_from
),
usage AS (
    SELECT m.namespace, m.name, avg(m.cpu_cores) AS cpu, avg(m.memory_bytes) AS memory,
           avg(m.storage_bytes) AS storage,
           GREATEST(max(m.network_tx_bytes) - min(m.network_tx_bytes), 0) AS tx_bytes,
           count(*) AS samples
      FROM k8s_resource_metrics m
     WHERE m.cluster_id = $1 AND m.level = 'pod' AND m.sampled_at >= $2 AND m.sampled_at < $3
     GROUP BY m.namespace, m.name
),
namespaces AS (
    SELECT DISTINCT ON (n.name) n.name,
           COALESCE(n.team, NULLIF(n.labels->>'team', '')) AS team,
           COALESCE(n.cost_center, NULLIF(n.labels->>'cost-center', '')) AS cost_center
      FROM k8s_namespaces n
     WHERE n.cluster_id = $1 AND (n.deleted_at IS NULL OR n.deleted_at > $2)
     ORDER BY n.name, (n.deleted_at IS NULL) DESC, n.created_at DESC NULLS LAST
),
per_pod AS (
    SELECT r.namespace, r.deployment,
           COALESCE(r.pod_team, ns.team) AS team,
           COALESCE(r.pod_cost_center, ns.cost_center) AS cost_center,
           GREATEST(r.request_cpu, COALESCE(u.cpu, 0)) * r.fraction AS cpu_core_hours,
           GREATEST(r.request_memory, COALESCE(u.memory, 0)) / 1073741824.0 * r.fraction
               AS memory_gib_hours,
           COALESCE(u.storage, 0) / 1073741824.0 * r.fraction AS storage_gib_hours,
           COALESCE(u.tx_bytes, 0) / 1073741824.0 AS network_gib
      FROM running r
      LEFT JOIN usage u ON u.namespace = r.namespace AND u.name = r.name
      LEFT JOIN namespaces ns ON ns.name = r.namespace
),
grouped AS (
    SELECT namespace, deployment, team, cost_center, count(*) AS pod_count,
           sum(cpu_core_hours) AS cpu_core_hours, sum(memory_gib_hours) AS memory_gib_hours,
           sum(storage_gib_hours) AS storage_gib_hours, sum(network_gib) AS network_gib
      FROM per_pod GROUP BY namespace, deployment, team, cost_center
),
instance_prices AS (
    SELECT DISTINCT ON (instance_type) instance_type, hourly_cost
      FROM k8s_instance_type_prices
     WHERE cluster_id = $1 AND effective_from <= $2
     ORDER BY instance_type, effective_from DESC
),
nodes AS (
    SELECT COALESCE(n.capacity_cpu_cores, 0) AS cpu,
           COALESCE(n.capacity_memory_bytes, 0) / 1073741824.0 AS memory_gib,
           COALESCE(n.hourly_cost, ip.hourly_cost) AS priced,
           extract(epoch FROM LEAST(COALESCE(n.deleted_at, $4), $3)
                              - GREATEST(COALESCE(n.created_at, $2), $2)) / 3600.0 AS fraction
      FROM k8s_nodes n
      LEFT JOIN instance_prices ip ON ip.instance_type = n.instance_type
     WHERE n.cluster_id = $1 AND (n.created_at IS NULL OR n.created_at < $3)
       AND (n.deleted_at IS NULL OR n.deleted_at > $2)
),
node_split AS (
    SELECT fraction, cpu, memory_gib,
           COALESCE(priced, cpu * $5 + memory_gib * $6) AS hourly,
           CASE WHEN cpu * $5 + memory_gib * $6 > 0
                THEN cpu * $5 / (cpu * $5 + memory_gib * $6) ELSE 0.5 END AS cpu_share
      FROM nodes WHERE fraction > 0
),
node_totals AS (
    SELECT COALESCE(sum(fraction * cpu), 0) AS cpu_core_hours,
           COALESCE(sum(fraction * memory_gib), 0) AS memory_gib_hours,
           COALESCE(sum(fraction * hourly * cpu_share), 0) AS cpu_cost,
           COALESCE(sum(fraction * hourly * (1 - cpu_share)), 0) AS memory_cost
      FROM node_split
),
alloc_rows AS (
    SELECT namespace, deployment, team, cost_center, false AS is_idle, pod_count::int,
           round(cpu_core_hours * $5, 6) AS cpu_cost,
           round(memory_gib_hours * $6, 6) AS memory_cost,
           round(storage_gib_hours * $7, 6) AS storage_cost,
           round(network_gib * $8, 6) AS network_cost,
           cpu_core_hours, memory_gib_hours, storage_gib_hours, network_gib
      FROM grouped
),
allocated AS (
    SELECT COALESCE(sum(cpu_cost), 0) AS cpu_cost, COALESCE(sum(memory_cost), 0) AS memory_cost,
           COALESCE(sum(cpu_core_hours), 0) AS cpu_core_hours,
           COALESCE(sum(memory_gib_hours), 0) AS memory_gib_hours
      FROM alloc_rows
),
idle AS (
    SELECT '__idle__'::text AS namespace, ''::text AS deployment, NULL::text AS team,
           NULL::text AS cost_center, true AS is_idle, 0 AS pod_count,
           round(GREATEST(nt.cpu_cost - a.cpu_cost, 0), 6) AS cpu_cost,
           round(GREATEST(nt.memory_cost - a.memory_cost, 0), 6) AS memory_cost,
           0::numeric AS storage_cost, 0::numeric AS network_cost,
           GREATEST(nt.cpu_core_hours - a.cpu_core_hours, 0) AS cpu_core_hours,
           GREATEST(nt.memory_gib_hours - a.memory_gib_hours, 0) AS memory_gib_hours,
           0::numeric AS storage_gib_hours, 0::numeric AS network_gib
      FROM node_totals nt, allocated a
),
inserted AS (
    INSERT INTO k8s_cost_allocations
        (cluster_id, granularity, period_start, namespace, deployment, team, cost_center,
         is_idle, pod_count, cpu_cost, memory_cost, storage_cost, network_cost, total_cost,
         cpu_core_hours, memory_gib_hours, storage_gib_hours, network_gib, computed_at)
    SELECT $1, 'hour', $2, namespace, deployment, team, cost_center, is_idle, pod_count,
           cpu_cost, memory_cost, storage_cost, network_cost,
           cpu_cost + memory_cost + storage_cost + network_cost,
           round(cpu_core_hours, 6), round(memory_gib_hours, 6), round(storage_gib_hours, 6),
           round(network_gib, 6), now()
      FROM (SELECT * FROM alloc_rows UNION ALL SELECT * FROM idle) r
    RETURNING is_idle, total_cost, pod_count
)
INSERT INTO k8s_cost_hours AS h
    (cluster_id, period_start, computed_at, price_cpu_core_hour, price_memory_gib_hour,
     price_storage_gib_hour, price_network_gib, price_source, node_cost, allocated_cost,
     idle_cost, total_cost, pod_count, sample_count)
SELECT $1, $2, now(), $5, $6, $7, $8, $9,
       (SELECT round(cpu_cost + memory_cost, 6) FROM node_totals),
       COALESCE((SELECT sum(total_cost) FROM inserted WHERE NOT is_idle), 0),
       COALESCE((SELECT sum(total_cost) FROM inserted WHERE is_idle), 0),
       COALESCE((SELECT sum(total_cost) FROM inserted), 0),
       COALESCE((SELECT sum(pod_count) FROM inserted), 0),
       COALESCE((SELECT sum(samples) FROM usage), 0)
ON CONFLICT (cluster_id, period_start) DO UPDATE SET
    computed_at = EXCLUDED.computed_at,
    price_cpu_core_hour = EXCLUDED.price_cpu_core_hour,
    price_memory_gib_hour = EXCLUDED.price_memory_gib_hour,
    price_storage_gib_hour = EXCLUDED.price_storage_gib_hour,
    price_network_gib = EXCLUDED.price_network_gib,
    price_source = EXCLUDED.price_source,
    node_cost = EXCLUDED.node_cost, allocated_cost = EXCLUDED.allocated_cost,
    idle_cost = EXCLUDED.idle_cost, total_cost = EXCLUDED.total_cost,
    pod_count = EXCLUDED.pod_count, sample_count = EXCLUDED.sample_count
RETURNING h.node_cost, h.allocated_cost, h.idle_cost, h.total_cost, h.pod_count, h.sample_count
"""


@dataclass(frozen=True)
class HourResult:
    """What one computed cluster-hour came to (the ``k8s_cost_hours`` ledger row)."""

    cluster_id: uuid.UUID
    hour: datetime
    prices: PriceSheet
    node_cost: Decimal
    allocated_cost: Decimal
    idle_cost: Decimal
    total_cost: Decimal
    pod_count: int
    sample_count: int


def floor_hour(moment: datetime) -> datetime:
    """The UTC hour that contains ``moment``."""
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


async def compute_hour(
    conn: asyncpg.Connection,
    *,
    cluster_id: uuid.UUID,
    hour: datetime,
    book: PriceBook,
    now: datetime | None = None,
) -> HourResult | None:
    """Compute (or recompute) one cluster-hour and its day's rollups in one transaction.

    A system job, not a tenant read: callers are the scheduler and admin tools that already
    hold the cluster id. Returns None if the cluster does not exist (deleted meanwhile).
    """
    start = floor_hour(hour)
    if start != hour.astimezone(UTC):
        raise ValueError("hour must be the start of a UTC hour")
    moment = now or datetime.now(UTC)
    async with conn.transaction():
        await conn.execute(
            "SELECT pg_advisory_xact_lock($1, hashtext($2::uuid::text))", LOCK_CLASS, cluster_id
        )
        prices = await effective_prices(conn, cluster_id=cluster_id, at=start, book=book)
        if prices is None:
            return None
        await conn.execute(
            """DELETE FROM k8s_cost_allocations
                WHERE cluster_id = $1 AND granularity = 'hour' AND period_start = $2""",
            cluster_id, start,
        )
        row = await conn.fetchrow(
            _ALLOCATE_SQL, cluster_id, start, start + HOUR, max(moment, start),
            prices.cpu_core_hour, prices.memory_gib_hour, prices.storage_gib_hour,
            prices.network_gib, prices.source,
        )
        assert row is not None
        await rollup_hour(conn, cluster_id=cluster_id, hour=start)
        await refresh_cluster_totals(conn, cluster_id=cluster_id, now=moment)
    return HourResult(
        cluster_id, start, prices, row["node_cost"], row["allocated_cost"], row["idle_cost"],
        row["total_cost"], row["pod_count"], row["sample_count"],
    )
