"""Which usage samples an hour reads, which pod each one belongs to, and the network counter's
growth spread over the hours it spans. One SQL fragment, shared by the allocation (which
prices it) and the scheduler's late-sample check (which counts it), so the two can never
disagree about what an hour is made of.

**Pod identity.** metrics.k8s.io names pods by namespace and name, but a name is reused: every
StatefulSet rollout, every ``kubectl delete pod`` of a bare pod re-creates it, often within
the same hour. A sample belongs to the incarnation (``uid``) whose lifetime holds its time:
from ``created_at`` until ``deleted_at`` or, when a deletion was never seen, until the next
pod of that name was created, so no sample ever has two owners.

**Network.** ``network_tx_bytes`` is a cumulative counter per incarnation. Every delta between
consecutive samples of one incarnation is attributed to the hours the interval spans, pro
rata by time, so the bytes sent between one hour's last sample and the next hour's first are
charged too. A counter that goes down was reset (a container restart): the delta is the new
value, as Prometheus' ``increase()`` treats resets. The first sample of an incarnation starts
its series (what it had sent before is not known to belong to any hour), as with
``increase()``. Intervals longer than ``COUNTER_MAX_GAP`` are a break in the series (sampling
was down): their delta is not attributed, which bounds how far outside the hour we look.

To read an hour, the fragment takes the samples inside it and, per pod name alive in the hour,
the last counter sample before it and the first one after it (primary-key lookups).
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import asyncpg

COUNTER_MAX_GAP = timedelta(hours=6)

# CTEs, to follow ``WITH``. Parameters: $1 cluster, $2 hour start, $3 hour end, $4 the gap.
# ``incarnations``: the pods that may own a sample near the hour; ``per_pod``: per incarnation
# uid, its usage inside the hour (requests applied per sample), the bytes its counter grew by
# in the hour, and the samples read; ``sample_count``: their total (the ledger's count: the
# samples inside, plus each counter interval crossing the hour's edge).
SAMPLE_CTES = """
incarnations AS (
    -- pod_key: a number for the uid, so the per-pod sort below compares integers, not text.
    SELECT row_number() OVER () AS pod_key, p.uid, p.namespace, p.name, p.node_name,
           p.phase, p.synced_at, p.labels, p.deployment_name, p.created_at, p.start_time,
           p.deleted_at,
           COALESCE(p.requests_cpu_cores, 0) AS request_cpu,
           COALESCE(p.requests_memory_bytes, 0) AS request_memory,
           LEAST(COALESCE(p.deleted_at, 'infinity'),
                 COALESCE(lead(p.created_at) OVER same_name, 'infinity')) AS ends_at
      FROM k8s_pods p
     WHERE p.cluster_id = $1 AND p.created_at < $3::timestamptz + $4::interval
       AND (p.deleted_at IS NULL OR p.deleted_at > $2::timestamptz - $4::interval)
    WINDOW same_name AS (PARTITION BY p.namespace, p.name ORDER BY p.created_at, p.uid)
),
hour_names AS (
    SELECT DISTINCT namespace, name FROM incarnations WHERE created_at < $3 AND ends_at > $2
),
points AS (
    SELECT m.namespace, m.name, m.sampled_at, m.cpu_cores, m.memory_bytes, m.storage_bytes,
           m.network_tx_bytes AS tx, true AS inside
      FROM k8s_resource_metrics m
     WHERE m.cluster_id = $1 AND m.level = 'pod' AND m.sampled_at >= $2 AND m.sampled_at < $3
    UNION ALL
    SELECT n.namespace, n.name, edge.sampled_at, NULL, NULL, NULL, edge.tx, false
      FROM hour_names n
     CROSS JOIN LATERAL (
        (SELECT m.sampled_at, m.network_tx_bytes AS tx FROM k8s_resource_metrics m
          WHERE m.cluster_id = $1 AND m.level = 'pod' AND m.namespace = n.namespace
            AND m.name = n.name AND m.network_tx_bytes IS NOT NULL
            AND m.sampled_at >= $2 - $4 AND m.sampled_at < $2
          ORDER BY m.sampled_at DESC LIMIT 1)
        UNION ALL
        (SELECT m.sampled_at, m.network_tx_bytes FROM k8s_resource_metrics m
          WHERE m.cluster_id = $1 AND m.level = 'pod' AND m.namespace = n.namespace
            AND m.name = n.name AND m.network_tx_bytes IS NOT NULL
            AND m.sampled_at >= $3 AND m.sampled_at < $3 + $4
          ORDER BY m.sampled_at LIMIT 1)) edge
),
owned AS (
    -- Each sample with its owner; CPU and memory already as OpenCost allocates them per
    -- sample, max(request, usage), so the rows sorted below stay narrow.
    SELECT i.pod_key, pt.sampled_at, pt.tx, pt.inside, pt.storage_bytes,
           GREATEST(i.request_cpu, pt.cpu_cores) AS cpu_allocated,
           GREATEST(i.request_memory, pt.memory_bytes) AS memory_allocated,
           pt.cpu_cores IS NOT NULL AS has_cpu, pt.memory_bytes IS NOT NULL AS has_memory
      FROM points pt
      JOIN incarnations i
        ON i.namespace = pt.namespace AND i.name = pt.name
       AND pt.sampled_at >= i.created_at AND pt.sampled_at < i.ends_at
),
series AS (
    -- Counter samples form their own partition, so lag() finds the previous counter reading
    -- of the same incarnation even when samples without one come between.
    SELECT o.*, lag(o.sampled_at) OVER w AS t0, lag(o.tx) OVER w AS tx0
      FROM owned o
    WINDOW w AS (PARTITION BY o.pod_key, o.tx IS NULL ORDER BY o.sampled_at)
),
deltas AS (
    SELECT s.*, CASE WHEN tx >= tx0 THEN tx - tx0 ELSE tx END AS delta,
           tx IS NOT NULL AND sampled_at > $2 AND t0 < $3 AND sampled_at - t0 <= $4
               AS counts_delta
      FROM series s
),
per_pod AS (
    -- One pass per incarnation: the usage inside the hour, and the counter's growth in it
    -- (all of an interval inside the hour; the overlap, pro rata, of one crossing an edge).
    SELECT pod_key, count(*) FILTER (WHERE inside) AS inside_samples,
           avg(cpu_allocated) FILTER (WHERE inside AND has_cpu) AS cpu,
           avg(memory_allocated) FILTER (WHERE inside AND has_memory) AS memory,
           avg(storage_bytes) FILTER (WHERE inside) AS storage,
           COALESCE(sum(delta) FILTER (WHERE counts_delta AND t0 >= $2 AND sampled_at < $3),
                    0)
         + COALESCE(sum(delta * extract(epoch FROM LEAST(sampled_at, $3) - GREATEST(t0, $2))
                              / extract(epoch FROM sampled_at - t0))
                        FILTER (WHERE counts_delta AND (t0 < $2 OR sampled_at >= $3)), 0)
               AS tx_bytes,
           count(*) FILTER (WHERE counts_delta AND (t0 < $2 OR sampled_at >= $3)) AS crossings
      FROM deltas GROUP BY pod_key
),
sample_count AS (
    SELECT COALESCE(sum(inside_samples + crossings), 0) AS samples FROM per_pod
)
"""

_COUNT_SQL = f"WITH {SAMPLE_CTES} SELECT samples FROM sample_count"


async def hour_sample_count(
    conn: asyncpg.Connection, *, cluster_id: uuid.UUID, hour: datetime
) -> int:
    """How many samples the hour's figures read (what the ledger's ``sample_count`` holds)."""
    count: int = await conn.fetchval(
        _COUNT_SQL, cluster_id, hour, hour + timedelta(hours=1), COUNTER_MAX_GAP
    )
    return count
