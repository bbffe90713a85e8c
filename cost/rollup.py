"""Rollups derived from the fine hourly rows, so every coarser figure is a plain sum of them.

``k8s_cost_allocations`` hour rows are the source of truth. From them, after each computed
hour: ``k8s_cost_attribution`` hour rows (per namespace, team and cost center — the table the
views read), and for the hour's UTC day both tables' day rows, rebuilt from all of that day's
hours so a day always equals the sum of its hours, whatever order hours were (re)computed in.
The cluster's ``cost_last_hour`` / ``cost_month_to_date`` come from the computed-hours ledger,
final hours only: they are the cluster's settled figures, shown beside its inventory, while
the running hour's provisional figure is what ``costs`` is for. A day row is provisional while
any of its hours is.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import asyncpg

_SUMS = """sum(cpu_cost), sum(memory_cost), sum(storage_cost), sum(network_cost), sum(total_cost),
           sum(cpu_core_hours), sum(memory_gib_hours), sum(storage_gib_hours), sum(network_gib)"""
_COLUMNS = """cpu_cost, memory_cost, storage_cost, network_cost, total_cost,
              cpu_core_hours, memory_gib_hours, storage_gib_hours, network_gib"""

_ATTRIBUTION_HOUR = f"""
INSERT INTO k8s_cost_attribution
    (cluster_id, namespace, is_idle, team, cost_center, granularity, period_start, {_COLUMNS},
     computed_at)
SELECT cluster_id, namespace, is_idle, team, cost_center, 'hour', period_start, {_SUMS}, now()
  FROM k8s_cost_allocations
 WHERE cluster_id = $1 AND granularity = 'hour' AND period_start = $2
 GROUP BY cluster_id, namespace, is_idle, team, cost_center, period_start
"""

_ALLOCATIONS_DAY = f"""
INSERT INTO k8s_cost_allocations
    (cluster_id, granularity, period_start, namespace, deployment, team, cost_center, is_idle,
     pod_count, {_COLUMNS}, provisional, computed_at)
SELECT cluster_id, 'day', $2, namespace, deployment, team, cost_center, is_idle,
       max(pod_count), {_SUMS}, bool_or(provisional), now()
  FROM k8s_cost_allocations
 WHERE cluster_id = $1 AND granularity = 'hour'
   AND period_start >= $2 AND period_start < $2 + interval '1 day'
 GROUP BY cluster_id, namespace, deployment, team, cost_center, is_idle
"""

_ATTRIBUTION_DAY = f"""
INSERT INTO k8s_cost_attribution
    (cluster_id, namespace, is_idle, team, cost_center, granularity, period_start, {_COLUMNS},
     computed_at)
SELECT cluster_id, namespace, is_idle, team, cost_center, 'day', $2, {_SUMS}, now()
  FROM k8s_cost_attribution
 WHERE cluster_id = $1 AND granularity = 'hour'
   AND period_start >= $2 AND period_start < $2 + interval '1 day'
 GROUP BY cluster_id, namespace, is_idle, team, cost_center
"""


def floor_day(moment: datetime) -> datetime:
    """The UTC day that contains ``moment``."""
    return moment.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


async def rollup_hour(conn: asyncpg.Connection, *, cluster_id: uuid.UUID, hour: datetime) -> None:
    """Rebuild the attribution rows of ``hour`` and the day rows of its day (caller's
    transaction; the fine hour rows must already be written)."""
    day = floor_day(hour)
    await conn.execute(
        """DELETE FROM k8s_cost_attribution
            WHERE cluster_id = $1 AND granularity = 'hour' AND period_start = $2""",
        cluster_id, hour,
    )
    await conn.execute(_ATTRIBUTION_HOUR, cluster_id, hour)
    for table, insert in (
        ("k8s_cost_allocations", _ALLOCATIONS_DAY),
        ("k8s_cost_attribution", _ATTRIBUTION_DAY),
    ):
        await conn.execute(
            f"DELETE FROM {table} WHERE cluster_id = $1 AND granularity = 'day'"
            " AND period_start = $2",
            cluster_id, day,
        )
        await conn.execute(insert, cluster_id, day)


async def refresh_cluster_totals(
    conn: asyncpg.Connection, *, cluster_id: uuid.UUID, now: datetime
) -> None:
    """``cost_last_hour`` is the latest final hour's total (idle included: it is what the
    cluster cost), ``cost_month_to_date`` the sum of this UTC month's final hours."""
    month = floor_day(now).replace(day=1)
    await conn.execute(
        """UPDATE k8s_clusters c SET
               cost_last_hour = (SELECT h.total_cost FROM k8s_cost_hours h
                                  WHERE h.cluster_id = c.id AND NOT h.provisional
                                  ORDER BY h.period_start DESC LIMIT 1),
               cost_month_to_date = (SELECT COALESCE(sum(h.total_cost), 0) FROM k8s_cost_hours h
                                      WHERE h.cluster_id = c.id AND NOT h.provisional
                                        AND h.period_start >= $2
                                        AND h.period_start < $3),
               cost_updated_at = now()
         WHERE c.id = $1""",
        cluster_id, month, now,
    )
