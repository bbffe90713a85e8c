"""The planned path's own promises: no reference cycles left behind, one plan per operation,
cursors only where selected, and the resolvers still answering what it does not cover."""

from __future__ import annotations

import gc
from typing import Any

import orjson
from graphql import GraphQLError
from graphql.execution.executor import CollectedErrors
from graphql.pyutils import Path

import schema.build
from schema.build import PLANNER_ATTRIBUTE, retract_errors
from schema.relay import to_global_id
from tests.graph import rows
from tests.graph.inventory_paths import Paths

TREE = """query Tree { clusters(first: 5) { edges { node { name
  namespaces(first: 5) { totalCount edges { cursor node { name
    deployments(first: 5) { edges { node { name replicas { desired }
      pods(first: 5) { pageInfo { endCursor } edges { node { name phase requests { cpuCores } }
} } } } } } } } } } } }"""


_REQUEST_MODULES = {"app", "schema", "resolvers", "graphql", "strawberry", "asyncpg", "uuid",
                    "decimal", "datetime"}


async def _paths(api: Any, tenant: Any) -> Paths:
    async with api.pool.acquire() as conn:
        await rows.tree(conn, tenant.org_id, clusters=2, namespaces=2, deployments=2, pods=3)
    return Paths(api.pool, api.settings, api.app.state.vault)


async def test_a_planned_request_leaves_nothing_for_the_garbage_collector(
        api: Any, tenant: Any) -> None:
    paths = await _paths(api, tenant)
    token = tenant.tokens["viewer"]
    await paths.answer(paths.planned, TREE, {}, token)  # plan, parse and validate once
    gc.collect()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        body, _ = await paths.answer(paths.planned, TREE, {}, token)
        gc.collect()
        # The session's server shares this loop: a socket another test closed may be freed
        # here too. What a request would leave is of its own kinds: the executor, the
        # context, the parsed document, rows, ids.
        left = [type(o).__qualname__ for o in gc.garbage
                if type(o).__module__.split(".")[0] in _REQUEST_MODULES]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
    assert b"dep-1-2" in body
    assert left == []


async def test_an_operation_is_planned_once(api: Any, tenant: Any) -> None:
    paths = await _paths(api, tenant)
    planner = getattr(paths.planned._schema, PLANNER_ATTRIBUTE)
    await paths.answer(paths.planned, TREE, {}, tenant.tokens["viewer"])
    plan = next(plans["clusters"] for key, plans in planner._plans.items() if key[1] == "Tree")
    await paths.answer(paths.planned, TREE, {}, tenant.tokens["viewer"])
    again = next(plans["clusters"] for key, plans in planner._plans.items() if key[1] == "Tree")
    assert plan is not None and again is plan


async def test_cursors_are_minted_only_where_selected(api: Any, tenant: Any) -> None:
    paths = await _paths(api, tenant)
    planner = getattr(paths.planned._schema, PLANNER_ATTRIBUTE)
    await paths.answer(paths.planned, TREE, {}, tenant.tokens["viewer"])
    plan = next(plans["clusters"] for key, plans in planner._plans.items() if key[1] == "Tree")
    namespaces = plan.objects[0].connections[0]
    deployments = namespaces.objects[0].connections[0]
    pods = deployments.objects[0].connections[0]
    assert namespaces.needs_cursors and pods.needs_cursors
    assert not deployments.needs_cursors


async def test_fields_the_plan_leaves_out_are_answered_by_the_resolvers_alongside(
        api: Any, tenant: Any) -> None:
    paths = await _paths(api, tenant)
    query = ("{ fleetHealth { clustersTotal } pods(first: 2) { edges { node { name } } } "
             "namespaces(first: 1) { edges { node { name cost { totalCost30d } } } } }")
    planned, statements = await paths.answer(paths.planned, query, {},
                                             tenant.tokens["viewer"])
    reference, reference_statements = await paths.answer(paths.reference, query, {},
                                                         tenant.tokens["viewer"])
    assert planned == reference
    assert statements == reference_statements
    assert orjson.loads(planned)["data"]["fleetHealth"]["clustersTotal"] == 2


async def test_a_plan_reads_only_the_columns_it_builds_from(api: Any, tenant: Any) -> None:
    paths = await _paths(api, tenant)
    planner = getattr(paths.planned._schema, PLANNER_ATTRIBUTE)
    await paths.answer(paths.planned, TREE, {}, tenant.tokens["viewer"])
    plan = next(plans["clusters"] for key, plans in planner._plans.items() if key[1] == "Tree")
    namespaces = plan.objects[0].connections[0]
    deployments = namespaces.objects[0].connections[0]
    pods = deployments.objects[0].connections[0]
    assert namespaces.columns == {"id", "name"}
    assert deployments.columns == {"id", "name", "replicas_desired"}  # of replicas' five
    assert pods.columns == {"id", "name", "phase", "requests_cpu_cores"}  # not its memory


