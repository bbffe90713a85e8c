"""The cost engine as a frontend meets it: ``costs``, ``setClusterPricing``, ``Cluster.pricing``,
``setBudget`` and ``budgets`` over real HTTP, on the hand-worked scenario (figures in
tests/cost/scenario.py), scoped to the caller's organization.

The server reads a frozen clock (tests/clock.py) at each of the calendar's edge instants, so
the budget's spent, forecast and ``exceeded`` are fixed by the instant, not by today's date.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg

from app.tenancy import create_token
from cost.allocation import compute_hour
from schema.relay import to_global_id
from tests.api import Api
from tests.clock import (
    FIRST_OF_MONTH,
    LAST_OF_MONTH,
    MID_MONTH,
    NEW_YEARS_EVE,
    FrozenClock,
    at_each_instant,
    month_start,
    serving_clock,
)
from tests.cost.helpers import one_node_cluster
from tests.cost.scenario import BOOK, build_scenario

HOUR = timedelta(hours=1)
COSTS = """query($from: DateTime!, $to: DateTime!, $groupBy: [CostGroupBy!], $shareIdle: Boolean!) {
  costs(window: {from: $from, to: $to}, groupBy: $groupBy, shareIdle: $shareIdle) {
    namespace team isIdle provisional totalCost cpuCost memoryCost } }"""
BUDGETS = "{ budgets { scopeValue spent burnRateHourly forecast exceeded monthStart } }"

# Team alpha's 1000 budget seen at each instant. Only H (10:00 the day before) is computed, so
# the trailing burn rate is alpha's 2.55 over one hour; forecast = spent this month + 2.55/h
# from the later of H's end and the month's start, to the month's end. Money comes as Decimal
# strings with the engine's six places, so these are compared digit for digit.
#   instant: (spent, forecast, exceeded)
BUDGET_AT: dict[datetime, tuple[str, str, bool]] = {
    # H = 28 Feb is last month: 0 + 2.55 x 744 h of March
    FIRST_OF_MONTH: ("0.000000", "1897.200000", True),
    MID_MONTH: ("2.550000", "1076.100000", True),  # 2.55 + 2.55 x 421 h (14 Mar 11:00 to 1 Apr)
    # 2.55 + 2.55 x 37 h (28 Feb 11:00 to 1 Mar 2028)
    LAST_OF_MONTH: ("2.550000", "96.900000", False),
    NEW_YEARS_EVE: ("2.550000", "96.900000", False),  # 2.55 + 2.55 x 37 h (30 Dec 11:00 to 1 Jan)
}


@at_each_instant
async def test_costs_pricing_and_budgets_over_graphql(
    api: Api, db_pool: asyncpg.Pool, instant: datetime
) -> None:
    async with db_pool.acquire() as conn:
        s = await build_scenario(conn, now=instant)
        await compute_hour(conn, cluster_id=s.cluster, hour=s.hour, book=BOOK, now=instant)
        slug = await conn.fetchval("SELECT slug FROM organizations WHERE id = $1", s.org)
        admin = (await create_token(conn, org_slug=slug, role="admin")).token
        viewer = (await create_token(conn, org_slug=slug, role="viewer")).token
    window = {"from": s.hour.isoformat(), "to": (s.hour + HOUR).isoformat(),
              "shareIdle": False}

    with serving_clock(api.app, FrozenClock(instant)):
        by_namespace = await api.gql(COSTS, {**window, "groupBy": ["NAMESPACE"]}, token=viewer)
        totals = {r["namespace"]: r["totalCost"] for r in by_namespace["data"]["costs"]}
        # Exactly the engine's decimals, as strings: no float on the way.
        assert totals == {"shop": "3.150000", "search": "1.400000", "kube-system": "0.650000",
                          "__idle__": "3.000000"}
        shop = next(r for r in by_namespace["data"]["costs"] if r["namespace"] == "shop")
        assert (shop["cpuCost"], shop["memoryCost"], shop["provisional"]) == (
            "2.500000", "0.450000", False)  # H closed long before the instant: final

        by_team = await api.gql(COSTS, {**window, "groupBy": ["TEAM"]}, token=viewer)
        teams = {r["team"]: r["totalCost"] for r in by_team["data"]["costs"] if not r["isIdle"]}
        assert teams == {"alpha": "2.550000", "beta": "2.650000"}  # batch-1's label: beta

        shared = await api.gql(COSTS, {**window, "groupBy": ["NAMESPACE"], "shareIdle": True},
                               token=viewer)
        assert {r["namespace"]: r["totalCost"] for r in shared["data"]["costs"]} == {
            "shop": "4.850000", "search": "2.300000", "kube-system": "1.050000"}

        # The cluster's settled figures are Decimal strings too: H (8.20) is the last final
        # hour, and in the instant's month unless the instant is the 1st (H is last month).
        settled = await api.gql(
            "query($id: ID!) { cluster(id: $id) { cost { lastHour monthToDate } } }",
            {"id": to_global_id("Cluster", s.cluster)}, token=viewer)
        assert settled["data"]["cluster"]["cost"] == {
            "lastHour": "8.200000",
            "monthToDate": "0.000000" if instant == FIRST_OF_MONTH else "8.200000"}

        # Another tenant sees none of it.
        other = await api.gql(COSTS, {**window, "groupBy": ["NAMESPACE"]},
                              token=api.b.tokens["admin"])
        assert other["data"]["costs"] == []

        cluster = to_global_id("Cluster", s.cluster)
        set_price = """mutation($id: ID!) { setClusterPricing(clusterId: $id,
            input: {cpuCoreHour: "2.00"}) { cpuCoreHour memoryGibHour effectiveFrom } }"""
        assert (await api.gql(set_price, {"id": cluster}, token=viewer))["errors"][0][
            "extensions"]["code"] == "FORBIDDEN"
        priced = (await api.gql(set_price, {"id": cluster}, token=admin))["data"][
            "setClusterPricing"]
        assert (priced["cpuCoreHour"], priced["memoryGibHour"]) == ("2.000000", "0.100000")
        # The new price takes effect at the server's (frozen) now, and is the one in effect.
        assert datetime.fromisoformat(priced["effectiveFrom"]) == instant
        in_effect = await api.gql(
            "query($id: ID!) { cluster(id: $id) { pricing { cpuCoreHour effectiveFrom } } }",
            {"id": cluster}, token=viewer)
        pricing = in_effect["data"]["cluster"]["pricing"]
        assert pricing["cpuCoreHour"] == "2.000000"
        assert datetime.fromisoformat(pricing["effectiveFrom"]) == instant
        foreign = await api.gql(set_price, {"id": cluster}, token=api.b.tokens["admin"])
        assert foreign["errors"][0]["extensions"]["code"] == "NOT_FOUND"
        # The hour already computed keeps the price it was computed with.
        again = await api.gql(COSTS, {**window, "groupBy": ["NAMESPACE"]}, token=viewer)
        assert {r["namespace"]: r["totalCost"] for r in again["data"]["costs"]} == totals

        spent, forecast, exceeded = BUDGET_AT[instant]
        budget = await api.gql(
            'mutation { setBudget(scope: TEAM, scopeValue: "alpha", amountMonthly: 1000) '
            "{ scopeValue amountMonthly spent forecast exceeded } }", token=admin)
        assert budget["data"]["setBudget"] == {
            "scopeValue": "alpha", "amountMonthly": "1000.00", "spent": spent,
            "forecast": forecast, "exceeded": exceeded}
        [listed] = (await api.gql(BUDGETS, token=viewer))["data"]["budgets"]
        assert datetime.fromisoformat(listed.pop("monthStart")) == month_start(instant)
        assert listed == {"scopeValue": "alpha", "spent": spent, "burnRateHourly": "2.550000",
                          "forecast": forecast, "exceeded": exceeded}
        assert (await api.gql("{ budgets { scopeValue } }", token=api.b.tokens["viewer"])
                )["data"]["budgets"] == []

        bad = await api.gql(COSTS, {"from": s.hour.isoformat(), "to": s.hour.isoformat(),
                                    "groupBy": ["NAMESPACE"], "shareIdle": False}, token=viewer)
        assert bad["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
        assert bad["errors"][0]["message"].startswith("window.to")


async def test_without_a_clock_service_the_server_runs_on_real_time(
    api: Api, db_pool: asyncpg.Pool
) -> None:
    """Production sets no clock: a price set now takes effect at the process's real now (the
    server runs in this process, so this process's clock is the one it must read)."""
    async with db_pool.acquire() as conn:
        s = await build_scenario(conn, now=FIRST_OF_MONTH)
        slug = await conn.fetchval("SELECT slug FROM organizations WHERE id = $1", s.org)
        admin = (await create_token(conn, org_slug=slug, role="admin")).token
    before = datetime.now(UTC)
    priced = await api.gql(
        """mutation($id: ID!) { setClusterPricing(clusterId: $id, input: {cpuCoreHour: "2.00"})
           { effectiveFrom } }""", {"id": to_global_id("Cluster", s.cluster)}, token=admin)
    after = datetime.now(UTC)
    effective = datetime.fromisoformat(priced["data"]["setClusterPricing"]["effectiveFrom"])
    assert before <= effective <= after


