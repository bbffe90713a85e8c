"""Cluster and deployment health, recomputed from the stored inventory after each flush.

Health is derived, never synced: it is a judgement over rows already in PostgreSQL, so it is
computed in SQL right after the rows change (inside the same transaction, so a reader never
sees new pods with an old verdict). The signals carry kube-state-metrics' names, which is what
an operator will grep their Prometheus for when they want to see the same thing:

* ``kube_node_status_condition{condition="Ready"}`` - NotReady nodes
* ``kube_deployment_status_replicas_available`` vs ``kube_deployment_spec_replicas``
* ``kube_pod_container_status_waiting_reason{reason="CrashLoopBackOff"}``
* ``kube_pod_container_status_last_terminated_reason{reason="OOMKilled"}``
* ``kube_pod_status_phase{phase="Failed"}`` and ``{phase="Pending"}`` for too long

The verdict is one of HEALTHY, DEGRADED, CRITICAL, UNREACHABLE or UNKNOWN (stored lowercase),
with a reason a person can read on a dashboard: ``2/5 nodes NotReady; payments/api 0/3
available``.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from enum import StrEnum

import asyncpg

__all__ = [
    "PENDING_TOO_LONG_SECONDS",
    "Health",
    "HealthReport",
    "Signal",
    "assess_cluster",
    "update_cluster_health",
    "update_deployment_health",
]

PENDING_TOO_LONG_SECONDS = 300
_EXAMPLES = 3
_MAX_REASON_PARTS = 6


class Health(StrEnum):
    HEALTHY = "healthy"
    DEGRADED = "degraded"
    CRITICAL = "critical"
    UNREACHABLE = "unreachable"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class Signal:
    """One finding: the kube-state-metrics series it corresponds to, how bad, and the words."""

    metric: str
    severity: Health
    text: str


@dataclass(frozen=True, slots=True)
class HealthReport:
    status: Health
    reason: str
    signals: tuple[Signal, ...] = field(default=())


_FIGURES = """
SELECT c.status, c.last_sync_error, c.last_synced_at,
       (SELECT count(*) FROM k8s_nodes n
         WHERE n.cluster_id = c.id AND n.deleted_at IS NULL) AS nodes_total,
       (SELECT count(*) FROM k8s_nodes n
         WHERE n.cluster_id = c.id AND n.deleted_at IS NULL AND NOT n.ready) AS nodes_not_ready,
       (SELECT count(*) FROM k8s_deployments d
         WHERE d.cluster_id = c.id AND d.deleted_at IS NULL) AS deployments_total,
       (SELECT count(*) FROM k8s_pods p
         WHERE p.cluster_id = c.id AND p.deleted_at IS NULL) AS pods_total
  FROM k8s_clusters c WHERE c.id = $1
"""

_UNAVAILABLE_DEPLOYMENTS = """
SELECT namespace, name, replicas_available, replicas_desired, count(*) OVER () AS total
  FROM k8s_deployments
 WHERE cluster_id = $1 AND deleted_at IS NULL AND replicas_available < replicas_desired
 ORDER BY (replicas_available = 0) DESC, namespace, name
 LIMIT $2
"""

# Pods in trouble, by kube-state-metrics signal; containers jsonb holds per-container reasons.
_TROUBLED_PODS = """
WITH live AS (
    SELECT namespace, name, phase, containers, created_at
      FROM k8s_pods WHERE cluster_id = $1 AND deleted_at IS NULL
), flagged AS (
    SELECT 'kube_pod_container_status_waiting_reason' AS metric, namespace, name
      FROM live WHERE containers @> '[{"waitingReason": "CrashLoopBackOff"}]'
    UNION ALL
    SELECT 'kube_pod_container_status_last_terminated_reason', namespace, name
      FROM live WHERE containers @> '[{"lastTerminatedReason": "OOMKilled"}]'
    UNION ALL
    SELECT 'kube_pod_status_phase:Failed', namespace, name FROM live WHERE phase = 'Failed'
    UNION ALL
    SELECT 'kube_pod_status_phase:Pending', namespace, name FROM live
     WHERE phase = 'Pending' AND created_at < now() - make_interval(secs => $2)
)
SELECT metric, count(*) AS total,
       (array_agg(namespace || '/' || name ORDER BY namespace, name))[1:$3] AS examples
  FROM flagged GROUP BY metric
