"""Cursor pages are exact at the edges, and a cursor only works where it was minted."""

from __future__ import annotations

from typing import Any

from tests.api import Tenant
from tests.graph import rows

PAGE = """query($id: ID!, $after: String) { cluster(id: $id) { namespaces(first: 2, after: $after) {
    totalCount pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
    edges { cursor node { name } } } } }"""


async def _cluster_with_namespaces(api: Any, tenant: Tenant, count: int) -> str:
    async with api.pool.acquire() as conn:
        cid = await rows.cluster(conn, tenant.org_id, "paged")
        for i in range(count):
            await rows.namespace(conn, cid, f"ns-{i}")
    answer = await api.gql("{ clusters { edges { node { id } } } }",
                           token=tenant.tokens["viewer"])
    cluster_id: str = answer["data"]["clusters"]["edges"][0]["node"]["id"]
    return cluster_id


async def _page(api: Any, tenant: Tenant, cluster_id: str, after: str | None) -> dict[str, Any]:
    answer = await api.gql(PAGE, {"id": cluster_id, "after": after},
                           token=tenant.tokens["viewer"])
    assert "errors" not in answer, answer
    page: dict[str, Any] = answer["data"]["cluster"]["namespaces"]
    return page


def _names(page: dict[str, Any]) -> list[str]:
    return [edge["node"]["name"] for edge in page["edges"]]


async def test_pages_walk_the_list_exactly_once(api: Any, tenant: Tenant) -> None:
    cluster_id = await _cluster_with_namespaces(api, tenant, 5)
    first = await _page(api, tenant, cluster_id, None)
    assert _names(first) == ["ns-0", "ns-1"]
    assert first["pageInfo"] == {
        "hasNextPage": True, "hasPreviousPage": False,
        "startCursor": first["edges"][0]["cursor"], "endCursor": first["edges"][1]["cursor"]}
    second = await _page(api, tenant, cluster_id, first["pageInfo"]["endCursor"])
    assert _names(second) == ["ns-2", "ns-3"]
    assert second["pageInfo"]["hasNextPage"] and second["pageInfo"]["hasPreviousPage"]
    last = await _page(api, tenant, cluster_id, second["pageInfo"]["endCursor"])
    assert _names(last) == ["ns-4"]
    assert not last["pageInfo"]["hasNextPage"]
    empty = await _page(api, tenant, cluster_id, last["pageInfo"]["endCursor"])
    assert empty["edges"] == [] and not empty["pageInfo"]["hasNextPage"]
    assert empty["pageInfo"]["startCursor"] is None
    assert {p["totalCount"] for p in (first, second, last, empty)} == {5}


async def test_fleet_wide_pages_follow_the_order(api: Any, tenant: Tenant) -> None:
    await _cluster_with_namespaces(api, tenant, 3)
    query = """query($after: String) { namespaces(first: 2, after: $after,
        orderBy: {field: NAME, direction: DESC}) { totalCount pageInfo { endCursor hasNextPage }
        edges { node { name } } } }"""
    token = tenant.tokens["viewer"]
    first = (await api.gql(query, token=token))["data"]["namespaces"]
    rest = (await api.gql(query, {"after": first["pageInfo"]["endCursor"]}, token=token))
    assert _names(first) == ["ns-2", "ns-1"]
    assert _names(rest["data"]["namespaces"]) == ["ns-0"]
    assert first["totalCount"] == rest["data"]["namespaces"]["totalCount"] == 3


async def test_tampered_and_foreign_cursors_are_refused(
    api: Any, tenant: Tenant, other: Tenant
) -> None:
    cluster_id = await _cluster_with_namespaces(api, tenant, 3)
    other_cluster = await _cluster_with_namespaces(api, other, 3)
    cursor = (await _page(api, tenant, cluster_id, None))["pageInfo"]["endCursor"]
    foreign = (await _page(api, other, other_cluster, None))["pageInfo"]["endCursor"]
    tampered = cursor[:-3] + ("AAA" if not cursor.endswith("AAA") else "BBB")
    for bad in (tampered, foreign, "not-a-cursor"):
        answer = await api.gql(PAGE, {"id": cluster_id, "after": bad},
                               token=tenant.tokens["viewer"])
        assert answer["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT", bad
        assert answer["errors"][0]["message"] == "after: invalid cursor"


async def test_first_is_bounded(api: Any, tenant: Tenant) -> None:
    cluster_id = await _cluster_with_namespaces(api, tenant, 1)
    limit = api.settings.max_page_size
    answer = await api.gql(
        "query($id: ID!, $n: Int!) { cluster(id: $id) { namespaces(first: $n) { totalCount } } }",
        {"id": cluster_id, "n": limit + 1}, token=tenant.tokens["viewer"])
    assert answer["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert answer["errors"][0]["message"] == f"first: must be between 0 and {limit}"


async def test_node_ids_are_tenant_scoped(api: Any, tenant: Tenant, other: Tenant) -> None:
    await _cluster_with_namespaces(api, tenant, 1)
    answer = await api.gql("{ namespaces { edges { node { id name } } } }",
                           token=tenant.tokens["viewer"])
    namespace = answer["data"]["namespaces"]["edges"][0]["node"]
    query = "query($id: ID!) { node(id: $id) { id ... on Namespace { name } } }"
    mine = await api.gql(query, {"id": namespace["id"]}, token=tenant.tokens["viewer"])
    assert mine["data"]["node"] == namespace
    theirs = await api.gql(query, {"id": namespace["id"]}, token=other.tokens["admin"])
    assert theirs == {"data": {"node": None}}  # Relay: an ID the caller cannot see is null