async def test_presets_show_the_running_hour_marked_provisional(
    api: Api, db_pool: asyncpg.Pool
) -> None:
    """A newcomer's first look: TODAY includes the running hour, costed so far.

    A 1-core node at 1.00 /core-hour, no pods; the clock reads 12:20 on the 15th and the
    scheduler has costed 12:00 from what is there: 20 minutes of idle node, 0.333333."""
    now = MID_MONTH + timedelta(minutes=20)
    async with db_pool.acquire() as conn:
        org, cluster = await one_node_cluster(conn, created_at=MID_MONTH)
        await compute_hour(conn, cluster_id=cluster, hour=MID_MONTH, book=BOOK, now=now)
        slug = await conn.fetchval("SELECT slug FROM organizations WHERE id = $1", org)
        admin = (await create_token(conn, org_slug=slug, role="admin")).token
    with serving_clock(api.app, FrozenClock(now)):
        body = await api.gql("{ costs(window: {preset: TODAY}) { isIdle provisional totalCost "
                             "cpuCoreHours } }", token=admin)
        assert body["data"]["costs"] == [{"isIdle": True, "provisional": True,
                                          "totalCost": "0.333333", "cpuCoreHours": "0.333333"}]
        # Storage-class prices are set and shown like instance-type prices.
        priced = await api.gql(
            """mutation($id: ID!) { setClusterPricing(clusterId: $id, input: {
                   storageClasses: [{storageClass: "premium", gibHour: "0.00019"}]})
               { storageClasses { storageClass gibHour } } }""",
            {"id": to_global_id("Cluster", cluster)}, token=admin)
        assert priced["data"]["setClusterPricing"]["storageClasses"] == [
            {"storageClass": "premium", "gibHour": "0.00019000"}]
