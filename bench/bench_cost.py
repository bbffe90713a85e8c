"""How long costing one hour of a 10,000-pod cluster takes, against reading its samples once.

The allocation is set-based SQL. Since issue 14 it must order each pod's samples (network
counter deltas between consecutive samples, resets, samples matched to the pod incarnation
alive at their time), so its floor is the hour's samples read once *and ordered per series*
in the server (a ``lag()`` over them, aggregated): the ratio printed here says how much work
beyond that the whole computation (allocation, idle, hour and day rollups, ledger, cluster
totals) costs. The plain aggregating scan is printed too, for comparison with older figures.
Rows are generated directly in SQL.

    .venv/bin/python bench/bench_cost.py [--pods 10000] [--samples-per-pod 60] [--runs 5]

Uses ``DATABASE_URL`` when set, else an embedded PostgreSQL in a temporary folder; either way
it works in a scratch database it drops at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from datetime import UTC, datetime, timedelta

from app.db import create_pool
from cost.allocation import compute_hour, floor_hour
from cost.pricing import PriceBook
from tests.databases import bench_database

# The allocation may cost this many ordered reads of its samples before we call it slow.
RATIO_FLOOR = 4.0

GENERATE = """
WITH org AS (INSERT INTO organizations (slug, name) VALUES ('bench', 'bench') RETURNING id)
INSERT INTO k8s_clusters (organization_id, name, provider, api_server_url,
                          kubeconfig_encrypted, kubeconfig_key_id, created_at)
SELECT id, 'bench', 'eks', 'https://bench', '\\x00', 'k', $1 FROM org RETURNING id
"""

NODES = """
INSERT INTO k8s_nodes (cluster_id, uid, name, capacity_cpu_cores, capacity_memory_bytes,
                       instance_type, created_at)
SELECT $1, 'node-' || n, 'node-' || n, 32, 128 * 1073741824::bigint,
       CASE WHEN n % 2 = 0 THEN 'm5.8xlarge' END, $2
  FROM generate_series(1, $3) n
"""

NAMESPACES = """
INSERT INTO k8s_namespaces (cluster_id, uid, name, team, cost_center, created_at)
SELECT $1, 'ns-' || n, 'ns-' || n, 'team-' || (n % 7), 'cc-' || (n % 5), $2
  FROM generate_series(1, 50) n
"""

PODS = """
INSERT INTO k8s_pods (cluster_id, uid, namespace, name, node_name, deployment_name, labels,
                      phase, requests_cpu_cores, requests_memory_bytes, created_at, start_time,
                      deleted_at)
SELECT $1, 'pod-' || p, 'ns-' || (p % 50 + 1), 'pod-' || p, 'node-' || (p % $4 + 1),
       'deploy-' || (p % 400),
       CASE WHEN p % 10 = 0 THEN jsonb_build_object('team', 'override') ELSE '{}' END,
       'Running', 0.1 + (p % 5) * 0.1, (256 + (p % 4) * 256) * 1048576::bigint,
       $2::timestamptz - CASE WHEN p % 20 = 0 THEN interval '-20 minutes' ELSE interval '1 day' END,
       $2::timestamptz - CASE WHEN p % 20 = 0 THEN interval '-21 minutes' ELSE interval '1 day' END,
       CASE WHEN p % 25 = 0 THEN $2::timestamptz + interval '40 minutes' END
  FROM generate_series(1, $3) p
"""

SAMPLES = """
INSERT INTO k8s_resource_metrics (cluster_id, level, namespace, name, sampled_at, cpu_cores,
                                  memory_bytes, storage_bytes, network_tx_bytes)
SELECT $1, 'pod', 'ns-' || (p % 50 + 1), 'pod-' || p,
       $2::timestamptz + make_interval(secs => s * 3600.0 / $4), ((p * 7 + s) % 50) / 100.0,
       (200 + (p + s) % 600) * 1048576::bigint, 1073741824::bigint, s * 1048576::bigint
  FROM generate_series(1, $3) p, generate_series(0, $4 - 1) s
 WHERE p % 13 <> 0  -- some pods have no samples: costed on requests
"""



# The same scan with the rows consumed in the server, so client decoding does not flatter us.
SCAN = """
SELECT count(*), sum(cpu_cores), sum(memory_bytes), sum(storage_bytes), sum(network_tx_bytes),
       max(namespace), max(name)
  FROM k8s_resource_metrics
 WHERE cluster_id = $1 AND level = 'pod' AND sampled_at >= $2 AND sampled_at < $3
