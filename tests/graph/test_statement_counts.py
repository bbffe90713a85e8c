"""The number of SQL statements per request depends on the query's shape, never on the rows.

Two fleets of different sizes answer the same full cluster→namespace→deployment→pod query
with exactly the same number of statements (read from the ``X-SQL-Statements`` header the
schema sets from the request's counting pool)."""

from __future__ import annotations

from typing import Any

from schema.statement_count import STATEMENTS_HEADER
from tests.api import make_tenant
from tests.graph import rows

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
