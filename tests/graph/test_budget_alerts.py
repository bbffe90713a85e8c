"""``budgetAlerts`` over a real WebSocket: the cost engine's NOTIFY reaches the budget owner's
subscribers through the process's one LISTEN hub, and no other tenant's."""

from __future__ import annotations

import orjson

from tests.api import Api
from tests.graph.ws import next_payload, open_subscription

SUBSCRIPTION = "subscription { budgetAlerts { scope scopeValue amountMonthly forecast } }"
SET_BUDGET = """mutation { setBudget(scope: TEAM, scopeValue: "alpha", amountMonthly: 100) {
    id } }"""


async def test_budget_alert_reaches_its_tenant_only(api: Api) -> None:
    made = await api.gql(SET_BUDGET, token=api.a.tokens["admin"])
    assert "errors" not in made, made
    budget_id = await api.pool.fetchval(
        "SELECT id FROM k8s_budgets WHERE organization_id = $1 AND scope_value = 'alpha'",
        api.a.org_id)
    mine = await open_subscription(api.ws_url, api.a.tokens["viewer"], SUBSCRIPTION)
    theirs = await open_subscription(api.ws_url, api.b.tokens["viewer"], SUBSCRIPTION)
    # What cost/budgets.py sends when a forecast crosses its budget.
    payload = orjson.dumps({
        "alert_id": 1, "organization_id": str(api.a.org_id), "budget_id": str(budget_id),
        "scope_kind": "team", "scope_value": "alpha", "cluster_id": None,
        "month_start": "2026-11-01T00:00:00+00:00", "amount_monthly": "100.00",
        "currency": "USD", "spent": "80.000000", "forecast": "150.000000",
        "fired_at": "2026-11-20T00:05:00+00:00",
    }).decode()
    try:
        for _attempt in range(40):  # until the subscription is registered with the hub
            await api.pool.execute("SELECT pg_notify('fleetgraph_budget_alerts', $1)", payload)
            try:
                got = await next_payload(mine, wait=0.25)
                break
            except TimeoutError:
                continue
        else:
            raise AssertionError("budgetAlerts never delivered")
        assert got["data"]["budgetAlerts"] == {
            "scope": "TEAM", "scopeValue": "alpha", "amountMonthly": "100.00",
            "forecast": "150.000000"}  # Decimal strings, digit for digit as the payload sent
        # A forged payload naming org B but a budget of org A still goes to A only: the
        # organization is read from the budget row.
        forged = payload.replace(str(api.a.org_id), str(api.b.org_id))
        await api.pool.execute("SELECT pg_notify('fleetgraph_budget_alerts', $1)", forged)
        assert (await next_payload(mine, wait=2.0))["data"]["budgetAlerts"]["scopeValue"] == "alpha"
        # B's own alert is the first thing B ever receives: its subscription is live, and
        # neither of A's alerts (the forged one included) reached it.
        made_b = await api.gql(SET_BUDGET.replace("alpha", "beta"), token=api.b.tokens["admin"])
        assert "errors" not in made_b, made_b
        budget_b = await api.pool.fetchval(
            "SELECT id FROM k8s_budgets WHERE organization_id = $1 AND scope_value = 'beta'",
            api.b.org_id)
        own = payload.replace(str(api.a.org_id), str(api.b.org_id)).replace(
            str(budget_id), str(budget_b)).replace('"alpha"', '"beta"')
        await api.pool.execute("SELECT pg_notify('fleetgraph_budget_alerts', $1)", own)
        first_for_b = await next_payload(theirs, wait=2.0)
        assert first_for_b["data"]["budgetAlerts"]["scopeValue"] == "beta"
    finally:
        await mine.close()
        await theirs.close()
