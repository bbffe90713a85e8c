"""The planned path's own promises: no reference cycles left behind, one plan per operation,
cursors only where selected, and the resolvers still answering what it does not cover."""

from __future__ import annotations

import gc
from typing import Any

import orjson

from schema.build import PLANNER_ATTRIBUTE
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
