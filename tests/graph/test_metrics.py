"""Time series: bucketing in SQL agrees with sums done by hand, limits are clear, and the
monthly partitions outside the range are pruned when the statement is planned."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from resolvers.metrics import series_args, series_sql
from tests.api import Tenant
from tests.graph import rows

_NOW = datetime.now(UTC)
T0 = _NOW.replace(day=1, hour=1, minute=0, second=0, microsecond=0)  # inside this month

QUERY = """query($from: DateTime!, $to: DateTime!, $step: Int!, $r: MetricResource!,
                 $agg: MetricAggregation) {
  deployments { edges { node { name
    metrics(resource: $r, from: $from, to: $to, step: $step, aggregation: $agg) {
      aggregation stepSeconds points { at value } } } } } }"""


async def _seed(api: Any, tenant: Tenant) -> Any:
    samples = [(0, 1, 100), (30, 3, 150), (60, 5, 400), (90, 7, 450), (150, 9, 1000)]
    async with api.pool.acquire() as conn:
        cid = await rows.cluster(conn, tenant.org_id, "metrics")
        await rows.deployment(conn, cid, "payments", "api")
        for seconds, cpu, rx in samples:
            await rows.insert(conn, "k8s_resource_metrics", cluster_id=cid, level="deployment",
                              namespace="payments", name="api",
                              sampled_at=T0 + timedelta(seconds=seconds), cpu_cores=cpu,
                              network_rx_bytes=rx)
        # Same entity at another level, and an earlier sample: neither may leak in.
        await rows.insert(conn, "k8s_resource_metrics", cluster_id=cid, level="pod",
                          namespace="payments", name="api", sampled_at=T0, cpu_cores=1000)
        await rows.insert(conn, "k8s_resource_metrics", cluster_id=cid, level="deployment",
                          namespace="payments", name="api",
                          sampled_at=T0 - timedelta(seconds=1), cpu_cores=1000)
    return cid


async def _series(api: Any, tenant: Tenant, resource: str, aggregation: str | None,
                  step: int = 60, span: int = 240) -> dict[str, Any]:
    variables = {"from": T0.isoformat(), "to": (T0 + timedelta(seconds=span)).isoformat(),
                 "step": step, "r": resource, "agg": aggregation}
    answer = await api.gql(QUERY, variables, token=tenant.tokens["viewer"])
    assert "errors" not in answer, answer
    series: dict[str, Any] = answer["data"]["deployments"]["edges"][0]["node"]["metrics"]
    return series


def _values(series: dict[str, Any]) -> list[float | None]:
    return [p["value"] for p in series["points"]]


async def test_buckets_agree_with_hand_computed_figures(api: Any, tenant: Tenant) -> None:
    await _seed(api, tenant)
    average = await _series(api, tenant, "CPU", None)
    assert average["aggregation"] == "AVG" and average["stepSeconds"] == 60
    assert _values(average) == [(1 + 3) / 2, (5 + 7) / 2, 9.0, None]
    assert [datetime.fromisoformat(p["at"]) for p in average["points"]] == [
        T0 + timedelta(seconds=s) for s in (0, 60, 120, 180)]
    assert _values(await _series(api, tenant, "CPU", "SUM")) == [1 + 3, 5 + 7, 9.0, None]
    assert _values(await _series(api, tenant, "CPU", "MAX", step=120)) == [7.0, 9.0]
    increase = await _series(api, tenant, "NETWORK_RX", None)
    assert increase["aggregation"] == "INCREASE"
    assert _values(increase) == [150 - 100, 450 - 400, 0.0, None]


LIMITS = [
    ({"span": -60}, "to: must be later than from"),
    ({"span": 94 * 86400, "step": 86400}, "to: the range may span at most 93 days"),
    ({"span": 1001 * 60}, "step: the range and step give 1001 points"),
    ({"step": 5}, "step: must be at least 10 seconds"),
]


@pytest.mark.parametrize(("overrides", "message"), LIMITS)
async def test_limits_are_refused_naming_the_argument(
    api: Any, tenant: Tenant, overrides: dict[str, int], message: str
) -> None:
    await _seed(api, tenant)
    span, step = overrides.get("span", 240), overrides.get("step", 60)
    variables = {"from": T0.isoformat(), "to": (T0 + timedelta(seconds=span)).isoformat(),
                 "step": step, "r": "CPU", "agg": None}
    answer = await api.gql(QUERY, variables, token=tenant.tokens["viewer"])
    error = answer["errors"][0]
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert error["message"].startswith(message)


def _relations(plan: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(plan, dict):
        if "Relation Name" in plan:
            found.add(plan["Relation Name"])
        for value in plan.values():
            found |= _relations(value)
    elif isinstance(plan, list):
        for item in plan:
            found |= _relations(item)
    return found


def _partition(month: datetime) -> str:
    return f"k8s_resource_metrics_y{month:%Y}m{month:%m}"


@pytest.mark.parametrize("plan_cache_mode", ["force_custom_plan", "force_generic_plan"])
async def test_the_plan_touches_only_the_partitions_in_range(
    api: Any, tenant: Tenant, plan_cache_mode: str
) -> None:
    cid = await _seed(api, tenant)
    previous_month = (T0 - timedelta(days=2)).replace(day=1)
    args = series_args("CPU", T0, T0 + timedelta(hours=6), 300, None)
    sql = series_sql("deployment", args)
    async with api.pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT fleetgraph_ensure_month_partition('k8s_resource_metrics', $1)",
                           previous_month)
        await conn.execute(f"SET LOCAL plan_cache_mode = {plan_cache_mode}")
        plan = await conn.fetchval(f"EXPLAIN (FORMAT JSON) {sql}", tenant.org_id, [cid],
                                   ["payments"], ["api"])
    metric_tables = {r for r in _relations(plan) if r.startswith("k8s_resource_metrics")}
    assert metric_tables == {_partition(T0)}
    assert "Subplans Removed" not in str(plan)  # pruned while planning, not at run time
