"""How fast the graph serves a ~10,000-pod tree, against a lean floor over HTTP.

Both servers run in processes of their own: ``fleetgraph serve`` (with its planned path) and
the floor (``bench.floor_server``: Starlette + asyncpg + orjson, one statement per level, no
GraphQL), on the same database, and the two answers are checked byte for byte before anything
is timed. Measured, each against the floor in the same run:

- the full tree and the one-namespace query, median of sequential requests (the client is
  this process, not the server's);
- the mixed dashboard trees: the full tree plus each cluster's ``health``, or plus each pod's
  ``node``, which the planned path leaves to the resolvers (the floor has neither: the
  ratio is against the floor's full tree, what the planned fields alone cost there);
- the one-namespace query under 8 concurrent connections, by ``wrk`` (Debian's) in its own
  process, in requests per second.

    PYTHONPATH=. .venv/bin/python bench/bench_graph.py [--runs 15] [--seconds 10]

Uses ``DATABASE_URL`` when set, else an embedded PostgreSQL in a temporary folder; either way
it works in a scratch database it drops at the end. Rows are generated directly in SQL.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import shutil
import statistics
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import orjson

from app.db import create_pool
from app.tenancy import create_organization, create_token
from bench.processes import fleetgraph_serve, free_port, server_process
from schema.relay import to_global_id
from tests.databases import bench_database

CLUSTERS, NAMESPACES, DEPLOYMENTS, PODS = 5, 10, 10, 20  # per org, cluster, namespace, deployment

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


def tree(cluster_fields: str = "", pod_fields: str = "") -> str:
    """The full tree, with ``cluster_fields`` selected on each cluster besides its name and
    ``pod_fields`` on each pod besides ``POD_FIELDS``."""
    return (
        f"{{ clusters(first: {CLUSTERS}) {{ edges {{ node {{ name {cluster_fields}"
        f"namespaces(first: {NAMESPACES}) {{ edges {{ node {{ name "
        f"deployments(first: {DEPLOYMENTS}) {{ edges {{ node {{ name "
        f"pods(first: {PODS}) {{ edges {{ node {{ {POD_FIELDS} {pod_fields}" + "}" * 13)


FULL_TREE = tree()
MIXED_TREES = {"+ cluster health": tree("health { status podsTotal } "),
               "+ pod node": tree(pod_fields="node { name ready } ")}
ONE_NAMESPACE = (
    "query($id: ID!) { node(id: $id) { ... on Namespace { name "
    f"deployments(first: {DEPLOYMENTS}) {{ edges {{ node {{ name "
    f"pods(first: {PODS}) {{ edges {{ node {{ {POD_FIELDS} }} }} }} }} }} }} }} }} }}")

WRK_SCRIPT = """wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer %s"
wrk.body = [[%s]]
"""


@contextlib.asynccontextmanager
async def _floor(url: str, org_id: Any) -> AsyncIterator[str]:
    """``bench.floor_server`` in its own process, on a free port."""
    port = free_port()
    async with server_process(
        ["-m", "bench.floor_server", "--port", str(port), "--database-url", url,
         "--organization", str(org_id),
         "--limits", f"{CLUSTERS},{NAMESPACES},{DEPLOYMENTS},{PODS}"],
        port=port, ready_path="/graphql",
    ) as base:
        yield base


async def _post(http: httpx.AsyncClient, token: str, body: bytes) -> bytes:
    response = await http.post("/graphql", content=body, headers={
        "Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    assert b'"errors"' not in response.content[:300], response.content[:300]
    return response.content


async def _median_ms(http: httpx.AsyncClient, token: str, body: bytes, runs: int) -> float:
    for _ in range(3):  # warm plans, caches and prepared statements
        await _post(http, token, body)
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        await _post(http, token, body)
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


async def _wrk(base: str, token: str, body: bytes, seconds: float) -> float:
    """Requests per second at 8 connections, by ``wrk`` in its own process."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(WRK_SCRIPT % (token, body.decode()))
    try:
        process = await asyncio.create_subprocess_exec(
            "wrk", "-t2", "-c8", f"-d{seconds:g}s", "-s", script.name, f"{base}/graphql",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        out = (await process.communicate())[0].decode()
    finally:
        os.unlink(script.name)
    if "Non-2xx" in out:
        raise AssertionError(out)
    found = re.search(r"Requests/sec:\s+([0-9.]+)", out)
    assert found is not None, out
    return float(found.group(1))


@dataclass(frozen=True)
class Fleet:
    """The generated fleet: its organization, a viewer token, the first namespace's id."""

    org_id: Any
    token: str
    namespace_id: Any


async def generate_fleet(pool: Any, slug: str) -> Fleet:
    """An organization ``slug`` with the benchmark's fleet, generated in SQL and analysed."""
    async with pool.acquire() as conn:
        org = await create_organization(conn, slug=slug, name=slug.title())
        token = (await create_token(conn, org_slug=slug, role="viewer")).token
    await pool.execute(GENERATE, org, CLUSTERS, NAMESPACES, DEPLOYMENTS, PODS)
    await pool.execute("ANALYZE")
    ns_id = await pool.fetchval(
        "SELECT n.id FROM k8s_namespaces n JOIN k8s_clusters c ON c.id = n.cluster_id "
        "WHERE c.organization_id = $1 ORDER BY c.name, n.name LIMIT 1", org)
    return Fleet(org, token, ns_id)


async def _bench(url: str, *, runs: int, seconds: float) -> None:
    pool = await create_pool(url, max_size=4)
    try:
        fleet = await generate_fleet(pool, "graph")
        org, token, ns_id = fleet.org_id, fleet.token, fleet.namespace_id
        cases = {
            "full tree": orjson.dumps({"query": FULL_TREE, "variables": {}}),
            "one namespace": orjson.dumps({"query": ONE_NAMESPACE, "variables": {
                "id": str(to_global_id("Namespace", ns_id))}}),
        }
        mixed = {label: orjson.dumps({"query": query, "variables": {}})
                 for label, query in MIXED_TREES.items()}
        pods = CLUSTERS * NAMESPACES * DEPLOYMENTS * PODS
        print(f"fleet: {CLUSTERS} clusters, {pods} pods; medians of {runs} sequential requests, "
              f"then {seconds:g} s of wrk at 8 connections")
        # A pod's ``node`` costs one more item per pod: 30,555 for the tree, over the default
        # limit (25,000). The limit is raised for this server; analysing costs the same.
        async with fleetgraph_serve(url, env={"FLEETGRAPH_QUERY_COST_LIMIT": "40000"}
                                    ) as graph_base, _floor(url, org) as floor_base, \
                httpx.AsyncClient(base_url=graph_base, timeout=60) as graph, \
                httpx.AsyncClient(base_url=floor_base, timeout=60) as floor:
            for label, body in cases.items():
                ours, lean = await _post(graph, token, body), await _post(floor, token, body)
                assert ours == lean, f"{label}: the floor does not serve the same bytes"
                print(f"{label}: {len(ours):,} bytes, identical on both servers")
            for label, body in cases.items():
                ours_ms = await _median_ms(graph, token, body, runs)
                floor_ms = await _median_ms(floor, token, body, runs)
                print(f"{label:>14} median: graph {ours_ms:7.1f} ms   floor {floor_ms:7.1f} ms"
                      f"   ratio {ours_ms / floor_ms:4.2f}x (goal <= 1.5x for the full tree)")
                if label == "full tree":
                    for extra, mixed_body in mixed.items():
                        mixed_ms = await _median_ms(graph, token, mixed_body, runs)
                        print(f"{'mixed tree':>14} median: graph {mixed_ms:7.1f} ms   floor "
                              f"{floor_ms:7.1f} ms   ratio {mixed_ms / floor_ms:4.2f}x "
                              f"({extra}; against the floor's full tree)")
            if shutil.which("wrk") is None:
                print("wrk is not installed (apt-get install wrk): no concurrent figures")
                return
            body = cases["one namespace"]
            ours_rps = await _wrk(graph_base, token, body, seconds)
            floor_rps = await _wrk(floor_base, token, body, seconds)
            print(f" one namespace, 8 connections: graph {ours_rps:7.1f} req/s   floor "
                  f"{floor_rps:7.1f} req/s   ratio {ours_rps / floor_rps:4.2f}x (goal >= 0.5x)")
            body = cases["full tree"]
            ours_rps = await _wrk(graph_base, token, body, seconds)
            floor_rps = await _wrk(floor_base, token, body, seconds)
            print(f"     full tree, 8 connections: graph {ours_rps:7.1f} req/s   floor "
                  f"{floor_rps:7.1f} req/s   ratio {ours_rps / floor_rps:4.2f}x")
    finally:
        await pool.close()


def parse_arguments(doc: str) -> argparse.Namespace:
    """``--runs`` (sequential requests per median) and ``--seconds`` (of wrk per figure)."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--seconds", type=float, default=10)
    return parser.parse_args()


async def _main(args: argparse.Namespace) -> None:
    async with bench_database("fg_bench") as url:
        await _bench(url, runs=args.runs, seconds=args.seconds)


if __name__ == "__main__":
    asyncio.run(_main(parse_arguments(__doc__)))