"""

_POD_SIGNALS = {
    "kube_pod_container_status_waiting_reason": "CrashLoopBackOff",
    "kube_pod_container_status_last_terminated_reason": "OOMKilled",
    "kube_pod_status_phase:Failed": "Failed",
    "kube_pod_status_phase:Pending": f"Pending > {PENDING_TOO_LONG_SECONDS // 60}m",
}


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


async def assess_cluster(conn: asyncpg.Connection, cluster_id: uuid.UUID) -> HealthReport:
    """The cluster's verdict and reason from its current rows."""
    figures = await conn.fetchrow(_FIGURES, cluster_id)
    if figures is None:
        return HealthReport(Health.UNKNOWN, "cluster not found")
    if figures["status"] == "unreachable":
        return HealthReport(Health.UNREACHABLE, "API server unreachable")
    if figures["status"] not in ("active", "degraded") and (
        figures["status"] != "pending" or figures["last_synced_at"] is None
    ):
        # Never synced. A pending cluster that was synced before (its sync starting over on
        # another replica, or after a database outage) is judged by the rows it has.
        return HealthReport(Health.UNKNOWN, "not synced yet")
    signals: list[Signal] = []
    if figures["status"] == "degraded":
        # The API server answers with errors or throttles: what is stored may be behind.
        signals.append(
            Signal(
                'fleetgraph_cluster_sync_state{state="degraded"}',
                Health.DEGRADED,
                f"sync degraded: {figures['last_sync_error'] or 'API server errors'}",
            )
        )
    nodes_total, not_ready = figures["nodes_total"], figures["nodes_not_ready"]
    if not_ready:
        severity = Health.CRITICAL if not_ready * 2 >= nodes_total else Health.DEGRADED
        signals.append(
            Signal(
                'kube_node_status_condition{condition="Ready"}',
                severity,
                f"{not_ready}/{nodes_total} nodes NotReady",
            )
        )
    for row in await conn.fetch(_UNAVAILABLE_DEPLOYMENTS, cluster_id, _EXAMPLES + 1):
        if len(signals) >= _MAX_REASON_PARTS:
            break
        available, desired = row["replicas_available"], row["replicas_desired"]
        signals.append(
            Signal(
                "kube_deployment_status_replicas_available",
                Health.CRITICAL if available == 0 else Health.DEGRADED,
                f"{row['namespace']}/{row['name']} {available}/{desired} available",
            )
        )
    unavailable = await conn.fetchval(
        "SELECT count(*) FROM k8s_deployments WHERE cluster_id = $1 AND deleted_at IS NULL"
        " AND replicas_available < replicas_desired",
        cluster_id,
    )
    shown = sum(1 for s in signals if s.metric == "kube_deployment_status_replicas_available")
    if unavailable > shown:
        signals.append(
            Signal(
                "kube_deployment_status_replicas_available",
                Health.DEGRADED,
                f"{unavailable - shown} more deployments unavailable",
            )
        )
    troubled = await conn.fetch(_TROUBLED_PODS, cluster_id, PENDING_TOO_LONG_SECONDS, _EXAMPLES)
    for row in sorted(troubled, key=lambda r: list(_POD_SIGNALS).index(r["metric"])):
        examples = ", ".join(row["examples"])
        more = "…" if row["total"] > _EXAMPLES else ""
        label = _POD_SIGNALS[row["metric"]]
        signals.append(
            Signal(
                row["metric"].split(":")[0],
                Health.DEGRADED,
                f"{_plural(row['total'], 'pod')} {label} ({examples}{more})",
            )
        )
    if any(s.severity is Health.CRITICAL for s in signals):
        status = Health.CRITICAL
    elif signals:
        status = Health.DEGRADED
    else:
        status = Health.HEALTHY
    if not signals:
        reason = (
            f"{nodes_total}/{nodes_total} nodes Ready; "
            f"{figures['deployments_total']} deployments available; "
            f"{_plural(figures['pods_total'], 'pod')}"
        )
    else:
        ordered = sorted(signals, key=lambda s: s.severity is not Health.CRITICAL)
        reason = "; ".join(s.text for s in ordered)
    return HealthReport(status, reason, tuple(signals))


