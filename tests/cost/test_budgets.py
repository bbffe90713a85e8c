"""Budgets: spent this month, the forecast from the trailing 7-day burn rate, and an alert
that fires once (with pg_notify) when the forecast crosses the amount — at each of
tests/clock.py's instants, so the month the figures fall in is the test's choice, not today's."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import asyncpg
import pytest

from cost.allocation import floor_hour
from cost.budgets import (
    BUDGET_ALERTS_CHANNEL,
    budget_statuses,
    detect_budget_crossings,
    set_budget,
)
from tests.clock import FIRST_OF_MONTH, LAST_OF_MONTH, MID_MONTH, NEW_YEARS_EVE, at_each_instant
from tests.factories import make_cluster, make_org

D = Decimal
HOUR = timedelta(hours=1)


# Team gamma's hours before each instant: 240 finished hours, 1.00/h for the first 72 and
# 2.00/h for the last 168 (so the trailing 7-day burn rate is 2.00/h at every instant).
#   instant: (spent this month, forecast, month start)
BUDGET_AT: dict[datetime, tuple[Decimal, Decimal, datetime]] = {
    # All 240 hours are in February; March has 744 h to go: 0 + 2 x 744.
    FIRST_OF_MONTH: (D("0"), D("1488"), datetime(2027, 3, 1, tzinfo=UTC)),
    # All in March: 72 x 1 + 168 x 2 = 408; 396 h from 15 Mar 12:00 to 1 Apr: 408 + 792.
    MID_MONTH: (D("408"), D("1200"), datetime(2027, 3, 1, tzinfo=UTC)),
    # All in the month; one hour (23:00) left to forecast: 408 + 2.
    LAST_OF_MONTH: (D("408"), D("410"), datetime(2028, 2, 1, tzinfo=UTC)),
    NEW_YEARS_EVE: (D("408"), D("410"), datetime(2027, 12, 1, tzinfo=UTC)),
}


@at_each_instant
async def test_forecast_and_alert_fire_once(
    db_pool: asyncpg.Pool, database_url: str, instant: datetime
) -> None:
    now = instant
    spent, forecast, month = BUDGET_AT[instant]
    last_hour = floor_hour(now) - HOUR  # the last finished hour
    first_hour = last_hour - 239 * HOUR
    listener = await asyncpg.connect(database_url)
    heard: asyncio.Queue[str] = asyncio.Queue()
    await listener.add_listener(BUDGET_ALERTS_CHANNEL, lambda *a: heard.put_nowait(a[3]))
    try:
        async with db_pool.acquire() as conn:
            org = await make_org(conn)
            cluster = await make_cluster(conn, org, created_at=first_hour)
            await conn.execute(
                """INSERT INTO k8s_cost_allocations (cluster_id, granularity, period_start,
                       namespace, team, cost_center, cpu_cost, total_cost)
                   SELECT $1, 'hour', h, 'ns-g', 'gamma', 'cc-9', c, c
                     FROM generate_series($2::timestamptz, $3::timestamptz, interval '1 hour') h,
                          LATERAL (SELECT CASE WHEN h < $4 THEN 1 ELSE 2 END::numeric AS c) x""",
                cluster, first_hour, last_hour, last_hour - 167 * HOUR,
            )
            await conn.execute(
                """INSERT INTO k8s_cost_hours (cluster_id, period_start, price_cpu_core_hour,
                       price_memory_gib_hour, price_storage_gib_hour, price_network_gib,
                       price_source)
                   SELECT $1, h, 1, 0, 0, 0, 'test'
                     FROM generate_series($2::timestamptz, $3::timestamptz, interval '1 hour') h""",
                cluster, first_hour, last_hour,
            )
            over = await set_budget(conn, organization_id=org, scope_kind="team",
                                    scope_value="gamma", amount_monthly=D("400"))
            await set_budget(conn, organization_id=org, scope_kind="namespace",
                             scope_value="ns-g", amount_monthly=D("100000"), cluster_id=cluster)
            await set_budget(conn, organization_id=org, scope_kind="cost_center",
                             scope_value="cc-other", amount_monthly=D("10"))

            statuses = {s.budget.scope_value: s for s in
                        await budget_statuses(conn, organization_id=org, now=now)}
            gamma = statuses["gamma"]
            assert (gamma.month_start, gamma.spent, gamma.burn_rate_hourly, gamma.forecast,
                    gamma.exceeded) == (month, spent, D("2"), forecast, True)
            assert (statuses["ns-g"].spent, statuses["ns-g"].exceeded) == (spent, False)
            assert (statuses["cc-other"].spent, statuses["cc-other"].forecast) == (D(0), D(0))

            [alert] = await detect_budget_crossings(conn, organization_id=org, now=now)
            assert alert.status.budget.id == over.id
            payload = json.loads(await asyncio.wait_for(heard.get(), 5))
            assert payload["organization_id"] == str(org)
            assert payload["budget_id"] == str(over.id)
            assert (payload["scope_kind"], payload["scope_value"]) == ("team", "gamma")
            assert D(payload["forecast"]) == forecast
            assert D(payload["amount_monthly"]) == D("400")
            assert datetime.fromisoformat(payload["month_start"]) == month
            # once: the same crossing does not fire again
            assert await detect_budget_crossings(conn, organization_id=org, now=now) == []
            # raising the amount re-arms it; still crossed, so it fires for the new amount
            await set_budget(conn, organization_id=org, scope_kind="team",
                             scope_value="gamma", amount_monthly=D("405"))
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
    finally:
        await listener.close()
