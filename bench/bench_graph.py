"""How fast the graph serves a ~10,000-pod tree, against an honest floor.

The floor is the least any server could do for the same answer: the same rows read with
asyncpg (one statement per level, the same columns the GraphQL query asks for) and serialised
with orjson into the same nested edges/node shape. The ratio printed is what GraphQL execution,
Strawberry objects, dataloaders and HTTP cost on top; a profile shows where it goes.

    PYTHONPATH=. .venv/bin/python bench/bench_graph.py [--clusters 5] [--runs 7]

Uses ``DATABASE_URL`` when set, else an embedded PostgreSQL in a temporary folder; either way
it works in a scratch database it drops at the end. Rows are generated directly in SQL.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import functools
import io
import pstats
import statistics
import time
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import orjson

from app.db import create_pool
from schema.relay import to_global_id
from tests.api import Api, running_api
from tests.databases import bench_database

NAMESPACES, DEPLOYMENTS, PODS = 10, 10, 20  # per cluster, namespace, deployment

GENERATE = """
WITH cl AS (
    INSERT INTO k8s_clusters (organization_id, name, provider, api_server_url,
                              kubeconfig_encrypted, kubeconfig_key_id)
    SELECT $1, 'bench-' || c, 'eks', 'https://bench', '\\x00', 'k'
      FROM generate_series(1, $2) c RETURNING id
), ns AS (
    INSERT INTO k8s_namespaces (cluster_id, uid, name, team, created_at)
    SELECT cl.id, gen_random_uuid()::text, 'ns-' || lpad(n::text, 2, '0'), 'team', now()
      FROM cl, generate_series(1, $3) n RETURNING cluster_id, name
), dep AS (
    INSERT INTO k8s_deployments (cluster_id, uid, namespace, name, replicas_desired, created_at)
    SELECT ns.cluster_id, gen_random_uuid()::text, ns.name, 'dep-' || lpad(d::text, 2, '0'), $5,
           now()
      FROM ns, generate_series(1, $4) d RETURNING cluster_id, namespace, name
)
INSERT INTO k8s_pods (cluster_id, uid, namespace, name, deployment_name, phase, node_name,
                      restart_count, requests_cpu_cores, requests_memory_bytes, created_at)
SELECT dep.cluster_id, gen_random_uuid()::text, dep.namespace,
       dep.name || '-' || lpad(p::text, 2, '0'), dep.name, 'Running', 'node-' || (p % 4),
       p % 3, 0.25, 268435456, now()
  FROM dep, generate_series(1, $5) p
