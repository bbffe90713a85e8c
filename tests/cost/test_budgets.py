"""Budgets: spent this month, the forecast from the trailing 7-day burn rate, and an alert
that fires once (with pg_notify) when the forecast crosses the amount."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import asyncpg
import pytest

from sync.cost.budgets import (
    BUDGET_ALERTS_CHANNEL,
    budget_statuses,
    detect_budget_crossings,
    month_bounds,
    set_budget,
)
from sync.cost.rollup import floor_day
from tests.factories import make_cluster, make_org

D = Decimal


async def test_forecast_and_alert_fire_once(db_pool: asyncpg.Pool, database_url: str) -> None:
    month_start, month_end = month_bounds(datetime.now(UTC))
    now = month_start + timedelta(days=10)
    listener = await asyncpg.connect(database_url)
    heard: asyncio.Queue[str] = asyncio.Queue()
    await listener.add_listener(BUDGET_ALERTS_CHANNEL, lambda *a: heard.put_nowait(a[3]))
    try:
        async with db_pool.acquire() as conn:
            org = await make_org(conn)
            cluster = await make_cluster(conn, org, created_at=month_start)
            # Team gamma: 1.00/h for the first 3 days, 2.00/h for the last 7 days before now.
            # spent = 72 x 1 + 168 x 2 = 408; burn rate = 336 / 168 h = 2.00/h.
            await conn.execute(
                """INSERT INTO k8s_cost_allocations (cluster_id, granularity, period_start,
                       namespace, team, cost_center, cpu_cost, total_cost)
                   SELECT $1, 'hour', h, 'ns-g', 'gamma', 'cc-9', c, c
                     FROM generate_series($2::timestamptz, $3::timestamptz - interval '1 hour',
                                          interval '1 hour') h,
                          LATERAL (SELECT CASE WHEN h < $4 THEN 1 ELSE 2 END::numeric AS c) x""",
                cluster, month_start, now, now - timedelta(days=7),
            )
            await conn.execute(
                """INSERT INTO k8s_cost_hours (cluster_id, period_start, price_cpu_core_hour,
                       price_memory_gib_hour, price_storage_gib_hour, price_network_gib,
                       price_source)
                   SELECT $1, h, 1, 0, 0, 0, 'test'
                     FROM generate_series($2::timestamptz, $3::timestamptz - interval '1 hour',
                                          interval '1 hour') h""",
                cluster, month_start, now,
            )
            over = await set_budget(conn, organization_id=org, scope_kind="team",
                                    scope_value="gamma", amount_monthly=D("500"))
            await set_budget(conn, organization_id=org, scope_kind="namespace",
                             scope_value="ns-g", amount_monthly=D("100000"), cluster_id=cluster)
            await set_budget(conn, organization_id=org, scope_kind="cost_center",
                             scope_value="cc-other", amount_monthly=D("10"))

            remaining_hours = D((month_end - now).total_seconds()) / 3600
            expected = D("408") + 2 * remaining_hours  # e.g. 30-day month: 408 + 2 x 480 = 1368
            statuses = {s.budget.scope_value: s for s in
                        await budget_statuses(conn, organization_id=org, now=now)}
            gamma = statuses["gamma"]
            assert (gamma.spent, gamma.burn_rate_hourly, gamma.forecast, gamma.exceeded) == (
                D("408"), D("2"), expected, True
            )
            assert (statuses["ns-g"].spent, statuses["ns-g"].exceeded) == (D("408"), False)
            assert (statuses["cc-other"].spent, statuses["cc-other"].forecast) == (D(0), D(0))

            [alert] = await detect_budget_crossings(conn, organization_id=org, now=now)
            assert alert.status.budget.id == over.id
            payload = json.loads(await asyncio.wait_for(heard.get(), 5))
            assert payload["organization_id"] == str(org)
            assert payload["budget_id"] == str(over.id)
            assert (payload["scope_kind"], payload["scope_value"]) == ("team", "gamma")
            assert D(payload["forecast"]) == expected
            assert D(payload["amount_monthly"]) == D("500")
            # once: the same crossing does not fire again
            assert await detect_budget_crossings(conn, organization_id=org, now=now) == []
            # raising the amount re-arms it; still crossed, so it fires for the new amount
            await set_budget(conn, organization_id=org, scope_kind="team",
                             scope_value="gamma", amount_monthly=D("600"))
            assert len(await detect_budget_crossings(conn, organization_id=org, now=now)) == 1
            # another organization sees none of it
            stranger = await make_org(conn)
            assert await budget_statuses(conn, organization_id=stranger, now=now) == []
            with pytest.raises(ValueError, match="scopeKind"):
                await set_budget(conn, organization_id=org, scope_kind="planet",
                                 scope_value="x", amount_monthly=D(1))
            with pytest.raises(ValueError, match="clusterId"):
                await set_budget(conn, organization_id=stranger, scope_kind="team",
                                 scope_value="x", amount_monthly=D(1), cluster_id=cluster)
        assert floor_day(now) == now
    finally:
        await listener.close()
