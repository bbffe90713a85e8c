"""The lean floor: the benchmark's two answers served by Starlette + asyncpg + orjson alone.

No GraphQL at all: the request's variables say which of the two queries it is (an ``id`` is
the one-namespace query), one statement per level reads the rows, dicts nest them, orjson
writes them. This is what a hand-written endpoint costs on this machine, in its own process
like the server it is compared with, and it serves the very bytes FleetGraph serves
(``bench_graph`` checks that before it times anything).

    PYTHONPATH=. .venv/bin/python -m bench.floor_server --port 8001 --database-url URL \
        --organization ORG_ID
"""

from __future__ import annotations

import argparse
import base64
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

# The rows of ``bench_graph``'s queries, in their orders (name, then id), one statement a level.
CLUSTERS = ("SELECT c.id, c.name FROM k8s_clusters c WHERE c.organization_id = $1 "
            "ORDER BY c.name, c.id LIMIT $2")
NAMESPACES = ("SELECT n.id, n.cluster_id, n.name FROM k8s_namespaces n "
              "WHERE n.cluster_id = ANY($1::uuid[]) AND n.deleted_at IS NULL "
              "ORDER BY n.cluster_id, n.name, n.id")
DEPLOYMENTS = ("SELECT d.id, d.cluster_id, d.namespace, d.name FROM k8s_deployments d "
               "JOIN k8s_clusters c ON c.id = d.cluster_id WHERE c.organization_id = $1 "
               "AND d.deleted_at IS NULL AND ($2::uuid IS NULL OR (d.cluster_id, d.namespace) = "
               "(SELECT cluster_id, name FROM k8s_namespaces WHERE id = $2)) "
               "ORDER BY d.namespace, d.name, d.id")
PODS = ("SELECT p.cluster_id, p.namespace, p.deployment_name, p.name, p.phase, p.restart_count, "
        "p.node_name, p.requests_cpu_cores, p.requests_memory_bytes FROM k8s_pods p "
        "JOIN k8s_clusters c ON c.id = p.cluster_id WHERE c.organization_id = $1 "
        "AND p.deleted_at IS NULL AND ($2::uuid IS NULL OR (p.cluster_id, p.namespace) = "
        "(SELECT cluster_id, name FROM k8s_namespaces WHERE id = $2)) "
        "ORDER BY p.namespace, p.name, p.id")
NAMESPACE = "SELECT id, cluster_id, name FROM k8s_namespaces WHERE id = $1"


def _edges(nodes: list[dict[str, Any]]) -> dict[str, Any]:
    return {"edges": [{"node": n} for n in nodes]}


def _pod(p: asyncpg.Record) -> dict[str, Any]:
    cpu, memory = p["requests_cpu_cores"], p["requests_memory_bytes"]
    return {"name": p["name"], "phase": p["phase"].upper(), "restartCount": p["restart_count"],
            "nodeName": p["node_name"],
            "requests": {"cpuCores": None if cpu is None else float(cpu),
                         "memoryBytes": None if memory is None else str(memory)}}  # Long


async def answer(pool: asyncpg.Pool, org_id: uuid.UUID, limits: tuple[int, int, int, int],
                 namespace_id: uuid.UUID | None) -> bytes:
    clusters_first, namespaces_first, deployments_first, pods_first = limits
    async with pool.acquire() as conn:
        if namespace_id is None:
            clusters = await conn.fetch(CLUSTERS, org_id, clusters_first)
            namespaces = await conn.fetch(NAMESPACES, [c["id"] for c in clusters])
        else:
            namespaces = await conn.fetch(NAMESPACE, namespace_id)
            clusters = []
        deployments = await conn.fetch(DEPLOYMENTS, org_id, namespace_id)
        pods = await conn.fetch(PODS, org_id, namespace_id)
    by_deployment: dict[tuple[Any, ...], list[dict[str, Any]]] = defaultdict(list)
    for p in pods:
        by_deployment[(p["cluster_id"], p["namespace"], p["deployment_name"])].append(_pod(p))
    by_namespace: dict[tuple[Any, ...], list[dict[str, Any]]] = defaultdict(list)
    for d in deployments:
        key = (d["cluster_id"], d["namespace"])
        if len(by_namespace[key]) < deployments_first:
            pods_of = by_deployment[(d["cluster_id"], d["namespace"], d["name"])][:pods_first]
            by_namespace[key].append({"name": d["name"], "pods": _edges(pods_of)})
    by_cluster: dict[Any, list[dict[str, Any]]] = defaultdict(list)
    for n in namespaces:
        if len(by_cluster[n["cluster_id"]]) < namespaces_first:
            by_cluster[n["cluster_id"]].append(
                {"name": n["name"],
                 "deployments": _edges(by_namespace[(n["cluster_id"], n["name"])])})
    if namespace_id is not None:
        return orjson.dumps({"data": {"node": by_cluster[namespaces[0]["cluster_id"]][0]}})
    return orjson.dumps({"data": {"clusters": _edges(
        [{"name": c["name"], "namespaces": _edges(by_cluster[c["id"]])} for c in clusters])}})


def create_app(database_url: str, org_id: uuid.UUID, limits: tuple[int, int, int, int]
               ) -> Starlette:
    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        app.state.pool = await asyncpg.create_pool(database_url, min_size=4, max_size=8)
        yield
        await app.state.pool.close()

    async def graphql(request: Request) -> Response:
        body = orjson.loads(await request.body())
        global_id = (body.get("variables") or {}).get("id")
        namespace_id = None
        if global_id:
            namespace_id = uuid.UUID(base64.b64decode(global_id).decode().partition(":")[2])
        content = await answer(request.app.state.pool, org_id, limits, namespace_id)
        return Response(content, media_type="application/json")

    return Starlette(routes=[Route("/graphql", graphql, methods=["POST"])], lifespan=lifespan)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--organization", type=uuid.UUID, required=True)
    parser.add_argument("--limits", default="5,10,10,20",
                        help="first of clusters, namespaces, deployments, pods")
    args = parser.parse_args()
    limits = tuple(int(v) for v in args.limits.split(","))
    assert len(limits) == 4
    app = create_app(args.database_url, args.organization,
                     (limits[0], limits[1], limits[2], limits[3]))
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False)
