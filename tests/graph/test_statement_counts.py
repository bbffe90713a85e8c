"""The number of SQL statements per request depends on the query's shape, never on the rows.

Two fleets of different sizes answer the same full cluster→namespace→deployment→pod query
with exactly the same number of statements (read from the ``X-SQL-Statements`` header the
schema sets from the request's counting pool), and so do they a query that mixes planned
fields with fields the plan leaves to the resolvers at every level."""

from __future__ import annotations

from typing import Any

from schema.build import PLANNER_ATTRIBUTE
from schema.statement_count import STATEMENTS_HEADER
from tests.api import Tenant, make_tenant
from tests.graph import rows
from tests.graph.inventory_paths import Paths

# Page sizes well above the fleets below, and within the default query cost budget.
TREE = """
{ clusters(first: 10) { totalCount edges { node { name
    health { status podsTotal nodesTotal }
    cost { estimatedHourlyCost }
    pricing { cpuCoreHour instanceTypes { instanceType } }
    namespaces(first: 10) { totalCount edges { cursor node { name
      cost { totalCost30d }
      deployments(first: 10) { totalCount edges { node { name replicas { desired }
        pods(first: 20) { totalCount edges { node { name phase restartCount } } }
      } } }
    } } }
} } } }
"""

# clusters page, clusters totalCount, health+cost (one loader), pricing (sheets, instance
# types), namespaces, namespace costs, deployments, pods.
EXPECTED_STATEMENTS = 9


async def _statements(api: Any, token: str, query: str) -> tuple[int, dict[str, Any]]:
    response = await api.http.post("/graphql", json={"query": query},
                                   headers={"Authorization": f"Bearer {token}"})
    body = response.json()
    assert "errors" not in body, body
    return int(response.headers[STATEMENTS_HEADER]), body["data"]


def _pods(data: dict[str, Any]) -> int:
    return sum(
        len(d["node"]["pods"]["edges"])
        for c in data["clusters"]["edges"]
        for n in c["node"]["namespaces"]["edges"]
        for d in n["node"]["deployments"]["edges"]
    )


async def test_full_tree_costs_the_same_statements_at_two_fleet_sizes(api: Any) -> None:
    small = await make_tenant(api.pool, "count-small")
    large = await make_tenant(api.pool, "count-large")
    async with api.pool.acquire() as conn:
        await rows.tree(conn, small.org_id, clusters=1, namespaces=1, deployments=1, pods=1)
        await rows.tree(conn, large.org_id, clusters=3, namespaces=3, deployments=3, pods=4)

    small_count, small_data = await _statements(api, small.tokens["viewer"], TREE)
    large_count, large_data = await _statements(api, large.tokens["viewer"], TREE)

    assert _pods(small_data) == 1
    assert _pods(large_data) == 3 * 3 * 3 * 4
    assert small_count == large_count == EXPECTED_STATEMENTS


async def test_an_empty_fleet_asks_no_more_than_a_full_one(api: Any, tenant: Any) -> None:
    count, data = await _statements(api, tenant.tokens["viewer"], TREE)
    assert data["clusters"]["totalCount"] == 0
    # Nothing to nest under: only the clusters page and its count run.
    assert count == 2


# Planned levels with unplanned fields on each: health, a namespace's cost, the way back up to
# the cluster, a pod's containers and node.
MIXED = """query Mixed { clusters(first: 5) { edges { node { name health { status podsTotal }
  namespaces(first: 3) { edges { node { name cost { totalCost30d } cluster { name }
    deployments(first: 3) { edges { node { name cluster { id }
      pods(first: 4) { edges { node { name containers { name } node { name ready } } } }
} } } } } } } } } }"""

# clusters page, health, namespaces, namespace costs, clusters by id (one batch for the
# namespaces' and the deployments'), deployments, pods, nodes by name.
EXPECTED_MIXED_STATEMENTS = 8


async def _mixed_fleet(api: Any, slug: str, clusters: int, pods: int) -> Tenant:
    """A regular fleet whose pods all run on their cluster's one node."""
    tenant = await make_tenant(api.pool, slug)
    async with api.pool.acquire() as conn:
        await rows.tree(conn, tenant.org_id, clusters=clusters, namespaces=2, deployments=2,
                        pods=pods)
        for cluster_id in await conn.fetch(
                "SELECT id FROM k8s_clusters WHERE organization_id = $1", tenant.org_id):
            await rows.node(conn, cluster_id["id"], "node-0")
            await conn.execute("UPDATE k8s_pods SET node_name = 'node-0' WHERE cluster_id = $1",
                               cluster_id["id"])
    return tenant


async def test_a_mixed_tree_costs_the_same_statements_at_two_fleet_sizes(api: Any) -> None:
    """The plan answers the planned fields of every level, and the unplanned ones of all of
    a level's rows go to their dataloaders as one batch: 2 clusters or 5, the same
    statements, and the very bytes of the resolvers' answer."""
    paths = Paths(api.pool, api.settings, api.app.state.vault)
    counts = []
    for slug, clusters, pods in (("mixed-small", 2, 1), ("mixed-large", 5, 3)):
        fleet = await _mixed_fleet(api, slug, clusters, pods)
        planned, statements = await paths.answer(paths.planned, MIXED, {},
                                                 fleet.tokens["viewer"])
        reference, _ = await paths.answer(paths.reference, MIXED, {}, fleet.tokens["viewer"])
        assert planned == reference
        assert b'"errors"' not in planned
        assert planned.count(b'"node-0"') == clusters * 2 * 2 * pods
        counts.append(statements)
    assert counts == [EXPECTED_MIXED_STATEMENTS] * 2

    planner = getattr(paths.planned._schema, PLANNER_ATTRIBUTE)
    plan = next(p["clusters"] for key, p in planner._plans.items() if key[1] == "Mixed")
    levels, objects = [], plan.objects
    while objects:  # the plan answered every level, each with its holes
        levels.append([hole.key for hole in objects[0].holes])
        objects = [o for c in objects[0].connections for o in c.objects]
    assert levels == [["health"], ["cost", "cluster"], ["cluster"], ["containers", "node"]]
