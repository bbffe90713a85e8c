"""The cost engine as a frontend meets it: ``costs``, ``setClusterPricing``, ``Cluster.pricing``,
``setBudget`` and ``budgets`` over real HTTP, on the hand-worked scenario (figures in
tests/cost/scenario.py), scoped to the caller's organization."""

from __future__ import annotations

from datetime import timedelta

import asyncpg

from app.tenancy import create_token
from schema.relay import to_global_id
from sync.cost.allocation import compute_hour
from tests.api import Api
from tests.cost.scenario import BOOK, build_scenario

HOUR = timedelta(hours=1)
COSTS = """query($from: DateTime!, $to: DateTime!, $groupBy: [CostGroupBy!], $shareIdle: Boolean!) {
  costs(window: {from: $from, to: $to}, groupBy: $groupBy, shareIdle: $shareIdle) {
    namespace team isIdle totalCost cpuCost memoryCost } }"""


async def test_costs_pricing_and_budgets_over_graphql(api: Api, db_pool: asyncpg.Pool) -> None:
    async with db_pool.acquire() as conn:
        s = await build_scenario(conn)
        await compute_hour(conn, cluster_id=s.cluster, hour=s.hour, book=BOOK,
                           now=s.hour + 3 * HOUR)
        slug = await conn.fetchval("SELECT slug FROM organizations WHERE id = $1", s.org)
        admin = (await create_token(conn, org_slug=slug, role="admin")).token
        viewer = (await create_token(conn, org_slug=slug, role="viewer")).token
    window = {"from": s.hour.isoformat(), "to": (s.hour + HOUR).isoformat(),
              "shareIdle": False}

    by_namespace = await api.gql(COSTS, {**window, "groupBy": ["NAMESPACE"]}, token=viewer)
    totals = {r["namespace"]: round(r["totalCost"], 2) for r in by_namespace["data"]["costs"]}
    assert totals == {"shop": 3.15, "search": 1.40, "kube-system": 0.65, "__idle__": 3.00}

    by_team = await api.gql(COSTS, {**window, "groupBy": ["TEAM"]}, token=viewer)
    teams = {r["team"]: round(r["totalCost"], 2) for r in by_team["data"]["costs"]
             if not r["isIdle"]}
    assert teams == {"alpha": 2.55, "beta": 2.65}  # a pod label moves batch-1 to beta

    shared = await api.gql(COSTS, {**window, "groupBy": ["NAMESPACE"], "shareIdle": True},
                           token=viewer)
    assert {r["namespace"]: round(r["totalCost"], 2) for r in shared["data"]["costs"]} == {
        "shop": 4.85, "search": 2.30, "kube-system": 1.05}

    # Another tenant sees none of it.
    other = await api.gql(COSTS, {**window, "groupBy": ["NAMESPACE"]}, token=api.b.tokens["admin"])
    assert other["data"]["costs"] == []

    cluster = to_global_id("Cluster", s.cluster)
    set_price = """mutation($id: ID!) { setClusterPricing(clusterId: $id,
        input: {cpuCoreHour: "2.00"}) { cpuCoreHour memoryGibHour } }"""
    assert (await api.gql(set_price, {"id": cluster}, token=viewer))["errors"][0][
        "extensions"]["code"] == "FORBIDDEN"
    priced = await api.gql(set_price, {"id": cluster}, token=admin)
    assert priced["data"]["setClusterPricing"] == {"cpuCoreHour": 2.0, "memoryGibHour": 0.1}
    foreign = await api.gql(set_price, {"id": cluster}, token=api.b.tokens["admin"])
    assert foreign["errors"][0]["extensions"]["code"] == "NOT_FOUND"
    # The hour already computed keeps the price it was computed with.
    again = await api.gql(COSTS, {**window, "groupBy": ["NAMESPACE"]}, token=viewer)
    assert {r["namespace"]: round(r["totalCost"], 2) for r in again["data"]["costs"]} == totals

    budget = await api.gql(
        'mutation { setBudget(scope: TEAM, scopeValue: "alpha", amountMonthly: 1000) '
        "{ scopeValue amountMonthly exceeded } }", token=admin)
    assert budget["data"]["setBudget"] == {
        "scopeValue": "alpha", "amountMonthly": 1000.0, "exceeded": False}
    listed = await api.gql("{ budgets { scopeValue } }", token=viewer)
    assert listed["data"]["budgets"] == [{"scopeValue": "alpha"}]
    assert (await api.gql("{ budgets { scopeValue } }", token=api.b.tokens["viewer"])
            )["data"]["budgets"] == []

    bad = await api.gql(COSTS, {"from": s.hour.isoformat(), "to": s.hour.isoformat(),
                                "groupBy": ["NAMESPACE"], "shareIdle": False}, token=viewer)
    assert bad["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert bad["errors"][0]["message"].startswith("window.to")
