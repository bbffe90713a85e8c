"""Allocation of one cluster-hour, the way OpenCost defines it, set-based in SQL.

Per pod incarnation (samples are matched to pods by uid, see ``cost.samples``): CPU and memory
are allocated ``max(request, usage)`` per sample, averaged over the hour's samples (OpenCost's
``container_cpu_allocation`` averaged over the window), times the fraction of the hour the pod
ran (``start_time``, else ``created_at``, up to ``deleted_at``; a pod that finished without
being deleted ends at its last sync; a running pod ends at ``now``), clipped to the hour, times
the price. A pod with no samples is allocated its request. Pods never bound to a node are not
running anywhere and cost nothing. Ephemeral storage is the average of the ``storage_bytes``
gauge; network is the ``network_tx_bytes`` counter's growth attributed to the hour
(transmitted bytes: egress is what providers bill).

Persistent storage: each PersistentVolumeClaim that is ``Bound``, for the part of the hour it
existed, is charged its requested capacity in GiB-hours at the price of its volume's storage
class, else the claim's storage class (``k8s_storage_class_prices``), else the cluster's
storage price. It lands on its namespace's row without a deployment.

Team and cost center come from the namespace (``team`` / ``cost_center`` columns, else its
``team`` / ``cost-center`` labels) unless the pod (or claim) carries a label of the same name,
OpenCost's convention. Node cost (the node's own ``hourly_cost``, else its instance type's
price, else capacity times prices; split into CPU and memory by the list ratio) minus what
was allocated is the hour's single idle row, namespace ``__idle__``; it is never spread at
write time.

The running hour (or a closed one whose last samples may still arrive) is computed the same
way from what is there so far and marked ``provisional``; computing it again once it has
settled replaces it with the final figure.

Recomputing replaces the hour's rows in one transaction, so the result is the same rows.
Locks, always in this order: the per-cluster advisory lock (two replicas computing the same
hour serialize), then the cluster row FOR NO KEY UPDATE, before any row that references the
cluster is written. The sync locks that row too: a reachability change updates its status and
then ``update_cluster_health`` takes it FOR UPDATE. Had we taken only the foreign-key checks'
FOR KEY SHARE and updated the row's totals at the end, each side would wait for the other
(issue 14; tests/cost/test_lock_order.py). Holding the row first, we never wait for the sync
while holding anything it needs.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import asyncpg

from cost.pricing import PriceBook, PriceSheet, effective_prices
from cost.rollup import refresh_cluster_totals, rollup_hour
from cost.samples import COUNTER_MAX_GAP, SAMPLE_CTES

IDLE_NAMESPACE = "__idle__"
HOUR = timedelta(hours=1)
# First key of the two-int advisory lock; the second is the cluster's hash.
LOCK_CLASS = 0x0C057

# $1 cluster, $2 hour start, $3 hour end, $4 counter gap (cost.samples), $5 now (end of
# still-running pods and nodes), $6..$9 cpu, memory, storage, network prices, $10 price
# source, $11 provisional.
_ALLOCATE_SQL = f"""
WITH {SAMPLE_CTES},
running AS (
    SELECT r.*, extract(epoch FROM run_to - run_from) / 3600.0 AS fraction
      FROM (SELECT i.pod_key, i.namespace, COALESCE(i.deployment_name, '') AS deployment,
                   NULLIF(i.labels->>'team', '') AS own_team,
                   NULLIF(i.labels->>'cost-center', '') AS own_cost_center,
                   i.request_cpu, i.request_memory,
                   GREATEST(COALESCE(i.start_time, i.created_at), $2) AS run_from,
                   LEAST(COALESCE(i.deleted_at,
                                  CASE WHEN i.phase IN ('Succeeded', 'Failed')
                                       THEN i.synced_at END,
                                  $5), i.ends_at, $3) AS run_to
              FROM incarnations i
             WHERE i.node_name IS NOT NULL AND i.created_at < $3
               AND COALESCE(i.start_time, i.created_at) < $3) r
     WHERE run_to > run_from
),
namespaces AS (
    SELECT DISTINCT ON (n.name) n.name,
           COALESCE(n.team, NULLIF(n.labels->>'team', '')) AS team,
           COALESCE(n.cost_center, NULLIF(n.labels->>'cost-center', '')) AS cost_center
      FROM k8s_namespaces n
     WHERE n.cluster_id = $1 AND (n.deleted_at IS NULL OR n.deleted_at > $2)
     ORDER BY n.name, (n.deleted_at IS NULL) DESC, n.created_at DESC NULLS LAST
),
pod_rows AS (
    SELECT r.namespace, r.deployment,
           COALESCE(r.own_team, ns.team) AS team,
           COALESCE(r.own_cost_center, ns.cost_center) AS cost_center, 1 AS pods,
           COALESCE(u.cpu, r.request_cpu) * r.fraction AS cpu_core_hours,
           COALESCE(u.memory, r.request_memory) / 1073741824.0 * r.fraction AS memory_gib_hours,
           COALESCE(u.storage, 0) / 1073741824.0 * r.fraction AS storage_gib_hours,
           COALESCE(u.storage, 0) / 1073741824.0 * r.fraction * $8 AS storage_cost,
           COALESCE(u.tx_bytes, 0) / 1073741824.0 AS network_gib
      FROM running r
      LEFT JOIN per_pod u ON u.pod_key = r.pod_key
      LEFT JOIN namespaces ns ON ns.name = r.namespace
),
storage_prices AS (
    SELECT DISTINCT ON (storage_class) storage_class, gib_hour
      FROM k8s_storage_class_prices
     WHERE cluster_id = $1 AND effective_from <= $2
     ORDER BY storage_class, effective_from DESC
),
claims AS (
    SELECT c.namespace, c.volume_name, c.storage_class,
           NULLIF(c.labels->>'team', '') AS own_team,
           NULLIF(c.labels->>'cost-center', '') AS own_cost_center,
           COALESCE(c.requests_storage_bytes, c.capacity_bytes, 0) / 1073741824.0
               * extract(epoch FROM LEAST(COALESCE(c.deleted_at, $5), $3)
                                    - GREATEST(COALESCE(c.created_at, $2), $2)) / 3600.0
               AS gib_hours
      FROM k8s_persistent_volume_claims c
     WHERE c.cluster_id = $1 AND c.phase = 'Bound'
       AND (c.created_at IS NULL OR c.created_at < $3)
       AND (c.deleted_at IS NULL OR c.deleted_at > $2)
),
claim_rows AS (
    SELECT c.namespace, ''::text AS deployment,
           COALESCE(c.own_team, ns.team) AS team,
           COALESCE(c.own_cost_center, ns.cost_center) AS cost_center, 0 AS pods,
           0::numeric AS cpu_core_hours, 0::numeric AS memory_gib_hours,
           c.gib_hours AS storage_gib_hours,
           c.gib_hours * COALESCE(volume_price.gib_hour, claim_price.gib_hour, $8)
               AS storage_cost,
           0::numeric AS network_gib
      FROM claims c
      LEFT JOIN LATERAL (
            SELECT v.storage_class FROM k8s_persistent_volumes v
             WHERE v.cluster_id = $1 AND v.name = c.volume_name
             ORDER BY (v.deleted_at IS NULL OR v.deleted_at > $2) DESC,
                      v.created_at DESC NULLS LAST
             LIMIT 1) pv ON true
      LEFT JOIN storage_prices volume_price ON volume_price.storage_class = pv.storage_class
      LEFT JOIN storage_prices claim_price ON claim_price.storage_class = c.storage_class
      LEFT JOIN namespaces ns ON ns.name = c.namespace
     WHERE c.gib_hours > 0
),
grouped AS (
    SELECT namespace, deployment, team, cost_center, sum(pods) AS pod_count,
           sum(cpu_core_hours) AS cpu_core_hours, sum(memory_gib_hours) AS memory_gib_hours,
           sum(storage_gib_hours) AS storage_gib_hours, sum(storage_cost) AS storage_cost,
           sum(network_gib) AS network_gib
      FROM (SELECT * FROM pod_rows UNION ALL SELECT * FROM claim_rows) r
     GROUP BY namespace, deployment, team, cost_center
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
           extract(epoch FROM LEAST(COALESCE(n.deleted_at, $5), $3)
                              - GREATEST(COALESCE(n.created_at, $2), $2)) / 3600.0 AS fraction
      FROM k8s_nodes n
      LEFT JOIN instance_prices ip ON ip.instance_type = n.instance_type
     WHERE n.cluster_id = $1 AND (n.created_at IS NULL OR n.created_at < $3)
       AND (n.deleted_at IS NULL OR n.deleted_at > $2)
),
node_split AS (
    SELECT fraction, cpu, memory_gib,
           COALESCE(priced, cpu * $6 + memory_gib * $7) AS hourly,
           CASE WHEN cpu * $6 + memory_gib * $7 > 0
                THEN cpu * $6 / (cpu * $6 + memory_gib * $7) ELSE 0.5 END AS cpu_share
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
           round(cpu_core_hours * $6, 6) AS cpu_cost,
           round(memory_gib_hours * $7, 6) AS memory_cost,
           round(storage_cost, 6) AS storage_cost,
           round(network_gib * $9, 6) AS network_cost,
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
         cpu_core_hours, memory_gib_hours, storage_gib_hours, network_gib, provisional,
         computed_at)
    SELECT $1, 'hour', $2, namespace, deployment, team, cost_center, is_idle, pod_count,
           cpu_cost, memory_cost, storage_cost, network_cost,
           cpu_cost + memory_cost + storage_cost + network_cost,
           round(cpu_core_hours, 6), round(memory_gib_hours, 6), round(storage_gib_hours, 6),
           round(network_gib, 6), $11, now()
      FROM (SELECT * FROM alloc_rows UNION ALL SELECT * FROM idle) r
    RETURNING is_idle, total_cost, pod_count
)
INSERT INTO k8s_cost_hours AS h
    (cluster_id, period_start, computed_at, price_cpu_core_hour, price_memory_gib_hour,
     price_storage_gib_hour, price_network_gib, price_source, node_cost, allocated_cost,
     idle_cost, total_cost, pod_count, sample_count, provisional)
