"""Every filter, on hand-made rows with known answers (filtering happens in SQL)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from tests.api import Tenant, make_tenant
from tests.graph import rows
from tests.graph.rows import NOW


@pytest.fixture(scope="module")
async def fleet(api: Any) -> Tenant:
    tenant = await make_tenant(api.pool, "filters")
    async with api.pool.acquire() as conn:
        cid = await rows.cluster(conn, tenant.org_id, "prod")
        await rows.namespace(conn, cid, "payments", team="pay", cost_center="cc1",
                             labels={"env": "prod", "tier": "backend"})
        await rows.namespace(conn, cid, "web", team="web", cost_center="cc2",
                             labels={"env": "prod"})
        await rows.namespace(conn, cid, "staging", team="web", labels={"env": "staging"})
        await rows.namespace(conn, cid, "old", deleted_at=NOW)
        await rows.node(conn, cid, "n1", ready=True, labels={"pool": "a"})
        await rows.node(conn, cid, "n2", ready=False, labels={"pool": "b"})
        await rows.deployment(conn, cid, "payments", "api", health_status="critical")
        await rows.deployment(conn, cid, "payments", "worker", health_status="healthy")
        await rows.deployment(conn, cid, "web", "frontend", health_status="degraded",
                              labels={"app": "frontend"})
        await rows.pod(conn, cid, "payments", "api-1", node_name="n1", deployment_name="api")
        await rows.pod(conn, cid, "payments", "api-2", phase="Pending", node_name="n2",
                       deployment_name="api", restart_count=5,
                       last_oom_killed_at=NOW - timedelta(hours=1))
        await rows.pod(conn, cid, "payments", "worker-1", node_name="n1",
                       deployment_name="worker", restart_count=2,
                       last_oom_killed_at=NOW - timedelta(days=3))
        await rows.pod(conn, cid, "web", "frontend-1", phase="Failed", node_name="n2",
                       deployment_name="frontend", restart_count=10,
                       labels={"app": "frontend"})
        await rows.pod(conn, cid, "web", "gone-1", deleted_at=NOW)
        for name, status in (("pay-db", "deployed"), ("web-cache", "failed")):
            ns = "payments" if name.startswith("pay") else "web"
            await rows.insert(conn, "k8s_helm_releases", cluster_id=cid, namespace=ns,
                              name=name, revision=1, status=status)
    return tenant


async def _names(api: Any, fleet: Tenant, field: str, filter: dict[str, Any]) -> list[str]:
    """Names in the fleet-wide ``field`` list under ``filter``; totalCount must agree."""
    input_type = f"{field[0].upper()}{field[1:-1]}Filter"
    query = f"""query($f: {input_type}) {{
        {field}(first: 100, filter: $f) {{ totalCount edges {{ node {{ name }} }} }} }}"""
    answer = await api.gql(query, {"f": filter}, token=fleet.tokens["viewer"])
    assert "errors" not in answer, answer
    connection = answer["data"][field]
    names = sorted(edge["node"]["name"] for edge in connection["edges"])
    assert connection["totalCount"] == len(names)
    return names


NAMESPACE_CASES = [
    ({}, ["payments", "staging", "web"]),
    ({"labelSelector": "env=prod"}, ["payments", "web"]),
    ({"labelSelector": "env!=prod"}, ["staging"]),
    ({"labelSelector": "tier"}, ["payments"]),
    ({"labelSelector": "env in (staging),!tier"}, ["staging"]),
    ({"team": ["web"]}, ["staging", "web"]),
    ({"costCenter": ["cc1"]}, ["payments"]),
    ({"search": "AY"}, ["payments"]),
    ({"phase": ["Active"], "includeDeleted": True}, ["old", "payments", "staging", "web"]),
]


@pytest.mark.parametrize(("filter", "expected"), NAMESPACE_CASES)
async def test_namespace_filters(api: Any, fleet: Tenant, filter: dict[str, Any],
                                 expected: list[str]) -> None:
    assert await _names(api, fleet, "namespaces", filter) == expected


DEPLOYMENT_CASES = [
    ({"health": ["CRITICAL", "DEGRADED"]}, ["api", "frontend"]),
    ({"team": ["pay"]}, ["api", "worker"]),
    ({"costCenter": ["cc2"]}, ["frontend"]),
    ({"labelSelector": "app=frontend"}, ["frontend"]),
    ({"namespace": ["payments"], "search": "wor"}, ["worker"]),
]


@pytest.mark.parametrize(("filter", "expected"), DEPLOYMENT_CASES)
async def test_deployment_filters(api: Any, fleet: Tenant, filter: dict[str, Any],
                                  expected: list[str]) -> None:
    assert await _names(api, fleet, "deployments", filter) == expected


POD_CASES = [
    ({}, ["api-1", "api-2", "frontend-1", "worker-1"]),
    ({"phase": ["RUNNING"]}, ["api-1", "worker-1"]),
    ({"phase": ["PENDING", "FAILED"]}, ["api-2", "frontend-1"]),
    ({"node": "n2"}, ["api-2", "frontend-1"]),
    ({"deployment": "api"}, ["api-1", "api-2"]),
    ({"restartsGreaterThan": 2}, ["api-2", "frontend-1"]),
    ({"oomKilledSince": (NOW - timedelta(days=1)).isoformat()}, ["api-2"]),
    ({"includeDeleted": True}, ["api-1", "api-2", "frontend-1", "gone-1", "worker-1"]),
    ({"namespace": ["web"], "includeDeleted": True}, ["frontend-1", "gone-1"]),
    ({"labelSelector": "app=frontend"}, ["frontend-1"]),
    ({"team": ["pay"], "restartsGreaterThan": 0}, ["api-2", "worker-1"]),
    ({"costCenter": ["cc2"]}, ["frontend-1"]),
    ({"search": "-1"}, ["api-1", "frontend-1", "worker-1"]),
]


@pytest.mark.parametrize(("filter", "expected"), POD_CASES)
async def test_pod_filters(api: Any, fleet: Tenant, filter: dict[str, Any],
                           expected: list[str]) -> None:
    assert await _names(api, fleet, "pods", filter) == expected


async def test_nested_lists_filter_too(api: Any, fleet: Tenant) -> None:
    # Page sizes are explicit: with every default (50) four levels deep this would cost over
    # six million, far past the query cost limit.
    query = """query($ready: Boolean, $status: [String!]) { clusters(first: 5) { edges { node {
        nodes(first: 10, filter: {ready: $ready}) { edges { node { name
            pods(first: 20) { edges { node { name } } } } } }
        helmReleases(first: 10, filter: {status: $status}) { totalCount edges { node { name } } }
        namespaces(first: 10, filter: {search: "payments"}) { edges { node { name
            deployments(first: 10, filter: {health: [CRITICAL]}) { edges { node { name
                pods(first: 20, filter: {restartsGreaterThan: 1}) { edges { node { name } } } } } }
            pods(first: 20, filter: {node: "n1"}) { edges { node { name } } }
        } } } } } } }"""
    answer = await api.gql(query, {"ready": False, "status": ["failed"]},
                           token=fleet.tokens["viewer"])
    assert "errors" not in answer, answer
    cluster = answer["data"]["clusters"]["edges"][0]["node"]
    nodes = cluster["nodes"]["edges"]
    assert [n["node"]["name"] for n in nodes] == ["n2"]
    assert sorted(p["node"]["name"] for p in nodes[0]["node"]["pods"]["edges"]) == [
        "api-2", "frontend-1"]
    assert cluster["helmReleases"]["totalCount"] == 1
    assert cluster["helmReleases"]["edges"][0]["node"]["name"] == "web-cache"
    payments = cluster["namespaces"]["edges"][0]["node"]
    api_deployment = payments["deployments"]["edges"][0]["node"]
    assert api_deployment["name"] == "api"
    assert [p["node"]["name"] for p in api_deployment["pods"]["edges"]] == ["api-2"]
    assert [p["node"]["name"] for p in payments["pods"]["edges"]] == ["api-1", "worker-1"]


async def test_a_bad_label_selector_names_the_field(api: Any, fleet: Tenant) -> None:
    # `a in ()` used to be the example here; Kubernetes accepts it (the set holding "").
    answer = await api.gql('{ pods(filter: {labelSelector: "x=a||y=b"}) { totalCount } }',
                           token=fleet.tokens["viewer"])
    error = answer["errors"][0]
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert error["message"].startswith("filter.labelSelector: at character")
