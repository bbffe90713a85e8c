"""Resource usage from ``metrics.k8s.io``: samples, roll-ups and the current-usage columns.

metrics-server answers "how much is each pod and node using now"; we keep a sample per pod
and node and, for the same instant, the sums per deployment, namespace and cluster, so
dashboards read one row per bar instead of summing thousands. The ``restarts``/``oom_kills``
columns carry the pods' cumulative counters (summed on roll-up), which is what lets
``v_k8s_cluster_health`` compute a 24-hour increase the way Prometheus' ``increase()`` does.

Every live pod gets a sample row, even without usage (a crash-looping container has none),
because its counters are the point. A cluster without metrics-server answers 404 here; the
caller records ``metrics_available = false`` and everything else keeps syncing.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

import asyncpg
from kubernetes_asyncio.client import ApiClient

from sync.kubeapi import list_pages
from sync.quantity import QuantityError, to_bytes, to_cores

BIGINT_MAX = 2**63 - 1

__all__ = [
    "NODE_METRICS_PATH",
    "POD_METRICS_PATH",
    "MetricsSnapshot",
    "read_metrics",
    "write_metrics",
]

NODE_METRICS_PATH = "/apis/metrics.k8s.io/v1beta1/nodes"
POD_METRICS_PATH = "/apis/metrics.k8s.io/v1beta1/pods"


@dataclass(slots=True)
class MetricsSnapshot:
    nodes: list[tuple[str, Decimal | None, int | None]] = field(default_factory=list)
    pods: list[tuple[str, str, Decimal | None, int | None]] = field(default_factory=list)


def _usage(usage: object) -> tuple[Decimal | None, int | None]:
    if not isinstance(usage, dict):
        return None, None
    try:
        cpu = to_cores(usage.get("cpu"))
    except QuantityError:
        cpu = None
    try:
        memory = to_bytes(usage.get("memory"))
    except QuantityError:
        memory = None
    return cpu, memory


async def read_metrics(api: ApiClient, *, page_size: int) -> MetricsSnapshot:
    """NodeMetrics and PodMetrics (pods summed over containers). Raises ``NotFound`` when
    metrics.k8s.io is not served."""
    snapshot = MetricsSnapshot()
    # metrics-server's lists carry no resourceVersion (there is nothing to watch).
    async for page in list_pages(
        api, NODE_METRICS_PATH, limit=page_size, require_resource_version=False
    ):
        for item in page.items:
            name = (item.get("metadata") or {}).get("name")
            if isinstance(name, str):
                snapshot.nodes.append((name, *_usage(item.get("usage"))))
    async for page in list_pages(
        api, POD_METRICS_PATH, limit=page_size, require_resource_version=False
    ):
        for item in page.items:
            metadata = item.get("metadata") or {}
            name, namespace = metadata.get("name"), metadata.get("namespace")
            if not isinstance(name, str) or not isinstance(namespace, str):
                continue
            cpu_total: Decimal | None = None
            memory_total: int | None = None
            for container in item.get("containers") or []:
                usage = container.get("usage") if isinstance(container, dict) else None
                cpu, memory = _usage(usage)
                if cpu is not None:
                    cpu_total = (cpu_total or Decimal(0)) + cpu
                if memory is not None:
                    # Each container fits a bigint; their sum may not (two 5Ei containers):
                    # saturate, as the inventory writer does, rather than fail the sample.
                    memory_total = min((memory_total or 0) + memory, BIGINT_MAX)
            snapshot.pods.append((namespace, name, cpu_total, memory_total))
    return snapshot


_WRITE = """
WITH pods AS (
    SELECT p.namespace, p.name, p.deployment_name, p.restart_count, p.oom_kill_count,
           s.cpu, s.memory
      FROM k8s_pods p
      LEFT JOIN fg_stage_pod_metrics s ON s.namespace = p.namespace AND s.name = p.name
     WHERE p.cluster_id = $1 AND p.deleted_at IS NULL
), nodes AS (
    SELECT s.name, s.cpu, s.memory FROM fg_stage_node_metrics s
      JOIN k8s_nodes n ON n.cluster_id = $1 AND n.name = s.name AND n.deleted_at IS NULL
), samples AS (
    SELECT 'pod' AS level, namespace, name, cpu, memory, restart_count AS restarts,
           oom_kill_count AS oom_kills
      FROM pods
    UNION ALL
    SELECT 'deployment', namespace, deployment_name, sum(cpu), sum(memory),
           sum(restart_count), sum(oom_kill_count)
      FROM pods WHERE deployment_name IS NOT NULL GROUP BY namespace, deployment_name
    UNION ALL
    SELECT 'namespace', namespace, '', sum(cpu), sum(memory), sum(restart_count),
           sum(oom_kill_count)
      FROM pods GROUP BY namespace
    UNION ALL
    SELECT 'node', '', name, cpu, memory, NULL, NULL FROM nodes
    UNION ALL
    -- The cluster uses what its nodes use (system daemons included) when nodes report.
    SELECT 'cluster', '', '',
           COALESCE((SELECT sum(cpu) FROM nodes), (SELECT sum(cpu) FROM pods)),
           COALESCE((SELECT sum(memory) FROM nodes), (SELECT sum(memory) FROM pods)),
           (SELECT sum(restart_count) FROM pods), (SELECT sum(oom_kill_count) FROM pods)
)
INSERT INTO k8s_resource_metrics
       (cluster_id, level, namespace, name, sampled_at, cpu_cores, memory_bytes, restarts,
        oom_kills)
