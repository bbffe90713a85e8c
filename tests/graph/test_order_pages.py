"""Every order the schema offers pages correctly on every connection: pages 1, 2 and 3 put
together are exactly the whole list in that order.

The cases come from the schema itself (each connection field with an ``orderBy`` argument,
each value of its order enum, each direction), so an order or a connection added later is
covered without touching this file. The rows have ties, NULLs and microseconds in the sort
columns, which is where a cursor that loses a value's type or precision goes wrong.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from graphql import GraphQLEnumType, GraphQLInputObjectType, GraphQLObjectType, get_named_type

from schema import build_schema
from schema.relay import to_global_id
from tests.api import Tenant, make_tenant
from tests.graph import rows

CHILDREN = 5  # per connection: pages of 2 are full, full, and one short
PAGE = 2
BASE = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)
# Sort values with a tie, a NULL, sub-second and microsecond differences.
CREATED = [BASE + timedelta(seconds=1, microseconds=1), BASE + timedelta(seconds=1, microseconds=1),
           BASE + timedelta(seconds=2.5), BASE + timedelta(microseconds=123), None]
PARENT_CREATED = BASE - timedelta(days=1)


@dataclass(frozen=True)
class OrderCase:
    owner: str  # "Query" or the Node type whose field it is
    field: str
    order_type: str
    order: str
    direction: str

    @property
    def id(self) -> str:
        return f"{self.owner}.{self.field}-{self.order}-{self.direction}"


def _order_cases() -> list[OrderCase]:
    graphql_schema = build_schema()._schema
    node = graphql_schema.get_type("Node")
    cases = []
    for type_ in graphql_schema.type_map.values():
        if not isinstance(type_, GraphQLObjectType) or type_.name.startswith("__"):
            continue
        if type_ is not graphql_schema.query_type and node not in type_.interfaces:
            continue
        for name, field in type_.fields.items():
            if "orderBy" not in field.args:
                continue
            order_input = get_named_type(field.args["orderBy"].type)
            assert isinstance(order_input, GraphQLInputObjectType)
            enums = {f: get_named_type(order_input.fields[f].type) for f in ("field", "direction")}
            assert all(isinstance(e, GraphQLEnumType) for e in enums.values())
            cases += [OrderCase(type_.name, name, order_input.name, order, direction)
                      for order in enums["field"].values
                      for direction in enums["direction"].values]
    return cases


CASES = _order_cases()


def test_the_generated_cases_reach_every_ordered_connection() -> None:
    """A guard on the generator: a schema change that hid connections from it would otherwise
    make the walk below pass by testing less."""
    owners = {(c.owner, c.field) for c in CASES}
    assert {("Query", "clusters"), ("Query", "pods"), ("Cluster", "helmReleases"),
            ("ClusterNode", "pods"), ("Deployment", "pods"), ("Namespace", "deployments")} <= owners
    assert {c.order for c in CASES} >= {"NAME", "CREATED_AT", "LAST_SYNCED_AT", "RESTARTS",
                                        "LAST_DEPLOYED_AT", "STATUS", "HEALTH"}


@dataclass
class Fleet:
    tenant: Tenant
    parents: dict[str, str]  # Node type → global ID of the parent whose children are walked


@pytest.fixture(scope="module")
async def fleet(api: Any) -> Fleet:
    """One organization: five clusters, and under the first one five of every kind of child,
    all in namespace ns-0, deployment dep-0 and node node-0, so every connection has five."""
    tenant = await make_tenant(api.pool, f"ord-{uuid.uuid4().hex[:10]}")
    statuses = ["active", "pending", "active", "disabled", "unreachable"]
    health = ["healthy", "unknown", "healthy", "critical", "degraded"]
    synced = [BASE, None, BASE, None, BASE + timedelta(microseconds=7)]
    # Names are inserted out of order, so id order and name order differ.
    names = ["c", "a", "e", "b", "d"]
    async with api.pool.acquire() as conn:
        clusters = [
            await rows.cluster(conn, tenant.org_id, f"cluster-{names[i]}", status=statuses[i],
                               health_status=health[i], last_synced_at=synced[i],
                               created_at=CREATED[i] or BASE)
            for i in range(CHILDREN)]
        main = clusters[0]
        namespaces = [
            await rows.namespace(conn, main, f"ns-{i}",
                                 created_at=PARENT_CREATED if i == 0 else CREATED[i])
            for i in range(CHILDREN)]
        deployments = [
            await rows.deployment(conn, main, "ns-0", f"dep-{i}",
                                  created_at=PARENT_CREATED if i == 0 else CREATED[i])
            for i in range(CHILDREN)]
        nodes = [
            await rows.node(conn, main, f"node-{i}",
                            created_at=PARENT_CREATED if i == 0 else CREATED[i])
            for i in range(CHILDREN)]
        for i, restarts in enumerate([3, 0, 3, 7, 0]):
            await rows.pod(conn, main, "ns-0", f"pod-{names[i]}", deployment_name="dep-0",
                           node_name="node-0", restart_count=restarts,
                           created_at=CREATED[i] or BASE)  # partitioned: never NULL
        for i in range(CHILDREN):
            await rows.insert(conn, "k8s_helm_releases", cluster_id=main, namespace="ns-0",
                              name=f"rel-{names[i]}", revision=1, first_deployed_at=None,
                              last_deployed_at=CREATED[(i + 2) % CHILDREN])
    return Fleet(tenant, {
        "Cluster": to_global_id("Cluster", main),
        "Namespace": to_global_id("Namespace", namespaces[0]),
        "Deployment": to_global_id("Deployment", deployments[0]),
        "ClusterNode": to_global_id("ClusterNode", nodes[0]),
    })


def _query(case: OrderCase) -> str:
    connection = (f"conn: {case.field}(first: $first, after: $after, orderBy: $order) "
                  "{ pageInfo { hasNextPage endCursor } edges { node { id } } }")
    arguments = f"$first: Int!, $after: String, $order: {case.order_type}"
    if case.owner == "Query":
        return f"query({arguments}) {{ {connection} }}"
    return (f"query($id: ID!, {arguments}) {{ node(id: $id) {{ ... on {case.owner} "
            f"{{ {connection} }} }} }}")


async def _page(api: Any, fleet: Fleet, case: OrderCase, first: int,
                after: str | None) -> dict[str, Any]:
    variables: dict[str, Any] = {"first": first, "after": after,
                                 "order": {"field": case.order, "direction": case.direction}}
    if case.owner != "Query":
        if case.owner not in fleet.parents:
            pytest.fail(f"{case.owner}.{case.field} is a new ordered connection: give the "
                        f"fleet fixture a {case.owner} with {CHILDREN} children")
        variables["id"] = fleet.parents[case.owner]
    answer = await api.gql(_query(case), variables, token=fleet.tenant.tokens["viewer"])
    assert "errors" not in answer, (case.id, after, answer)
    data = answer["data"] if case.owner == "Query" else answer["data"]["node"]
    page: dict[str, Any] = data["conn"]
    return page


def _ids(page: dict[str, Any]) -> list[str]:
    return [edge["node"]["id"] for edge in page["edges"]]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
async def test_pages_one_two_and_three_are_the_whole_ordered_list(
    api: Any, fleet: Fleet, case: OrderCase
) -> None:
    whole = _ids(await _page(api, fleet, case, 50, None))
    assert len(set(whole)) == len(whole) == CHILDREN, whole
    walked: list[str] = []
    after = None
    for number, expected_next in ((1, True), (2, True), (3, False)):
        page = await _page(api, fleet, case, PAGE, after)
        assert page["pageInfo"]["hasNextPage"] is expected_next, (number, page)
        walked += _ids(page)
        after = page["pageInfo"]["endCursor"]
    assert walked == whole