async def test_a_hole_failing_past_a_non_null_field_gives_the_root_field_back_once(
        api: Any, tenant: Any) -> None:
    """Refused ``values`` (nullable) are recorded while the holes are asked; then a pod's
    ``metrics`` fails a non-null field, whose null would reach planned ancestors. The root
    field is answered again by the resolvers, and the errors the holes had recorded are
    taken back first: none twice, none lost as already nulled."""
    paths = await _paths(api, tenant)
    async with api.pool.acquire() as conn:
        cluster_id = await conn.fetchval(
            "SELECT id FROM k8s_clusters WHERE organization_id = $1 ORDER BY name LIMIT 1",
            tenant.org_id)
        await rows.insert(conn, "k8s_helm_releases", cluster_id=cluster_id, namespace="ns-0",
                          name="rel", revision=1, status="deployed")
    refused = "helmReleases(first: 2) { edges { node { name values(redact: false) } } }"
    failing = ('metrics(resource: CPU, from: "2026-03-02T00:00:00Z", '
               'to: "2026-03-01T00:00:00Z") { stepSeconds }')
    for pods in (f"pods(first: 1) {{ edges {{ node {{ name {failing} }} }} }}", ""):
        query = f"{{ clusters(first: 1) {{ edges {{ node {{ name {refused} {pods} }} }} }} }}"
        planned, _ = await paths.answer(paths.planned, query, {}, tenant.tokens["viewer"])
        reference, _ = await paths.answer(paths.reference, query, {}, tenant.tokens["viewer"])
        answer, expected = orjson.loads(planned), orjson.loads(reference)
        assert answer["data"] == expected["data"]
        # The errors' order is the order their loaders happened to answer in (Helm releases
        # or pods first), on the resolvers' path too; what they are is not.
        codes = sorted((e["extensions"]["code"], e["path"][-1]) for e in answer["errors"])
        assert codes == sorted((e["extensions"]["code"], e["path"][-1])
                               for e in expected["errors"])
        if pods:  # ``clusters`` is non-null too: the null reaches ``data``
            assert answer["data"] is None
            assert codes == [("BAD_USER_INPUT", "metrics"), ("FORBIDDEN", "values")]
        else:
            assert planned == reference
            assert answer["data"]["clusters"]["edges"][0]["node"]["helmReleases"]
            assert codes == [("FORBIDDEN", "values")]


def test_retracting_a_root_fields_errors_leaves_the_others_and_unnulls_its_positions(
) -> None:
    """What the holes of a given-up plan recorded under its root field goes, errors and
    nulled positions (else the resolvers' own errors there would be skipped as nulled);
    another root field's errors stay, in order."""
    collected = CollectedErrors()
    planned, other = Path(None, "clusters", "Query"), Path(None, "viewer", "Query")
    values = Path(Path(Path(planned, "edges", "ClusterConnection"), 0, None), "values",
                  "HelmRelease")
    health = Path(Path(None, "fleetHealth", "Query"), "clustersTotal", "FleetHealth")
    for path in (other, values, health):
        collected.add(GraphQLError("refused", path=path.as_list()), path)
    retract_errors(collected, "clusters")
    assert [e.path for e in collected.errors] == [["viewer"], ["fleetHealth", "clustersTotal"]]
    assert not collected.has_nulled_position(values)
    collected.add(GraphQLError("refused again", path=values.as_list()), values)
    assert [e.message for e in collected.errors][-1] == "refused again"


async def test_holes_below_a_root_object_are_completed_on_the_plan(
        api: Any, tenant: Any, monkeypatch: Any) -> None:
    """``node(id)`` answered by the plan with holes two levels down (a deployment's way back
    to its cluster, a pod's containers and node): the plan answers, it is not given up, and
    the bytes are the resolvers'."""
    paths = await _paths(api, tenant)
    answered: list[object] = []
    run_plan = schema.build.run_plan

    async def counting(*args: Any) -> Any:
        answer = await run_plan(*args)
        answered.append(answer)
        return answer

    monkeypatch.setattr(schema.build, "run_plan", counting)
    namespace_id = await api.pool.fetchval(
        "SELECT n.id FROM k8s_namespaces n JOIN k8s_clusters c ON c.id = n.cluster_id "
        "WHERE c.organization_id = $1 ORDER BY c.name, n.name LIMIT 1", tenant.org_id)
    query = """query($id: ID!) { node(id: $id) { ... on Namespace { name
      deployments(first: 5) { edges { node { name cluster { name } pods(first: 5) {
        nodes { name containers { name } node { name } } } } } } } } }"""
    variables = {"id": str(to_global_id("Namespace", namespace_id))}
    planned, _ = await paths.answer(paths.planned, query, variables, tenant.tokens["viewer"])
    reference, _ = await paths.answer(paths.reference, query, variables,
                                      tenant.tokens["viewer"])
    assert planned == reference
    assert len(answered) == 1  # the plan's answer, not the resolvers' after it gave up
    assert planned.count(b'"containers":[]') == 2 * 3