"""

# The floor: the same samples, ordered per series with a counter delta each, consumed in the
# server.
ORDERED = """
SELECT count(*), sum(delta), max(namespace), max(name)
  FROM (SELECT namespace, name,
               network_tx_bytes - lag(network_tx_bytes) OVER (
                   PARTITION BY namespace, name ORDER BY sampled_at) AS delta
          FROM k8s_resource_metrics
         WHERE cluster_id = $1 AND level = 'pod' AND sampled_at >= $2 AND sampled_at < $3) s
"""

READ = """
SELECT namespace, name, sampled_at, cpu_cores, memory_bytes, storage_bytes, network_tx_bytes
  FROM k8s_resource_metrics
 WHERE cluster_id = $1 AND level = 'pod' AND sampled_at >= $2 AND sampled_at < $3
"""


async def _bench(url: str, *, pods: int, samples_per_pod: int, runs: int) -> None:
    hour = floor_hour(datetime.now(UTC)) - timedelta(hours=1)
    pool = await create_pool(url, statement_timeout_ms=600_000, max_size=2)
    try:
        async with pool.acquire() as conn:
            started = time.perf_counter()
            cluster = await conn.fetchval(GENERATE, hour - timedelta(days=2))
            nodes = max(1, pods // 50)
            await conn.execute(NODES, cluster, hour - timedelta(days=2), nodes)
            await conn.execute(NAMESPACES, cluster, hour - timedelta(days=2))
            await conn.execute(PODS, cluster, hour, pods, nodes)
            await conn.execute(SAMPLES, cluster, hour, pods, samples_per_pod)
            await conn.execute("VACUUM ANALYZE")
            generated = time.perf_counter() - started
            samples = await conn.fetchval(
                "SELECT count(*) FROM k8s_resource_metrics WHERE cluster_id = $1", cluster
            )
            book = PriceBook.from_env({})
            read_times, scan_times, ordered_times, compute_times = [], [], [], []
            for _ in range(runs):
                t0 = time.perf_counter()
                await conn.fetchrow(SCAN, cluster, hour, hour + timedelta(hours=1))
                scan_times.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                await conn.fetchrow(ORDERED, cluster, hour, hour + timedelta(hours=1))
                ordered_times.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                rows = await conn.fetch(READ, cluster, hour, hour + timedelta(hours=1))
                read_times.append(time.perf_counter() - t0)
                assert len(rows) == samples
                t0 = time.perf_counter()
                result = await compute_hour(conn, cluster_id=cluster, hour=hour, book=book,
                                            now=hour + timedelta(hours=2))
                compute_times.append(time.perf_counter() - t0)
            assert result is not None
    finally:
        await pool.close()
    read, compute = statistics.median(read_times), statistics.median(compute_times)
    scan, ordered = statistics.median(scan_times), statistics.median(ordered_times)
    ratio = compute / ordered
    print(f"fleet: {pods} pods on {nodes} nodes, 50 namespaces, {samples} samples in the hour "
          f"(generated in {generated:.1f} s)")
    print(f"hour total {result.total_cost} = allocated {result.allocated_cost} "
          f"+ idle {result.idle_cost}; {result.pod_count} pods costed")
    print(f"SELECT of the hour's samples, rows to Python: median {read * 1000:.1f} ms")
    print(f"SELECT of the hour's samples, aggregated in server: median {scan * 1000:.1f} ms")
    print(f"SELECT of the hour's samples, ordered per series in server: median "
          f"{ordered * 1000:.1f} ms")
    print(f"compute_hour (allocation + rollups + ledger): median {compute * 1000:.1f} ms "
          f"({runs} runs each)")
    print(f"ratio compute / fetched SELECT = {compute / read:.2f}")
    print(f"ratio compute / aggregating SELECT = {compute / scan:.2f}")
    print(f"ratio compute / ordered SELECT = {ratio:.2f} (floor: <= {RATIO_FLOOR:.1f}) "
          f"-> {'OK' if ratio <= RATIO_FLOOR else 'SLOW'}")


async def _main(args: argparse.Namespace) -> None:
    async with bench_database("fg_bench") as url:
        await _bench(url, pods=args.pods, samples_per_pod=args.samples_per_pod, runs=args.runs)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=10_000)
    parser.add_argument("--samples-per-pod", type=int, default=60)
    parser.add_argument("--runs", type=int, default=5)
    asyncio.run(_main(parser.parse_args()))