SELECT $1, level, namespace, name, $2, cpu,
       -- A sum of bigints is numeric and may pass 2^63-1: saturate, never fail the sample.
       -- (Not LEAST: it ignores a NULL, and a pod without usage would read 2^63-1 bytes.)
       CASE WHEN memory > 9223372036854775807 THEN 9223372036854775807 ELSE memory END::bigint,
       restarts, oom_kills FROM samples
ON CONFLICT DO NOTHING
"""


async def write_metrics(
    conn: asyncpg.Connection,
    *,
    cluster_id: uuid.UUID,
    snapshot: MetricsSnapshot,
    sampled_at: datetime,
) -> int:
    """Samples for one instant plus the usage columns, in the caller's transaction."""
    await conn.execute(
        "CREATE TEMP TABLE IF NOT EXISTS fg_stage_pod_metrics"
        " (namespace text, name text, cpu numeric, memory bigint) ON COMMIT DELETE ROWS;"
        "CREATE TEMP TABLE IF NOT EXISTS fg_stage_node_metrics"
        " (name text, cpu numeric, memory bigint) ON COMMIT DELETE ROWS"
    )
    await conn.copy_records_to_table("fg_stage_pod_metrics", records=snapshot.pods)
    await conn.copy_records_to_table("fg_stage_node_metrics", records=snapshot.nodes)
    status = await conn.execute(_WRITE, cluster_id, sampled_at)
    await conn.execute(
        """
        UPDATE k8s_pods p SET usage_cpu_cores = s.cpu, usage_memory_bytes = s.memory
          FROM fg_stage_pod_metrics s
         WHERE p.cluster_id = $1 AND p.deleted_at IS NULL AND p.namespace = s.namespace
           AND p.name = s.name
           AND (p.usage_cpu_cores, p.usage_memory_bytes) IS DISTINCT FROM (s.cpu, s.memory)
        """,
        cluster_id,
    )
    await conn.execute(
        """
        UPDATE k8s_nodes n SET usage_cpu_cores = s.cpu, usage_memory_bytes = s.memory
          FROM fg_stage_node_metrics s
         WHERE n.cluster_id = $1 AND n.deleted_at IS NULL AND n.name = s.name
           AND (n.usage_cpu_cores, n.usage_memory_bytes) IS DISTINCT FROM (s.cpu, s.memory)
        """,
        cluster_id,
    )
    await conn.execute(
        """
        UPDATE k8s_namespaces ns SET usage_cpu_cores = m.cpu_cores,
                                     usage_memory_bytes = m.memory_bytes
          FROM k8s_resource_metrics m
         WHERE ns.cluster_id = $1 AND ns.deleted_at IS NULL AND m.cluster_id = $1
           AND m.level = 'namespace' AND m.sampled_at = $2 AND m.namespace = ns.name
           AND (ns.usage_cpu_cores, ns.usage_memory_bytes)
               IS DISTINCT FROM (m.cpu_cores, m.memory_bytes)
        """,
        cluster_id,
        sampled_at,
    )
    return int(status.split()[-1])
