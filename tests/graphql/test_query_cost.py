"""Query cost is worked out before execution and a request over its role's budget is refused,
naming the cost and the limit; the cost itself is pinned exactly for the shapes that matter."""

from __future__ import annotations

from typing import Any

import pytest
from graphql import parse

from schema import build_schema
from schema.query_cost import DEFAULT_LIST_SIZE, operation_cost

SCHEMA = build_schema()._schema

CYCLE = """{ pods(first: 50) { edges { node { name cluster {
    pods(first: 50) { edges { node { name cluster {
    pods(first: 50) { edges { node { name } } } } } } } } } } } }"""

TREE = """query Tree($pods: Int!) { clusters(first: 5) { edges { node { name
    namespaces(first: 10) { edges { node { name
      deployments(first: 10) { edges { node { name
        pods(first: $pods) { edges { node { name phase } } } } } } } } } } } } }"""


def cost(query: str, variables: dict[str, Any] | None = None,
         operation: str | None = None) -> int:
    return operation_cost(SCHEMA, parse(query), variables, operation)


def test_nested_lists_multiply_and_scalars_cost_nothing() -> None:
    # 5 clusters + 50 namespaces + 500 deployments + 10,000 pods
    assert cost(TREE, {"pods": 20}) == 5 + 50 + 500 + 10_000


def test_the_pods_cluster_pods_cycle_costs_what_it_would_build() -> None:
    # pods 50, their clusters 50, their pods 2,500, clusters 2,500, pods 125,000
    assert cost(CYCLE) == 50 + 50 + 2_500 + 2_500 + 125_000


def test_defaults_fragments_and_operation_names_are_followed() -> None:
    query = """
    fragment P on Pod { containers { name } }
    query A { pods { edges { node { ...P ... on Pod { cluster { name } } } } } }
    query B { clusters(first: 2) { edges { node { name } } } }"""
    # pods default first 50, each with containers (a plain list) and a cluster
    assert cost(query, operation="A") == 50 + 50 * DEFAULT_LIST_SIZE + 50
    assert cost(query, operation="B") == 2


SERIES = """query($from: DateTime!, $step: Int!) { pods(first: 2) { edges { node {
    metrics(resource: CPU, from: $from, to: "2026-01-02T00:00:00Z", step: $step) {
      points { at } } } } } }"""


@pytest.mark.parametrize(("start", "step", "points"), [
    ("2026-01-01T00:00:00Z", 300, 288),     # a day in 5-minute buckets
    ("2026-01-01T23:00:00Z", 60, 60),
    ("2025-12-31T00:00:00Z", 60, 1),        # 2,880 points: the resolver refuses it unbuilt
    ("2026-01-03T00:00:00Z", 60, 1),        # an empty range: refused too
])
def test_a_metric_series_counts_the_points_its_range_and_step_give(
    start: str, step: int, points: int
) -> None:
    assert cost(SERIES, {"from": start, "step": step}) == 2 + 2 + 2 * points


async def test_over_budget_queries_are_refused_with_the_cost_and_the_limit(api: Any) -> None:
    body = await api.gql(CYCLE, token=api.a.tokens["admin"])
    assert body["data"] is None
    [error] = body["errors"]
    assert error["extensions"] == {"code": "BAD_USER_INPUT", "cost": 130_100,
                                   "limit": api.settings.query_cost_admin}
    assert error["message"].startswith("query cost 130,100 is over the limit of 25,000 for "
                                       "the admin role")


async def test_a_full_dashboard_tree_fits_the_default_budget(api: Any) -> None:
    body = await api.gql(TREE, {"pods": 20}, token=api.a.tokens["viewer"])
    assert "errors" not in body, body
    assert body["data"] == {"clusters": {"edges": []}}


@pytest.mark.parametrize("role", ["viewer", "operator", "admin"])
def test_budgets_are_set_per_role_from_the_environment(role: str) -> None:
    from app.settings import Settings

    settings = Settings.from_env({"FLEETGRAPH_QUERY_COST_LIMIT": "1000",
                                  f"FLEETGRAPH_QUERY_COST_LIMIT_{role.upper()}": "7"})
    assert settings.query_cost_limits == {
        r: (7 if r == role else 1000) for r in ("viewer", "operator", "admin")}
