"""Cost over a window, grouped and shared at query time (what ``costs(...)`` resolves to).

A window holds the hours that *start* in ``[from, to)``, as the schema says: a window from
10:30 begins with the 11:00 hour, one ending at 13:30 includes the 13:00 hour. Presets end
with the running hour, whose figure is provisional until it closes (``provisional`` on a row
says some hour in it will still change).

Stored rows never contain shared cost, so every sharing choice is a view over the same facts,
following OpenCost's definitions:

* **Idle sharing** (``share_idle``): per cluster and per resource, the idle CPU cost goes to
  allocations in proportion to their CPU cost and idle memory cost in proportion to their
  memory cost. A resource that nothing allocated in that cluster has no basis to share by, so
  its idle stays on the idle row (which then carries only that resource). Unshared, idle is
  always one row per group with ``is_idle`` set.
* **Shared namespaces** (``kube-system``, monitoring): their cost — including the idle they
  received — is spread over the other rows *of the same cluster* (a cluster's kube-system
  serves that cluster): ``even`` gives each row of the chosen grouping an equal part (each
  team, when grouped by team; each namespace, when by namespace), split inside a row by cost;
  ``weighted`` splits in proportion to cost. Weights are the rows' own cost before any
  sharing. A cluster with nothing to receive keeps its shared rows.

Whole UTC days inside the window are read from the day rollups and the ragged edges from the
hour rows, so a 30-day query reads ~30 rows per group instead of ~720. Every read is scoped to
the organization: another tenant's cluster ids in ``cluster_ids`` simply match nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum

import asyncpg

from cost.allocation import HOUR, ceil_hour, floor_hour
from cost.rollup import floor_day


class GroupBy(StrEnum):
    CLUSTER = "CLUSTER"
    NAMESPACE = "NAMESPACE"
    TEAM = "TEAM"
    COST_CENTER = "COST_CENTER"
    DEPLOYMENT = "DEPLOYMENT"


class ShareMode(StrEnum):
    EVEN = "even"
    WEIGHTED = "weighted"


class WindowPreset(StrEnum):
    LAST_24_HOURS = "LAST_24_HOURS"
    LAST_7_DAYS = "LAST_7_DAYS"
    LAST_30_DAYS = "LAST_30_DAYS"
    TODAY = "TODAY"
    YESTERDAY = "YESTERDAY"
    MONTH_TO_DATE = "MONTH_TO_DATE"
    LAST_MONTH = "LAST_MONTH"


@dataclass(frozen=True)
class CostRow:
    """One group's cost. Dimensions not grouped by are None (DEPLOYMENT also sets namespace,
    since a deployment's name is only unique within its namespace; '' is "no deployment").
    ``idle_cost`` is the idle share received, or for an idle row its whole cost;
    ``shared_cost`` is what shared namespaces passed on. ``total_cost`` includes both.
    ``provisional``: an hour this figure includes (its own, or one whose idle or shared cost
    it received) was still open when computed."""

    cluster_id: uuid.UUID | None
    namespace: str | None
    team: str | None
    cost_center: str | None
    deployment: str | None
    is_idle: bool
    cpu_cost: Decimal
    memory_cost: Decimal
    storage_cost: Decimal
    network_cost: Decimal
    idle_cost: Decimal
    shared_cost: Decimal
    total_cost: Decimal
    cpu_core_hours: Decimal
    memory_gib_hours: Decimal
    storage_gib_hours: Decimal
    network_gib: Decimal
    provisional: bool


_DIMENSIONS: dict[GroupBy, tuple[str, ...]] = {
    GroupBy.CLUSTER: ("cluster_id",),
    GroupBy.NAMESPACE: ("namespace",),
    GroupBy.TEAM: ("team",),
    GroupBy.COST_CENTER: ("cost_center",),
    GroupBy.DEPLOYMENT: ("namespace", "deployment"),
}
_ALL_DIMENSIONS = ("cluster_id", "namespace", "team", "cost_center", "deployment")

# The columns every branch of ``final`` carries, in order.
_FINAL_COLUMNS = """cluster_id, namespace, deployment, team, cost_center, is_idle, provisional,
    cpu_cost, memory_cost, storage_cost, network_cost, total_cost, cpu_core_hours,
    memory_gib_hours, storage_gib_hours, network_gib, idle_share, shared_share"""

# $1 organization, $2/$3 hour bounds, $4/$5 whole-day bounds, $6 cluster ids (or NULL),
# $7 share idle, $8 shared namespaces given, $9 use the organization's marks, $10 share mode.
# {select}/{group}: the output grouping; {group_columns}/{group_join}: the same grouping
# within one cluster, which is what EVEN splits a cluster's shared cost by.
_SHARED_SQL = """
WITH base AS (
    SELECT a.cluster_id, a.namespace, a.deployment, a.team, a.cost_center, a.is_idle,
           bool_or(a.provisional) AS provisional,
           sum(a.cpu_cost) AS cpu_cost, sum(a.memory_cost) AS memory_cost,
           sum(a.storage_cost) AS storage_cost, sum(a.network_cost) AS network_cost,
           sum(a.total_cost) AS total_cost, sum(a.cpu_core_hours) AS cpu_core_hours,
           sum(a.memory_gib_hours) AS memory_gib_hours,
           sum(a.storage_gib_hours) AS storage_gib_hours, sum(a.network_gib) AS network_gib
      FROM k8s_cost_allocations a
      JOIN k8s_clusters c ON c.id = a.cluster_id
     WHERE c.organization_id = $1
       AND ($6::uuid[] IS NULL OR a.cluster_id = ANY($6::uuid[]))
       AND ((a.granularity = 'day' AND a.period_start >= $4 AND a.period_start < $5)
            OR (a.granularity = 'hour' AND a.period_start >= $2 AND a.period_start < $3
                AND NOT (a.period_start >= $4 AND a.period_start < $5)))
     GROUP BY a.cluster_id, a.namespace, a.deployment, a.team, a.cost_center, a.is_idle
),
marked AS (
    SELECT b.*,
           NOT b.is_idle AND (b.namespace = ANY($8::text[]) OR ($9 AND EXISTS (
               SELECT 1 FROM k8s_shared_namespaces s
                WHERE s.organization_id = $1 AND s.namespace = b.namespace
                  AND (s.cluster_id IS NULL OR s.cluster_id = b.cluster_id)))) AS is_shared
      FROM base b
),
weights AS (
    SELECT cluster_id, sum(cpu_cost) AS cpu_w, sum(memory_cost) AS memory_w
      FROM marked WHERE NOT is_idle GROUP BY cluster_id
),
idle AS (
    SELECT cluster_id, sum(cpu_cost) AS idle_cpu, sum(memory_cost) AS idle_memory,
           bool_or(provisional) AS provisional
      FROM marked WHERE is_idle GROUP BY cluster_id
),
idle_shared AS (
    SELECT m.*,
           CASE WHEN $7 AND NOT m.is_idle THEN
               CASE WHEN w.cpu_w > 0 THEN COALESCE(i.idle_cpu, 0) * m.cpu_cost / w.cpu_w
                    ELSE 0 END
             + CASE WHEN w.memory_w > 0 THEN COALESCE(i.idle_memory, 0) * m.memory_cost / w.memory_w
                    ELSE 0 END
           ELSE 0 END AS idle_share,
           COALESCE(i.provisional, false) AS idle_provisional
      FROM marked m
      LEFT JOIN weights w ON w.cluster_id = m.cluster_id
      LEFT JOIN idle i ON i.cluster_id = m.cluster_id
),
with_idle AS (
    SELECT cluster_id, namespace, deployment, team, cost_center, is_idle, is_shared,
           provisional OR (idle_share <> 0 AND idle_provisional) AS provisional,
           cpu_cost, memory_cost, storage_cost, network_cost, total_cost, cpu_core_hours,
           memory_gib_hours, storage_gib_hours, network_gib, idle_share
      FROM idle_shared
),
idle_left AS (
    -- What stays on the idle row: everything unshared, or the resources nothing allocated.
    SELECT m.cluster_id, m.namespace, m.deployment, m.team, m.cost_center, m.is_idle,
           m.provisional, x.cpu_cost, x.memory_cost, m.storage_cost, m.network_cost,
           x.cpu_cost + x.memory_cost + m.storage_cost + m.network_cost AS total_cost,
           x.cpu_core_hours, x.memory_gib_hours, m.storage_gib_hours, m.network_gib,
           0 AS idle_share, 0 AS shared_share
      FROM marked m
      LEFT JOIN weights w ON w.cluster_id = m.cluster_id
     CROSS JOIN LATERAL (
        SELECT CASE WHEN $7 AND w.cpu_w > 0 THEN 0 ELSE m.cpu_cost END AS cpu_cost,
               CASE WHEN $7 AND w.cpu_w > 0 THEN 0 ELSE m.cpu_core_hours END AS cpu_core_hours,
               CASE WHEN $7 AND w.memory_w > 0 THEN 0 ELSE m.memory_cost END AS memory_cost,
               CASE WHEN $7 AND w.memory_w > 0 THEN 0 ELSE m.memory_gib_hours END
                   AS memory_gib_hours) x
     WHERE m.is_idle
),
donors AS (
    SELECT cluster_id, sum(total_cost + idle_share) AS shared_total,
           bool_or(provisional) AS provisional
      FROM with_idle WHERE is_shared GROUP BY cluster_id
),
recipients AS (SELECT * FROM with_idle WHERE NOT is_idle AND NOT is_shared),
recipient_groups AS (
    SELECT cluster_id{group_columns}, sum(total_cost) AS g_w, count(*) AS g_n
      FROM recipients GROUP BY cluster_id{group_columns}
),
recipient_clusters AS (
    SELECT cluster_id, sum(g_w) AS cl_w, sum(g_n) AS cl_n, count(*) AS cl_groups
      FROM recipient_groups GROUP BY cluster_id
),
final AS (
    SELECT r.cluster_id, r.namespace, r.deployment, r.team, r.cost_center, r.is_idle,
           r.provisional OR (COALESCE(d.shared_total, 0) <> 0 AND d.provisional)
               AS provisional,
           r.cpu_cost, r.memory_cost, r.storage_cost, r.network_cost, r.total_cost,
           r.cpu_core_hours, r.memory_gib_hours, r.storage_gib_hours, r.network_gib,
           r.idle_share,
           COALESCE(d.shared_total, 0) * CASE
               WHEN $10 = 'even' THEN
                   (1.0 / rc.cl_groups) * CASE WHEN rg.g_w > 0 THEN r.total_cost / rg.g_w
                                               ELSE 1.0 / rg.g_n END
               ELSE CASE WHEN rc.cl_w > 0 THEN r.total_cost / rc.cl_w ELSE 1.0 / rc.cl_n END
           END AS shared_share
      FROM recipients r
      JOIN recipient_groups rg ON rg.cluster_id = r.cluster_id{group_join}
      JOIN recipient_clusters rc ON rc.cluster_id = r.cluster_id
      LEFT JOIN donors d ON d.cluster_id = r.cluster_id
    UNION ALL
    SELECT cluster_id, namespace, deployment, team, cost_center, is_idle, provisional,
           cpu_cost, memory_cost, storage_cost, network_cost, total_cost, cpu_core_hours,
           memory_gib_hours, storage_gib_hours, network_gib, idle_share, 0
      FROM with_idle w
     WHERE w.is_shared
       AND NOT EXISTS (SELECT 1 FROM recipient_clusters rc WHERE rc.cluster_id = w.cluster_id)
    UNION ALL
    SELECT {final_columns} FROM idle_left WHERE NOT $7 OR cpu_cost + memory_cost > 0
)
SELECT {select}, is_idle, bool_or(provisional) AS provisional,
       round(sum(cpu_cost), 6) AS cpu_cost, round(sum(memory_cost), 6) AS memory_cost,
       round(sum(storage_cost), 6) AS storage_cost, round(sum(network_cost), 6) AS network_cost,
       round(sum(CASE WHEN is_idle THEN total_cost ELSE idle_share END), 6) AS idle_cost,
       round(sum(shared_share), 6) AS shared_cost,
       round(sum(total_cost + idle_share + shared_share), 6) AS total_cost,
       round(sum(cpu_core_hours), 6) AS cpu_core_hours,
       round(sum(memory_gib_hours), 6) AS memory_gib_hours,
       round(sum(storage_gib_hours), 6) AS storage_gib_hours,
       round(sum(network_gib), 6) AS network_gib
  FROM final
 GROUP BY {group}
 ORDER BY total_cost DESC, {group}
