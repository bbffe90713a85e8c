"""Sync throughput and latency against kubesim's large fleet, as ratios to a bare COPY.

Prints:
* initial list: rows/s of a full sync (HTTP list of every kind, map, stage, upsert) and the
  ratio to COPYing the same mapped rows into bare staging tables in the same run;
* no-op resync: every informer relists, nothing changed (the IS DISTINCT FROM path);
* change -> row latency: median and p99 from a pod patch in kubesim to its row in PostgreSQL.

Run: ``PYTHONPATH=. .venv/bin/python bench/bench_sync.py [--fleet large] [--changes 200]``
(``DATABASE_URL`` or the embedded PostgreSQL in a temporary folder).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from typing import Any

import asyncpg
import orjson

from app.db import create_pool
from app.network_guard import NetworkPolicy
from app.vault import Vault, generate_key
from kubesim import KubeSim
from sync.cluster_sync import ClusterRecord, ClusterSync, SyncOptions, kubeconfig_aad
from sync.mappers import map_deployment, map_namespace, map_node, map_pod, map_replicaset
from sync.writer import JSON_COLUMNS, TABLES
from tests.databases import bench_database

MAPPERS = {
    "namespaces": map_namespace,
    "nodes": map_node,
    "replicasets": map_replicaset,
    "deployments": map_deployment,
    "pods": map_pod,
}
# kubesim listens on loopback, which the sync refuses unless local clusters are allowed.
OPTIONS = SyncOptions(page_size=500, flush_interval=0.05, metrics_interval=3600.0,
                      heartbeat_interval=3600.0, health_interval=3600.0,
                      network=NetworkPolicy(allow_local=True))


async def bare_copy_seconds(pool: asyncpg.Pool, sim: KubeSim) -> tuple[float, int]:
    """COPY the same mapped rows into bare staging tables: the floor for any writer."""
    staged: list[tuple[str, tuple[str, ...], list[tuple[Any, ...]]]] = []
    for kind, mapper in MAPPERS.items():
        spec = TABLES[kind]
        columns = spec.stage_columns
        records = [
            tuple(orjson.dumps(v).decode() if c in JSON_COLUMNS and v is not None else v
                  for c in columns for v in [row.get(c)])
            for row in (mapper(obj) for obj in sim.store.list(kind))
        ]
        staged.append((spec.table, columns, records))
    async with pool.acquire() as conn, conn.transaction():
        for table, columns, _ in staged:
            shape = ", ".join(f"{c}::text AS {c}" if c in JSON_COLUMNS else c for c in columns)
            await conn.execute(f"CREATE TEMP TABLE bare_{table} ON COMMIT DROP AS "
                               f"SELECT {shape} FROM {table} WITH NO DATA")
        started = time.perf_counter()
        for table, columns, records in staged:
            await conn.copy_records_to_table(f"bare_{table}", records=records, columns=columns)
        elapsed = time.perf_counter() - started
    return elapsed, sum(len(r) for _, _, r in staged)


async def register(pool: asyncpg.Pool, vault: Vault, sim: KubeSim) -> ClusterRecord:
    async with pool.acquire() as conn:
        org = await conn.fetchval(
            "INSERT INTO organizations (slug, name) VALUES ('bench', 'bench') RETURNING id")
        cluster_id = await conn.fetchval(
            "INSERT INTO k8s_clusters (organization_id, name, provider, api_server_url,"
            " kubeconfig_encrypted, kubeconfig_key_id) VALUES ($1, 'bench', 'vanilla', $2,"
            " '\\x00', 'x') RETURNING id", org, sim.url)
        kubeconfig = {
            "apiVersion": "v1", "kind": "Config", "current-context": "b",
            "clusters": [{"name": "b", "cluster": {"server": sim.url}}],
            "users": [{"name": "b", "user": {"token": sim.token}}],
            "contexts": [{"name": "b", "context": {"cluster": "b", "user": "b"}}],
        }
        sealed = vault.encrypt(orjson.dumps(kubeconfig), aad=kubeconfig_aad(cluster_id))
        await conn.execute(
            "UPDATE k8s_clusters SET kubeconfig_encrypted = $2, kubeconfig_key_id = $3"
            " WHERE id = $1", cluster_id, sealed.ciphertext, sealed.key_id)
        row = await conn.fetchrow("SELECT * FROM k8s_clusters WHERE id = $1", cluster_id)
    return ClusterRecord.from_row(row)


async def measure_latency(
    pool: asyncpg.Pool, sim: KubeSim, cluster_id: uuid.UUID, changes: int
) -> list[float]:
    pods = sim.store.list("pods")[:changes]
    sent: dict[str, float] = {}
    seen: dict[str, float] = {}

    async def poll() -> None:
        while len(seen) < len(pods):
            rows = await pool.fetch(
                "SELECT name FROM k8s_pods WHERE cluster_id = $1 AND labels ? 'bench'",
                cluster_id)
            now = time.perf_counter()
            for row in rows:
                seen.setdefault(row["name"], now)
            await asyncio.sleep(0.005)

    poller = asyncio.create_task(poll())
    for pod in pods:
        meta = pod["metadata"]
        sent[meta["name"]] = time.perf_counter()
        sim.store.patch("pods", meta["name"], {"metadata": {"labels": {"bench": "1"}}},
                        namespace=meta["namespace"])
        await asyncio.sleep(0.02)
    await asyncio.wait_for(poller, 60)
    return sorted(seen[name] - sent[name] for name in sent)


async def bench(*, fleet: str, changes: int) -> None:
    async with bench_database("fg_bench") as db_url:
        pool = await create_pool(db_url, max_size=6)
        vault = Vault.from_env(generate_key())
        built = time.perf_counter()
        async with KubeSim.start(fleet=fleet, seed=7) as sim:
            print(f"kubesim {fleet} fleet built in {time.perf_counter() - built:.1f}s:",
                  {k: len(sim.store.list(k)) for k in MAPPERS})
            record = await register(pool, vault, sim)
            sync = ClusterSync(pool=pool, vault=vault, record=record, options=OPTIONS)
            started = time.perf_counter()
            task = asyncio.create_task(sync.run())
            await asyncio.wait_for(sync.synced.wait(), 600)
            initial = time.perf_counter() - started
            # The same rows as the bare COPY: the five table kinds (quotas and Helm secrets
            # are listed too, and their time is in the figure, but not counted as rows).
            rows = sum(i.listed_items for i in sync.informers if i.spec.kind in MAPPERS)
            copy_s, copy_rows = await bare_copy_seconds(pool, sim)
            copy_rate = copy_rows / copy_s
            print(f"bare COPY:       {copy_rows:>7} rows in {copy_s:6.2f}s = "
                  f"{copy_rate:10.0f} rows/s")
            rate = rows / initial
            print(f"initial list:    {rows:>7} rows in {initial:6.2f}s = {rate:10.0f} rows/s"
                  f"  ratio to COPY {rate / copy_rate:.3f}")
            flusher = sync.flusher
            assert flusher is not None
            before = [i.relists for i in sync.informers]
            flushes = flusher.flushes
            started = time.perf_counter()
            sync.request_relist()
            while any(i.relists == b for i, b in zip(sync.informers, before, strict=True)) or \
                    flusher.pending or flusher.flushes == flushes:  # noqa: ASYNC110 - polling
                await asyncio.sleep(0.01)
            resync = time.perf_counter() - started
            rate = rows / resync
            print(f"no-op resync:    {rows:>7} rows in {resync:6.2f}s = {rate:10.0f} rows/s"
                  f"  ratio to COPY {rate / copy_rate:.3f}")
            latencies = await measure_latency(pool, sim, record.id, changes)
            p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
            print(f"change -> row:   {len(latencies)} pod patches, median "
                  f"{statistics.median(latencies) * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms")
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        await pool.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fleet", default="large")
    parser.add_argument("--changes", type=int, default=200)
    args = parser.parse_args()
    asyncio.run(bench(fleet=args.fleet, changes=args.changes))


if __name__ == "__main__":
    main()
