"""Monthly budgets per team, cost center or namespace: spent, forecast, and crossing alerts.

Spent is the sum of the scope's final hourly allocation rows since the start of the UTC month
(idle has no team and is never in a budget's scope; the running hour's provisional figure is
left out, so an alert never fires on a number that will still change). The forecast extends
it to the month's end at the trailing 7-day burn rate: the scope's cost over the last 7 days
divided by the hours actually computed in that window (so a cluster added three days ago is
not diluted by four days it did not exist), times the hours from the end of the last final
hour to month end.

A crossing — forecast above amount — is recorded in ``k8s_budget_alerts`` once per budget,
month and amount (raising the amount re-arms it) and announced with ``pg_notify`` on channel
``fleetgraph_budget_alerts`` in the same transaction, so every replica's ``budgetAlerts``
subscribers hear it exactly once. Payload (JSON text; money as decimal strings so no float
rounding creeps in)::

    {"alert_id": 17, "organization_id": "<uuid>", "budget_id": "<uuid>",
     "scope_kind": "team", "scope_value": "alpha", "cluster_id": null,
     "month_start": "2026-11-01T00:00:00+00:00", "amount_monthly": "500.00",
     "currency": "USD", "spent": "408.000000", "forecast": "1368.000000",
     "fired_at": "2026-11-11T00:05:00.123+00:00"}
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

import asyncpg

from cost.rollup import floor_day

BUDGET_ALERTS_CHANNEL = "fleetgraph_budget_alerts"
SCOPE_KINDS = ("team", "cost_center", "namespace")
TRAILING = timedelta(days=7)
_SIX = Decimal("0.000001")


@dataclass(frozen=True)
class Budget:
    id: uuid.UUID
    organization_id: uuid.UUID
    scope_kind: str
    scope_value: str
    cluster_id: uuid.UUID | None
    amount_monthly: Decimal
    currency: str


@dataclass(frozen=True)
class BudgetStatus:
    """A budget with this month's figures. ``burn_rate_hourly`` is the trailing 7-day rate."""

    budget: Budget
    month_start: datetime
    month_end: datetime
    spent: Decimal
    burn_rate_hourly: Decimal
    forecast: Decimal
    exceeded: bool


@dataclass(frozen=True)
class BudgetAlert:
    id: int
    status: BudgetStatus
    fired_at: datetime


def month_bounds(now: datetime) -> tuple[datetime, datetime]:
    start = floor_day(now).replace(day=1)
    end = (start + timedelta(days=32)).replace(day=1)
    return start, end


def _budget(row: asyncpg.Record) -> Budget:
    return Budget(
        row["id"], row["organization_id"], row["scope_kind"], row["scope_value"],
        row["cluster_id"], row["amount_monthly"], row["currency"],
    )


async def set_budget(
    conn: asyncpg.Connection,
    *,
    organization_id: uuid.UUID,
    scope_kind: str,
    scope_value: str,
    amount_monthly: Decimal,
    currency: str = "USD",
    cluster_id: uuid.UUID | None = None,
) -> Budget:
    """Create or update the budget for a scope (one per organization, scope and cluster)."""
    if scope_kind not in SCOPE_KINDS:
        raise ValueError(f"scopeKind: must be one of {', '.join(SCOPE_KINDS)}")
    if not scope_value.strip():
        raise ValueError("scopeValue: must not be empty")
    if amount_monthly < 0:
        raise ValueError("amountMonthly: must not be negative")
    if len(currency) != 3 or not currency.isalpha() or not currency.isupper():
        raise ValueError("currency: must be a three-letter ISO 4217 code such as USD")
    if cluster_id is not None and not await conn.fetchval(
        "SELECT true FROM k8s_clusters WHERE id = $1 AND organization_id = $2",
        cluster_id, organization_id,
    ):
        raise ValueError("clusterId: no such cluster")
    row = await conn.fetchrow(
        """INSERT INTO k8s_budgets
               (organization_id, scope_kind, scope_value, cluster_id, amount_monthly, currency)
           VALUES ($1, $2, $3, $4, $5, $6)
           ON CONFLICT (organization_id, scope_kind, scope_value, cluster_id) DO UPDATE SET
               amount_monthly = EXCLUDED.amount_monthly, currency = EXCLUDED.currency,
               updated_at = now()
           RETURNING *""",
        organization_id, scope_kind, scope_value.strip(), cluster_id, amount_monthly, currency,
    )
    assert row is not None
    return _budget(row)


async def delete_budget(
    conn: asyncpg.Connection, *, organization_id: uuid.UUID, budget_id: uuid.UUID
) -> bool:
    status = await conn.execute(
        "DELETE FROM k8s_budgets WHERE id = $1 AND organization_id = $2",
        budget_id, organization_id,
    )
    return bool(status.endswith(" 1"))