"""


def window_bounds(preset: WindowPreset, now: datetime) -> tuple[datetime, datetime]:
    """``[start, end)`` for a preset, in whole UTC hours ending with the running hour (its
    figure provisional); YESTERDAY and LAST_MONTH are closed periods."""
    end = floor_hour(now) + HOUR
    today = floor_day(now)
    if preset is WindowPreset.LAST_24_HOURS:
        return end - timedelta(hours=24), end
    if preset is WindowPreset.LAST_7_DAYS:
        return end - timedelta(days=7), end
    if preset is WindowPreset.LAST_30_DAYS:
        return end - timedelta(days=30), end
    if preset is WindowPreset.TODAY:
        return today, end
    if preset is WindowPreset.YESTERDAY:
        return today - timedelta(days=1), today
    month = today.replace(day=1)
    if preset is WindowPreset.MONTH_TO_DATE:
        return month, end
    previous = (month - timedelta(days=1)).replace(day=1)
    return previous, month


def _ceil_day(moment: datetime) -> datetime:
    day = floor_day(moment)
    return day if day == moment else day + timedelta(days=1)


async def query_costs(
    conn: asyncpg.Connection,
    *,
    organization_id: uuid.UUID,
    start: datetime,
    end: datetime,
    group_by: Sequence[GroupBy],
    share_idle: bool = False,
    shared_namespaces: Sequence[str] | None = None,
    share_mode: ShareMode = ShareMode.WEIGHTED,
    cluster_ids: Sequence[uuid.UUID] | None = None,
) -> list[CostRow]:
    """Cost of the hours starting in ``[start, end)``, grouped.

    ``shared_namespaces=None`` uses the namespaces marked shared for the organization
    (``k8s_shared_namespaces``); a list (even empty) replaces the marks for this query.
    Rows come most expensive first; the idle row of a group, when not shared, is separate.
    """
    if end < start:
        raise ValueError("window: 'to' must not be before 'from'")
    # The first and last hour that start inside the window; none: nothing to read.
    start, end = ceil_hour(start), ceil_hour(end)
    if start >= end:
        return []
    day_lo, day_hi = _ceil_day(start), floor_day(end)
    if day_lo >= day_hi:
        day_lo = day_hi = start
    columns: list[str] = []
    for dimension in group_by:
        for column in _DIMENSIONS[GroupBy(dimension)]:
            if column not in columns:
                columns.append(column)
    select = ", ".join(
        column if column in columns else f"NULL AS {column}" for column in _ALL_DIMENSIONS
    )
    within_cluster = [c for c in columns if c != "cluster_id"]
    sql = _SHARED_SQL.format(
        select=select,
        group=", ".join([*columns, "is_idle"]),
        group_columns="".join(f", {c}" for c in within_cluster),
        group_join="".join(f" AND rg.{c} IS NOT DISTINCT FROM r.{c}" for c in within_cluster),
        final_columns=_FINAL_COLUMNS,
    )
    rows = await conn.fetch(
        sql, organization_id, start, end, day_lo, day_hi,
        list(cluster_ids) if cluster_ids is not None else None,
        share_idle, list(shared_namespaces or ()), shared_namespaces is None,
        ShareMode(share_mode).value,
    )
    return [CostRow(**dict(row)) for row in rows]
