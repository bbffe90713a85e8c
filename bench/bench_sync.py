"""Sync throughput and latency against kubesim's large fleet, as ratios to a bare COPY.

Prints:
* kubesim serving: the time kubesim takes to answer every list page (read, not parsed): the
  API server's share, which no client can go below;
* bare COPY: the same mapped rows COPYed into bare staging tables, best of three, before the
  sync starts;
* JSON parse, and parse + map: ``orjson.loads`` of every list page (what any Python client of
  the API pays), then also the sync's own mappers over every item; best of three. Each one's
  time against the COPY's bounds the ratio below, before anything is written;
* initial list: rows/s of a full sync (HTTP list of every kind, parse, map, stage, upsert,
  until every informer watches; ANALYZE runs beside the watches) and the ratio to the bare
  COPY; and when the cluster was written ACTIVE (later: the first metrics sample goes before
  that status write);
* no-op resync: every informer relists, nothing changed; its time against the initial list's,
  and the objects it found unchanged and the rows it wrote (both exact);
* change -> row latency: median and p99 from a pod patch in kubesim to its row in PostgreSQL.

kubesim runs in a process of its own, as an API server does: in this process its serving
would share the loop with the sync, and its fleet (half a million objects) would be walked by
every garbage collection the sync's parsing sets off, neither of which a real cluster costs.

Run: ``PYTHONPATH=. .venv/bin/python bench/bench_sync.py [--fleet large] [--changes 200]``
(``DATABASE_URL`` or the embedded PostgreSQL in a temporary folder).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import secrets
import statistics
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
import orjson

from app.db import create_pool
from app.network_guard import NetworkPolicy
from app.vault import Vault, generate_key
from bench.processes import free_port, server_process
from sync.cluster_sync import ClusterRecord, ClusterSync, SyncOptions, kubeconfig_aad
from sync.informer import InformerState
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
PATHS = {
    "namespaces": "/api/v1/namespaces",
    "nodes": "/api/v1/nodes",
    "replicasets": "/apis/apps/v1/replicasets",
    "deployments": "/apis/apps/v1/deployments",
    "pods": "/api/v1/pods",
    "resourcequotas": "/api/v1/resourcequotas",
    "secrets": "/api/v1/secrets",
}
PAGE_SIZE = 500
# kubesim listens on loopback, which the sync refuses unless local clusters are allowed.
OPTIONS = SyncOptions(page_size=PAGE_SIZE, flush_interval=0.05, metrics_interval=3600.0,
                      heartbeat_interval=3600.0, health_interval=3600.0,
                      network=NetworkPolicy(allow_local=True))


@dataclass(frozen=True)
class Sim:
    url: str
    token: str


@contextlib.asynccontextmanager
async def kubesim_process(fleet: str) -> AsyncIterator[Sim]:
    """``python -m kubesim`` serving a static ``fleet`` (seed 7) over plain HTTP."""
    port, token = free_port(), f"bench-{secrets.token_hex(8)}"
    argv = ["-m", "kubesim", "--port", str(port), "--fleet", fleet, "--seed", "7",
            "--token", token, "--plain-http"]
    async with server_process(argv, port=port, ready_path="/version") as base:
        yield Sim(base, token)


async def list_raw(http: httpx.AsyncClient, path: str) -> list[bytes]:
    """Every page of one list, as the sync asks for it (``limit``/``continue``), unparsed
    but for the continue token."""
    pages: list[bytes] = []
    token = ""
    while True:
        params = {"limit": str(PAGE_SIZE), **({"continue": token} if token else {})}
        response = await http.get(path, params=params)
        response.raise_for_status()
        pages.append(response.content)
        # kubesim writes the list's metadata before its items: only that head is parsed
        head = orjson.loads(response.content[:response.content.index(b',"items":[')] + b"}")
        token = head.get("metadata", {}).get("continue") or ""
        if not token:
            return pages


async def serving_seconds(sim: Sim) -> tuple[float, list[tuple[str, bytes]]]:
    """How long kubesim takes to answer every page of every list the sync makes, and the
    pages (by kind)."""
    async with httpx.AsyncClient(base_url=sim.url, timeout=120,
                                 headers={"Authorization": f"Bearer {sim.token}"}) as http:
        await list_raw(http, PATHS["namespaces"])  # connection up
        started = time.perf_counter()
        pages: list[tuple[str, bytes]] = []
        for kind, path in PATHS.items():
            pages += [(kind, page) for page in await list_raw(http, path)]
        return time.perf_counter() - started, pages


def decode_seconds(pages: list[tuple[str, bytes]], *, mapped: bool) -> float:
    """``orjson.loads`` of every page (what any Python client of the API pays), and with
    ``mapped`` the sync's own mapper over every item of the five table kinds too; best of
    three, the collector paused as the sync pauses it."""
    times = []
    for _ in range(3):
        gc.disable()
        started = time.perf_counter()
        for kind, page in pages:
            items = orjson.loads(page)["items"]
            mapper = MAPPERS.get(kind) if mapped else None
            if mapper is not None:
                for item in items:
                    mapper(item)
        times.append(time.perf_counter() - started)
        gc.enable()
    return min(times)


async def fetch_objects(sim: Sim) -> dict[str, list[dict[str, Any]]]:
    async with httpx.AsyncClient(base_url=sim.url, timeout=120,
                                 headers={"Authorization": f"Bearer {sim.token}"}) as http:
        return {kind: (await http.get(PATHS[kind])).json()["items"] for kind in MAPPERS}


Staged = list[tuple[str, tuple[str, ...], list[tuple[Any, ...]]]]


def mapped_records(objects: dict[str, list[dict[str, Any]]]) -> Staged:
    """The rows the sync writes, mapped and encoded for COPY (tables, columns, records)."""
    staged: Staged = []
    for kind, mapper in MAPPERS.items():
        spec = TABLES[kind]
        columns = spec.stage_columns
        records = [
            tuple(orjson.dumps(v).decode() if c in JSON_COLUMNS and v is not None else v
                  for c in columns for v in [row.get(c)])
            for row in (mapper(obj) for obj in objects[kind])
        ]
        staged.append((spec.table, columns, records))
    return staged


async def bare_copy_seconds(pool: asyncpg.Pool, staged: Staged) -> tuple[float, int]:
    """COPY the same mapped rows into bare staging tables: the floor for any writer (the
    best of three, before the sync starts, so that nothing else writes meanwhile)."""
    runs = [await _bare_copy(pool, staged) for _ in range(3)]
    return min(runs), sum(len(r) for _, _, r in staged)


async def _bare_copy(pool: asyncpg.Pool, staged: Staged) -> float:
    async with pool.acquire() as conn, conn.transaction():
        for table, columns, _ in staged:
            shape = ", ".join(f"{c}::text AS {c}" if c in JSON_COLUMNS else c for c in columns)
            await conn.execute(f"CREATE TEMP TABLE bare_{table} ON COMMIT DROP AS "
                               f"SELECT {shape} FROM {table} WITH NO DATA")
        started = time.perf_counter()
        for table, columns, records in staged:
            await conn.copy_records_to_table(f"bare_{table}", records=records, columns=columns)
        elapsed = time.perf_counter() - started
    return elapsed


async def register(pool: asyncpg.Pool, vault: Vault, sim: Sim) -> ClusterRecord:
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
    pool: asyncpg.Pool, sim: Sim, pods: list[tuple[str, str]], cluster_id: uuid.UUID
) -> list[float]:
    """Patch each of ``pods`` (namespace, name) in turn; seconds until each row shows it."""
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
    async with httpx.AsyncClient(base_url=sim.url, timeout=30, headers={
            "Authorization": f"Bearer {sim.token}",
            "Content-Type": "application/merge-patch+json"}) as http:
        for namespace, name in pods:
            sent[name] = time.perf_counter()
            response = await http.patch(
                f"/api/v1/namespaces/{namespace}/pods/{name}",
                content=orjson.dumps({"metadata": {"labels": {"bench": "1"}}}))
            response.raise_for_status()
            await asyncio.sleep(0.02)
    await asyncio.wait_for(poller, 60)
    return sorted(seen[name] - sent[name] for name in sent)


async def rows_written_since(pool: asyncpg.Pool, cluster_id: uuid.UUID, since: Any) -> int:
    """Rows of the five tables an upsert or a deletion touched since ``since`` (synced_at)."""
    total = 0
    for kind in MAPPERS:
        total += await pool.fetchval(
            f"SELECT count(*) FROM {TABLES[kind].table}"
            " WHERE cluster_id = $1 AND synced_at >= $2", cluster_id, since)
    return int(total)


async def bench(*, fleet: str, changes: int) -> None:
    async with bench_database("fg_bench") as db_url:
        pool = await create_pool(db_url, max_size=6)
        vault = Vault.from_env(generate_key())
        built = time.perf_counter()
        async with kubesim_process(fleet) as sim:
            objects = await fetch_objects(sim)
            print(f"kubesim {fleet} fleet up in {time.perf_counter() - built:.1f}s (own process):",
                  {k: len(v) for k, v in objects.items()})
            # The floor's rows are prepared now, and the objects let go: kept, they would be
            # two million objects for the sync's garbage collections to walk.
            staged = mapped_records(objects)
            pods = [(p["metadata"]["namespace"], p["metadata"]["name"])
                    for p in objects["pods"][:changes]]
            del objects
            gc.collect()
            serve_s, pages = await serving_seconds(sim)
            size = sum(len(page) for _, page in pages)
            print(f"kubesim serving: {size / 1e6:7.1f} MB of list pages in {serve_s:6.2f}s")
            parse_s = decode_seconds(pages, mapped=False)
            decode_s = decode_seconds(pages, mapped=True)
            del pages
            copy_s, copy_rows = await bare_copy_seconds(pool, staged)
            copy_rate = copy_rows / copy_s
            print(f"bare COPY:       {copy_rows:>7} rows in {copy_s:6.2f}s = "
                  f"{copy_rate:10.0f} rows/s")
            for what, seconds in (("JSON parse:     ", parse_s), ("parse + map:    ", decode_s)):
                print(f"{what} every page in {seconds:6.2f}s = {seconds / copy_s:5.2f}x the bare"
                      f" COPY's time: a ratio above {copy_s / seconds:.2f} is out of reach for a"
                      " sync that does this in one process")
            record = await register(pool, vault, sim)
            sync = ClusterSync(pool=pool, vault=vault, record=record, options=OPTIONS)
            started = time.perf_counter()
            task = asyncio.create_task(sync.run())
            # Every kind listed, its snapshot written and ANALYZEd: the informers watch only
            # then. ACTIVE is written a little later, after the first metrics sample (which
            # holds the writer's lock): both are printed, the ratio is the first's.
            while not sync.informers or not all(  # noqa: ASYNC110 - polling
                    i.state in (InformerState.WATCHING, InformerState.REFUSED)
                    for i in sync.informers):
                await asyncio.sleep(0.005)
            initial = time.perf_counter() - started
            await asyncio.wait_for(sync.synced.wait(), 600)
            active = time.perf_counter() - started
            # The same rows as the bare COPY: the five table kinds (quotas and Helm secrets
            # are listed too, and their time is in the figure, but not counted as rows).
            rows = sum(i.listed_items for i in sync.informers if i.spec.kind in MAPPERS)
            rate = rows / initial
            print(f"initial list:    {rows:>7} rows in {initial:6.2f}s = {rate:10.0f} rows/s"
                  f"  ratio to COPY {rate / copy_rate:.3f} (written; ACTIVE after"
                  f" {active:.2f}s)")
            flusher = sync.flusher
            assert flusher is not None
            # The first metrics sample runs as the watches start and holds the writer's lock
            # while it writes, and the first ANALYZE runs beside them: the resync is timed
            # once both are done (a quiet cluster).
            while await pool.fetchval(  # noqa: ASYNC110 - polling
                    "SELECT metrics_available IS NULL OR EXISTS (SELECT 1 FROM pg_stat_activity"
                    " WHERE state = 'active' AND query LIKE 'ANALYZE%') FROM k8s_clusters"
                    " WHERE id = $1", record.id) or flusher.writer.lock.locked() \
                    or flusher.pending:
                await asyncio.sleep(0.01)
            before = [i.relists for i in sync.informers]
            flushes = flusher.flushes
            since = await pool.fetchval("SELECT now()")
            started = time.perf_counter()
            sync.request_relist()
            while any(i.relists == b for i, b in zip(sync.informers, before, strict=True)) or \
                    flusher.pending or flusher.flushes == flushes:  # noqa: ASYNC110 - polling
                await asyncio.sleep(0.01)
            resync = time.perf_counter() - started
            rate = rows / resync
            unchanged = sum(i.unchanged for i in sync.informers if i.spec.kind in MAPPERS)
            written = await rows_written_since(pool, record.id, since)
            print(f"no-op resync:    {rows:>7} rows in {resync:6.2f}s = {rate:10.0f} rows/s"
                  f"  ratio to COPY {rate / copy_rate:.3f}; time {resync / initial:.3f}x the"
                  f" initial list's; {unchanged} unchanged, {written} rows written")
            latencies = await measure_latency(pool, sim, pods, record.id)
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
