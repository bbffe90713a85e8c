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
# ``owned``: every sample read, with its incarnation's uid and requests and whether it is
# inside the hour; ``counter_deltas``: the counter intervals reaching into the hour.
SAMPLE_CTES = """
incarnations AS (
    SELECT p.uid, p.namespace, p.name, p.node_name, p.phase, p.synced_at, p.labels,
           p.deployment_name, p.created_at, p.start_time, p.deleted_at,
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
    SELECT i.uid, i.request_cpu, i.request_memory, pt.sampled_at, pt.cpu_cores,
           pt.memory_bytes, pt.storage_bytes, pt.tx, pt.inside
      FROM points pt
      JOIN incarnations i
        ON i.namespace = pt.namespace AND i.name = pt.name
       AND pt.sampled_at >= i.created_at AND pt.sampled_at < i.ends_at
),
counter_deltas AS (
    SELECT uid, t0, t1, CASE WHEN tx >= tx0 THEN tx - tx0 ELSE tx END AS delta
      FROM (SELECT uid, sampled_at AS t1, tx,
                   lag(sampled_at) OVER series AS t0, lag(tx) OVER series AS tx0
              FROM owned WHERE tx IS NOT NULL
            WINDOW series AS (PARTITION BY uid ORDER BY sampled_at)) s
     WHERE t0 IS NOT NULL AND t1 - t0 <= $4 AND t1 > $2 AND t0 < $3
),
sample_count AS (
    SELECT (SELECT count(*) FROM owned WHERE inside)
         + (SELECT count(*) FROM counter_deltas WHERE t0 < $2 OR t1 >= $3) AS samples
)
"""

# Bytes of each delta that fall in the hour: the interval's overlap with it, pro rata.
NETWORK_CTE = """
network AS (
    SELECT uid, sum(delta * extract(epoch FROM LEAST(t1, $3) - GREATEST(t0, $2))
                          / extract(epoch FROM t1 - t0)) AS tx_bytes
      FROM counter_deltas GROUP BY uid
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