SELECT $1, $2, now(), $6, $7, $8, $9, $10,
       (SELECT round(cpu_cost + memory_cost, 6) FROM node_totals),
       COALESCE((SELECT sum(total_cost) FROM inserted WHERE NOT is_idle), 0),
       COALESCE((SELECT sum(total_cost) FROM inserted WHERE is_idle), 0),
       COALESCE((SELECT sum(total_cost) FROM inserted), 0),
       COALESCE((SELECT sum(pod_count) FROM inserted), 0),
       (SELECT samples FROM sample_count), $11
ON CONFLICT (cluster_id, period_start) DO UPDATE SET
    computed_at = EXCLUDED.computed_at,
    price_cpu_core_hour = EXCLUDED.price_cpu_core_hour,
    price_memory_gib_hour = EXCLUDED.price_memory_gib_hour,
    price_storage_gib_hour = EXCLUDED.price_storage_gib_hour,
    price_network_gib = EXCLUDED.price_network_gib,
    price_source = EXCLUDED.price_source,
    node_cost = EXCLUDED.node_cost, allocated_cost = EXCLUDED.allocated_cost,
    idle_cost = EXCLUDED.idle_cost, total_cost = EXCLUDED.total_cost,
    pod_count = EXCLUDED.pod_count, sample_count = EXCLUDED.sample_count,
    provisional = EXCLUDED.provisional
