"""A request leaves nothing in reference cycles, whichever path answers it.

Each request goes through the real server (HTTP, authentication, Strawberry, the extensions,
the planned path or the resolvers and dataloaders, error formatting). After a warm-up (plans,
parsed documents and validation are cached once, by design), the same request again must give
the cyclic collector nothing of its own: ``gc.DEBUG_SAVEALL`` keeps what a collection would
have freed, and none of it may be of the kinds a request makes.
"""

from __future__ import annotations

import asyncio
import gc
from typing import Any

import pytest

from schema.relay import to_global_id
from tests.graph import rows

# Kinds only the server's side of a request makes. The client (httpx) shares this process
# and loop and leaves cycles of its own (its request, response and stream objects), as may a
# socket another test closed; plain containers are left out for that reason, but every
# server-side cycle found so far held at least one object of these kinds.
_REQUEST_MODULES = {"app", "schema", "resolvers", "graphql", "strawberry", "asyncpg",
                    "starlette", "uvicorn", "cross_web"}
_REQUEST_TYPES = {"frame", "traceback", "cell", "coroutine"}

PLANNED_TREE = """{ clusters(first: 5) { totalCount edges { cursor node { name provider
  namespaces(first: 5) { edges { node { name quota { hard { cpuCores } }
    deployments(first: 5) { pageInfo { endCursor hasNextPage } edges { node { name
      replicas { desired } health { status }
      pods(first: 5) { edges { node { name phase requests { cpuCores memoryBytes } } } }
} } } } } } } } } }"""
ONE_NAMESPACE = """query One($id: ID!) { node(id: $id) { ... on Namespace { name
  deployments(first: 10) { edges { node { name pods(first: 20) { edges { node {
    name phase restartCount nodeName requests { cpuCores memoryBytes } } } } } } } } } }"""
# Fields only the resolvers answer (the containers list, a pod's node and cluster, health),
# completed beside the planned ones by graphql-core, on the planned rows' model objects.
RESOLVED = """{ clusters(first: 5) { edges { node { name health { status }
  pods(first: 5) { edges { node { name containers { name } node { name }
    cluster { name } } } } } } } }"""
# Errors (exceptions carry frames and tracebacks): an invalid cursor, which the planned path
# meets first and leaves to the resolvers, and a missing cluster.
BAD_CURSOR = '{ clusters(first: 2, after: "not-a-cursor") { totalCount } }'
MISSING = '{ cluster(id: "Q2x1c3RlcjowMDAwMDAwMC0wMDAwLTAwMDAtMDAwMC0wMDAwMDAwMDAwMDA=") { name } }'
# A hole's nullable field refused (a located error and a null, on the plan), and a hole's
# non-null field failing, which gives the whole root field back to the resolvers: in one pod,
# and in one pod of each of two clusters, where the second error reaches a null the first one
# already caused, and graphql-core drops it unreported (its traceback still holding the frames
# that raised it, until the executor drops it too).
REFUSED_HOLE = """{ clusters(first: 5) { edges { node { name namespaces(first: 5) { edges { node {
  name helmReleases(first: 5) { edges { node { name values(redact: false) } } } } } } } } } }"""
FAILING_HOLE = """{ clusters(first: 1) { edges { node { name pods(first: 1) { edges { node { name
  metrics(resource: CPU, from: "2026-03-02T00:00:00Z", to: "2026-03-01T00:00:00Z") {
    stepSeconds } } } } } } } }"""
TWO_FAILING_HOLES = FAILING_HOLE.replace("clusters(first: 1)", "clusters(first: 2)")
CODES = {"bad cursor": ["BAD_USER_INPUT"], "missing cluster": ["NOT_FOUND"],
         "refused hole": ["FORBIDDEN"] * 2, "failing hole": ["BAD_USER_INPUT"],
         "two failing holes": ["BAD_USER_INPUT"]}


async def _server_done() -> None:
    """The client has the body before the server's task for it has returned; let it end."""
    for _ in range(20):
        await asyncio.sleep(0.005)


def _cyclic_garbage() -> list[str]:
    """What a full collection would free now, by qualified type name, of a request's kinds."""
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        gc.collect()
        return sorted(f"{type(o).__module__}.{type(o).__qualname__}" for o in gc.garbage
                      if type(o).__module__.split(".")[0] in _REQUEST_MODULES
                      or type(o).__name__ in _REQUEST_TYPES)
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.collect()  # what was saved is still in its cycles: free it now


@pytest.mark.parametrize("case", ["planned tree", "one namespace", "resolved fields",
                                  "refused hole", "failing hole", "two failing holes",
                                  "bad cursor", "missing cluster"])
async def test_a_request_leaves_nothing_in_reference_cycles(
        api: Any, tenant: Any, case: str) -> None:
    async with api.pool.acquire() as conn:
        await rows.tree(conn, tenant.org_id, clusters=2, namespaces=2, deployments=2, pods=3)
        namespace_id = await conn.fetchval(
            "SELECT n.id FROM k8s_namespaces n JOIN k8s_clusters c ON c.id = n.cluster_id "
            "WHERE c.organization_id = $1 ORDER BY c.name, n.name LIMIT 1", tenant.org_id)
        cluster_id = await conn.fetchval(
            "SELECT cluster_id FROM k8s_namespaces WHERE id = $1", namespace_id)
        for name in ("rel-0", "rel-1"):
            await rows.insert(conn, "k8s_helm_releases", cluster_id=cluster_id,
                              namespace="ns-0", name=name, revision=1, status="deployed")
    query, variables = {
        "planned tree": (PLANNED_TREE, {}),
        "one namespace": (ONE_NAMESPACE, {"id": str(to_global_id("Namespace", namespace_id))}),
        "resolved fields": (RESOLVED, {}),
        "refused hole": (REFUSED_HOLE, {}),
        "failing hole": (FAILING_HOLE, {}),
        "two failing holes": (TWO_FAILING_HOLES, {}),
        "bad cursor": (BAD_CURSOR, {}),
        "missing cluster": (MISSING, {}),
    }[case]
    token = tenant.tokens["viewer"]
    first = await api.gql(query, variables, token=token)  # plans, parses, validates once
    await _server_done()
    _cyclic_garbage()
    again = await api.gql(query, variables, token=token)
    await _server_done()
    left = _cyclic_garbage()
    assert again == first, again
    if case in CODES:
        assert [e["extensions"]["code"] for e in again["errors"]] == CODES[case], again
    else:
        assert "errors" not in again and again["data"]
    assert left == [], sorted(set(left))