_STATUS_SQL = """
WITH b AS (
    SELECT * FROM k8s_budgets
     WHERE organization_id = $1 AND ($4::uuid[] IS NULL OR id = ANY($4::uuid[]))
),
scope_clusters AS (
    SELECT b.id AS budget_id, c.id AS cluster_id
      FROM b JOIN k8s_clusters c
        ON c.organization_id = $1 AND (b.cluster_id IS NULL OR c.id = b.cluster_id)
),
spend AS (
    SELECT sc.budget_id,
           sum(a.total_cost) FILTER (WHERE a.period_start >= $2) AS spent,
           sum(a.total_cost) FILTER (WHERE a.period_start >= $5) AS trailing
      FROM scope_clusters sc
      JOIN b ON b.id = sc.budget_id
      JOIN k8s_cost_allocations a
        ON a.cluster_id = sc.cluster_id AND a.granularity = 'hour' AND NOT a.is_idle
       AND NOT a.provisional
       AND a.period_start >= $6 AND a.period_start < $3
       AND CASE b.scope_kind WHEN 'team' THEN a.team
                             WHEN 'cost_center' THEN a.cost_center
                             ELSE a.namespace END = b.scope_value
     GROUP BY sc.budget_id
),
ledger AS (
    SELECT sc.budget_id,
           count(DISTINCT h.period_start)
               FILTER (WHERE h.period_start >= $5) AS trailing_hours,
           max(h.period_start) AS last_hour
      FROM scope_clusters sc
      JOIN k8s_cost_hours h
        ON h.cluster_id = sc.cluster_id AND NOT h.provisional
       AND h.period_start >= $6 AND h.period_start < $3
     GROUP BY sc.budget_id
)
SELECT b.*, COALESCE(s.spent, 0) AS spent, COALESCE(s.trailing, 0) AS trailing,
       COALESCE(l.trailing_hours, 0) AS trailing_hours, l.last_hour
  FROM b
  LEFT JOIN spend s ON s.budget_id = b.id
  LEFT JOIN ledger l ON l.budget_id = b.id
 ORDER BY b.scope_kind, b.scope_value, b.cluster_id NULLS FIRST
"""


async def budget_statuses(
    conn: asyncpg.Connection,
    *,
    organization_id: uuid.UUID,
    now: datetime,
    budget_ids: Sequence[uuid.UUID] | None = None,
) -> list[BudgetStatus]:
    """Every budget of the organization (or the given ones) with spent and forecast."""
    month_start, month_end = month_bounds(now)
    trailing_start = now - TRAILING
    rows = await conn.fetch(
        _STATUS_SQL, organization_id, month_start, now,
        list(budget_ids) if budget_ids is not None else None,
        trailing_start, min(month_start, trailing_start),
    )
    out = []
    for row in rows:
        hours = row["trailing_hours"]
        rate = row["trailing"] / hours if hours else Decimal(0)
        covered = row["last_hour"] + timedelta(hours=1) if row["last_hour"] else now
        remaining = max(month_end - max(covered, month_start), timedelta(0))
        forecast = row["spent"] + rate * Decimal(remaining.total_seconds()) / 3600
        budget = _budget(row)
        out.append(BudgetStatus(
            budget, month_start, month_end, row["spent"].quantize(_SIX),
            rate.quantize(_SIX), forecast.quantize(_SIX), forecast > budget.amount_monthly,
        ))
    return out


_FIRE_SQL = """
WITH crossing AS (
    SELECT * FROM unnest($2::uuid[], $3::numeric[], $4::numeric[], $5::numeric[])
        AS t(budget_id, amount_monthly, spent, forecast)
),
fired AS (
    INSERT INTO k8s_budget_alerts
        (budget_id, organization_id, month_start, amount_monthly, spent, forecast)
    SELECT c.budget_id, $1, $6, c.amount_monthly, c.spent, c.forecast
      FROM crossing c JOIN k8s_budgets b ON b.id = c.budget_id AND b.organization_id = $1
    ON CONFLICT (budget_id, month_start, amount_monthly) DO NOTHING
    RETURNING *
)
SELECT f.id, f.budget_id, f.fired_at,
       pg_notify('fleetgraph_budget_alerts', json_build_object(
           'alert_id', f.id, 'organization_id', f.organization_id, 'budget_id', f.budget_id,
           'scope_kind', b.scope_kind, 'scope_value', b.scope_value, 'cluster_id', b.cluster_id,
           'month_start', f.month_start, 'amount_monthly', f.amount_monthly::text,
           'currency', b.currency, 'spent', f.spent::text, 'forecast', f.forecast::text,
           'fired_at', f.fired_at)::text)
  FROM fired f JOIN k8s_budgets b ON b.id = f.budget_id
"""


async def detect_budget_crossings(
    conn: asyncpg.Connection, *, organization_id: uuid.UUID, now: datetime
) -> list[BudgetAlert]:
    """Record and announce the budgets whose forecast newly exceeds their amount this month."""
    statuses = [
        s for s in await budget_statuses(conn, organization_id=organization_id, now=now)
        if s.exceeded
    ]
    if not statuses:
        return []
    by_id = {s.budget.id: s for s in statuses}
    async with conn.transaction():
        rows = await conn.fetch(
            _FIRE_SQL, organization_id, list(by_id),
            [s.budget.amount_monthly for s in statuses], [s.spent for s in statuses],
            [s.forecast for s in statuses], statuses[0].month_start,
        )
    return [BudgetAlert(r["id"], by_id[r["budget_id"]], r["fired_at"]) for r in rows]


async def detect_all_budget_crossings(
    conn: asyncpg.Connection,
    *,
    now: datetime,
    organization_ids: Sequence[uuid.UUID] | None = None,
) -> list[BudgetAlert]:
    """The scheduler's sweep: each organization that has budgets, scoped one at a time."""
    alerts: list[BudgetAlert] = []
    for org in await conn.fetch(
        """SELECT DISTINCT organization_id FROM k8s_budgets
            WHERE $1::uuid[] IS NULL OR organization_id = ANY($1::uuid[])""",
        organization_ids,
    ):
        alerts += await detect_budget_crossings(
            conn, organization_id=org["organization_id"], now=now
        )
    return alerts