"""

POD_FIELDS = "name phase restartCount nodeName requests { cpuCores memoryBytes }"
FULL_TREE = f"""{{ clusters(first: 50) {{ edges {{ node {{ name
  namespaces(first: {NAMESPACES}) {{ edges {{ node {{ name
    deployments(first: {DEPLOYMENTS}) {{ edges {{ node {{ name
      pods(first: {PODS}) {{ edges {{ node {{ {POD_FIELDS} }} }} }} }} }} }} }} }} }} }} }} }} }}"""
ONE_NAMESPACE = f"""query($id: ID!) {{ node(id: $id) {{ ... on Namespace {{ name
  deployments(first: {DEPLOYMENTS}) {{ edges {{ node {{ name
    pods(first: {PODS}) {{ edges {{ node {{ {POD_FIELDS} }} }} }} }} }} }} }} }} }}"""

# The floor's reads: the same rows and columns, one statement per level.
FLOOR_SQL = {
    "clusters": "SELECT id, name FROM k8s_clusters WHERE organization_id = $1 ORDER BY name",
    "namespaces": "SELECT n.cluster_id, n.name FROM k8s_namespaces n JOIN k8s_clusters c "
                  "ON c.id = n.cluster_id WHERE c.organization_id = $1 AND n.deleted_at IS NULL "
                  "AND ($2::text IS NULL OR n.name = $2) ORDER BY n.name",
    "deployments": "SELECT d.cluster_id, d.namespace, d.name, d.replicas_desired "
                   "FROM k8s_deployments d JOIN k8s_clusters c ON c.id = d.cluster_id "
                   "WHERE c.organization_id = $1 AND d.deleted_at IS NULL "
                   "AND ($2::text IS NULL OR d.namespace = $2) ORDER BY d.name",
    "pods": "SELECT p.cluster_id, p.namespace, p.deployment_name, p.name, p.phase, "
            "p.restart_count, p.node_name, p.requests_cpu_cores, p.requests_memory_bytes "
            "FROM k8s_pods p JOIN k8s_clusters c ON c.id = p.cluster_id "
            "WHERE c.organization_id = $1 AND p.deleted_at IS NULL "
            "AND ($2::text IS NULL OR p.namespace = $2) ORDER BY p.name",
}


def _edges(nodes: list[dict[str, Any]]) -> dict[str, Any]:
    return {"edges": [{"node": n} for n in nodes]}


async def floor(pool: asyncpg.Pool, org_id: uuid.UUID, namespace: str | None) -> bytes:
    """The same answer, built by hand: asyncpg rows nested with dicts, then orjson."""
    async with pool.acquire() as conn:
        rows = {level: await conn.fetch(sql, org_id) if level == "clusters"
                else await conn.fetch(sql, org_id, namespace)
                for level, sql in FLOOR_SQL.items()}
    pods: dict[tuple[Any, ...], list[dict[str, Any]]] = defaultdict(list)
    for p in rows["pods"]:
        pods[(p["cluster_id"], p["namespace"], p["deployment_name"])].append({
            "name": p["name"], "phase": p["phase"].upper(), "restartCount": p["restart_count"],
            "nodeName": p["node_name"],
            "requests": {"cpuCores": float(p["requests_cpu_cores"]),
                         "memoryBytes": str(p["requests_memory_bytes"])}})  # Long
    deployments: dict[tuple[Any, ...], list[dict[str, Any]]] = defaultdict(list)
    for d in rows["deployments"]:
        key = (d["cluster_id"], d["namespace"], d["name"])
        deployments[(d["cluster_id"], d["namespace"])].append(
            {"name": d["name"], "pods": _edges(pods[key])})
    namespaces: dict[Any, list[dict[str, Any]]] = defaultdict(list)
    for n in rows["namespaces"]:
        namespaces[n["cluster_id"]].append(
            {"name": n["name"], "deployments": _edges(deployments[(n["cluster_id"], n["name"])])})
    if namespace is not None:
        return orjson.dumps({"data": {"node": namespaces[rows["clusters"][0]["id"]][0]}})
    clusters = [{"name": c["name"], "namespaces": _edges(namespaces[c["id"]])}
                for c in rows["clusters"]]
    return orjson.dumps({"data": {"clusters": _edges(clusters)}})


async def median_seconds(action: Callable[[], Awaitable[Any]], runs: int) -> float:
    await action()  # warm caches and prepared statements
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        await action()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


async def _post(api: Api, query: str, variables: dict[str, Any]) -> bytes:
    response = await api.http.post("/graphql", json={"query": query, "variables": variables},
                                   headers={"Authorization": f"Bearer {api.a.tokens['viewer']}"})
    assert b'"errors"' not in response.content, response.content[:500]
    return response.content


async def _profile(api: Api, query: str) -> str:
    profiler = cProfile.Profile()
    profiler.enable()
    await _post(api, query, {})
    profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(15)
    return "\n".join(line for line in out.getvalue().splitlines()[6:] if line.strip())


async def _bench(url: str, *, clusters: int, runs: int) -> None:
    pool = await create_pool(url, max_size=4)
    try:
        async with running_api(url, pool, slug_prefix="bench") as api:
            org = api.a.org_id
            await pool.execute(GENERATE, org, clusters, NAMESPACES, DEPLOYMENTS, PODS)
            await pool.execute("ANALYZE")
            ns_row = await pool.fetchrow(
                "SELECT n.id, n.name FROM k8s_namespaces n JOIN k8s_clusters c "
                "ON c.id = n.cluster_id WHERE c.organization_id = $1 ORDER BY c.name, n.name "
                "LIMIT 1", org)
            ns_vars = {"id": str(to_global_id("Namespace", ns_row["id"]))}
            pods = clusters * NAMESPACES * DEPLOYMENTS * PODS
            answer = orjson.loads(await _post(api, FULL_TREE, {}))
            shown = sum(len(d["node"]["pods"]["edges"])
                        for c in answer["data"]["clusters"]["edges"]
                        for n in c["node"]["namespaces"]["edges"]
                        for d in n["node"]["deployments"]["edges"])
            assert shown == pods, (shown, pods)
            print(f"fleet: {clusters} clusters, {pods} pods ({runs} runs each, median)")
            cases: list[tuple[str, str, dict[str, Any], str | None]] = [
                ("full tree", FULL_TREE, {}, None),
                ("one namespace", ONE_NAMESPACE, ns_vars, ns_row["name"]),
            ]
            for label, query, variables, namespace in cases:
                graph = await median_seconds(functools.partial(_post, api, query, variables),
                                             runs)
                low = await median_seconds(functools.partial(floor, pool, org, namespace), runs)
                print(f"{label:>14}: graph {graph * 1000:8.1f} ms   floor {low * 1000:7.1f} ms"
                      f"   ratio {graph / low:5.1f}x")
            print("\nprofile of one full-tree request (server and client share this process; "
                  "top 15 by own time):")
            print(await _profile(api, FULL_TREE))
    finally:
        await pool.close()


async def _main(args: argparse.Namespace) -> None:
    async with bench_database("fg_bench") as url:
        await _bench(url, clusters=args.clusters, runs=args.runs)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clusters", type=int, default=5)
    parser.add_argument("--runs", type=int, default=7)
    asyncio.run(_main(parser.parse_args()))