RETURNING h.node_cost, h.allocated_cost, h.idle_cost, h.total_cost, h.pod_count,
          h.sample_count, h.provisional
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
    provisional: bool


def floor_hour(moment: datetime) -> datetime:
    """The UTC hour that contains ``moment``."""
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def ceil_hour(moment: datetime) -> datetime:
    """The first UTC hour that starts at or after ``moment``."""
    start = floor_hour(moment)
    return start if start == moment.astimezone(UTC) else start + HOUR


async def compute_hour(
    conn: asyncpg.Connection,
    *,
    cluster_id: uuid.UUID,
    hour: datetime,
    book: PriceBook,
    now: datetime | None = None,
    provisional: bool | None = None,
) -> HourResult | None:
    """Compute (or recompute) one cluster-hour and its day's rollups in one transaction.

    ``provisional`` marks a figure that will still change (the running hour, or one whose
    last samples may be on their way); by default, an hour that has not ended at ``now``.
    A system job, not a tenant read: callers are the scheduler and admin tools that already
    hold the cluster id. Returns None if the cluster does not exist (deleted meanwhile).
    """
    start = floor_hour(hour)
    if start != hour.astimezone(UTC):
        raise ValueError("hour must be the start of a UTC hour")
    moment = now or datetime.now(UTC)
    is_provisional = moment < start + HOUR if provisional is None else provisional
    async with conn.transaction():
        await conn.execute(
            "SELECT pg_advisory_xact_lock($1, hashtext($2::uuid::text))", LOCK_CLASS, cluster_id
        )
        # The cluster row before anything that references it (see the module docstring).
        if not await conn.fetchval(
            "SELECT true FROM k8s_clusters WHERE id = $1 FOR NO KEY UPDATE", cluster_id
        ):
            return None
        prices = await effective_prices(conn, cluster_id=cluster_id, at=start, book=book)
        assert prices is not None
        await conn.execute(
            """DELETE FROM k8s_cost_allocations
                WHERE cluster_id = $1 AND granularity = 'hour' AND period_start = $2""",
            cluster_id, start,
        )
        row = await conn.fetchrow(
            _ALLOCATE_SQL, cluster_id, start, start + HOUR, COUNTER_MAX_GAP, max(moment, start),
            prices.cpu_core_hour, prices.memory_gib_hour, prices.storage_gib_hour,
            prices.network_gib, prices.source, is_provisional,
        )
        assert row is not None
        await rollup_hour(conn, cluster_id=cluster_id, hour=start)
        await refresh_cluster_totals(conn, cluster_id=cluster_id, now=moment)
    return HourResult(
        cluster_id, start, prices, row["node_cost"], row["allocated_cost"], row["idle_cost"],
        row["total_cost"], row["pod_count"], row["sample_count"], row["provisional"],
    )