async def update_cluster_health(
    conn: asyncpg.Connection, cluster_id: uuid.UUID
) -> tuple[HealthReport, bool]:
    """Store the verdict; returns it and whether ``health_status`` changed."""
    report = await assess_cluster(conn, cluster_id)
    previous = await conn.fetchval(
        """
        UPDATE k8s_clusters c
           SET health_status = $2,
               health_reason = $3,
               health_changed_at = CASE WHEN c.health_status IS DISTINCT FROM $2
                                        THEN now() ELSE c.health_changed_at END
          FROM (SELECT health_status FROM k8s_clusters WHERE id = $1 FOR UPDATE) old
         WHERE c.id = $1 AND (c.health_status, c.health_reason) IS DISTINCT FROM ($2, $3)
        RETURNING old.health_status
        """,
        cluster_id,
        report.status.value,
        report.reason,
    )
    return report, previous is not None and previous != report.status.value


# One grouped pass over the cluster's pods, then a hash join: a per-deployment subquery
# would be planned per row, and right after a bulk list the statistics are not there yet.
_DEPLOYMENT_HEALTH = """
WITH troubled AS (
    SELECT namespace, deployment_name,
           count(*) FILTER (
               WHERE containers @> '[{"waitingReason": "CrashLoopBackOff"}]') AS crashing,
           count(*) FILTER (
               WHERE containers @> '[{"lastTerminatedReason": "OOMKilled"}]') AS oom_killed
      FROM k8s_pods
     WHERE cluster_id = $1 AND deleted_at IS NULL AND deployment_name IS NOT NULL
     GROUP BY namespace, deployment_name
), verdict AS (
    SELECT d.id,
           CASE WHEN d.replicas_desired > 0 AND d.replicas_available = 0 THEN 'critical'
                WHEN d.replicas_available < d.replicas_desired
                     OR COALESCE(p.crashing, 0) > 0 OR COALESCE(p.oom_killed, 0) > 0
                     THEN 'degraded'
                ELSE 'healthy' END AS status,
           concat_ws('; ',
               d.replicas_available || '/' || d.replicas_desired || ' available',
               CASE WHEN p.crashing > 0 THEN p.crashing || ' CrashLoopBackOff' END,
               CASE WHEN p.oom_killed > 0 THEN p.oom_killed || ' OOMKilled' END) AS reason
      FROM k8s_deployments d
      LEFT JOIN troubled p ON p.namespace = d.namespace AND p.deployment_name = d.name
     WHERE d.cluster_id = $1 AND d.deleted_at IS NULL
)
UPDATE k8s_deployments d SET health_status = v.status, health_reason = v.reason
  FROM verdict v
 WHERE d.id = v.id AND (d.health_status, d.health_reason) IS DISTINCT FROM (v.status, v.reason)
"""


async def update_deployment_health(conn: asyncpg.Connection, cluster_id: uuid.UUID) -> int:
    """Per-deployment verdicts (same signals, scoped to its pods); returns rows changed."""
    status = await conn.execute(_DEPLOYMENT_HEALTH, cluster_id)
    return int(status.split()[-1])
