"""Cost in the graph: ``costs``, pricing, budgets and the ``budgetAlerts`` subscription.

Kept in its own module so the root types only mix these classes in (``class Query(CostQuery)``,
``class Mutation(CostMutation)``, ``class Subscription(CostSubscription)``) and ``Cluster``
gains ``pricing = cluster_pricing_field()``. Money, prices and the quantities they are priced
on travel as ``Decimal`` strings (schema/scalars.py): the engine computes in exact decimals
rounded to 6 places, and a float would change the cents a client adds up.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncGenerator, Mapping
from datetime import datetime
from decimal import Decimal
from enum import Enum
from typing import Any

import strawberry
from strawberry.types import Info

from resolvers import costs as cost_reads
from resolvers.context import Context
from resolvers.costs import (
    CostRow,
    GroupBy,
    ShareMode,
    WindowPreset,
    budget_engine,
    pricing_engine,
    window_bounds,
)
from resolvers.errors import BadUserInput
from resolvers.metrics import as_utc
from schema.relay import expect_global_id, to_global_id

# The engine's own enums, exposed under GraphQL names (one definition, no twin to keep in
# step); ``strawberry.enum`` marks the classes themselves, so they are used directly below.
strawberry.enum(GroupBy, name="CostGroupBy",
                              description="Dimensions cost rows can be grouped by.")
strawberry.enum(ShareMode, name="CostShareMode",
                                description="How shared namespaces' cost is split across the "
                                            "others.")
strawberry.enum(WindowPreset, name="CostWindowPreset",
                                   description="Windows in whole UTC hours; those ending now "
                                               "include the running hour (provisional).")


@strawberry.enum
class BudgetScope(Enum):
    TEAM = "team"
    COST_CENTER = "cost_center"
    NAMESPACE = "namespace"


@strawberry.input(description="Either a preset or both `from` and `to` (hours starting in "
                              "[from, to)).")
class CostWindowInput:
    preset: WindowPreset | None = None
    from_: datetime | None = strawberry.field(default=None, name="from")
    to: datetime | None = None


@strawberry.type(description="Cost of one group over the window. Dimensions not grouped by "
                             "are null; the idle row has isIdle and namespace `__idle__`.")
class CostAllocation:
    cluster_id: strawberry.ID | None
    namespace: str | None
    team: str | None
    cost_center: str | None
    deployment: str | None
    is_idle: bool
    provisional: bool = strawberry.field(description="Includes an hour still open (the running "
                                                     "hour, costed from its samples so far); "
                                                     "the final figure replaces it once the "
                                                     "hour has closed.")
    cpu_cost: Decimal
    memory_cost: Decimal
    storage_cost: Decimal
    network_cost: Decimal
    idle_cost: Decimal = strawberry.field(description="Idle share received (or, on the idle "
                                                      "row, its whole cost).")
    shared_cost: Decimal = strawberry.field(description="Cost passed on by shared namespaces.")
    total_cost: Decimal
    cpu_core_hours: Decimal
    memory_gib_hours: Decimal
    storage_gib_hours: Decimal
    network_gib: Decimal

    @classmethod
    def of(cls, row: CostRow) -> CostAllocation:
        return cls(
            cluster_id=to_global_id("Cluster", row.cluster_id) if row.cluster_id else None,
            namespace=row.namespace, team=row.team, cost_center=row.cost_center,
            deployment=row.deployment, is_idle=row.is_idle, provisional=row.provisional,
            cpu_cost=row.cpu_cost, memory_cost=row.memory_cost,
            storage_cost=row.storage_cost, network_cost=row.network_cost,
            idle_cost=row.idle_cost, shared_cost=row.shared_cost, total_cost=row.total_cost,
            cpu_core_hours=row.cpu_core_hours, memory_gib_hours=row.memory_gib_hours,
            storage_gib_hours=row.storage_gib_hours, network_gib=row.network_gib,
        )


@strawberry.type
class InstanceTypePrice:
    instance_type: str
    hourly_cost: Decimal


@strawberry.type(description="A price per GiB-hour for volumes of a storage class (used before "
                             "the sheet's storage price for claims on such volumes).")
class StorageClassPrice:
    storage_class: str
    gib_hour: Decimal


@strawberry.type(description="The price sheet in effect now and where it comes from.")
class ClusterPricing:
    cpu_core_hour: Decimal
    memory_gib_hour: Decimal
    storage_gib_hour: Decimal
    network_gib: Decimal
    currency: str
    source: str = strawberry.field(description="`custom`, `cluster`, or the provider default "
                                               "sheet's name.")
    effective_from: datetime | None
    instance_types: list[InstanceTypePrice]
    storage_classes: list[StorageClassPrice]

    @classmethod
    def of(cls, p: pricing_engine.ClusterPricing) -> ClusterPricing:
        s = p.sheet
        return cls(
            cpu_core_hour=s.cpu_core_hour, memory_gib_hour=s.memory_gib_hour,
            storage_gib_hour=s.storage_gib_hour, network_gib=s.network_gib,
            currency=s.currency, source=s.source, effective_from=p.effective_from,
            instance_types=[InstanceTypePrice(instance_type=k, hourly_cost=v)
                            for k, v in sorted(p.instance_types.items())],
            storage_classes=[StorageClassPrice(storage_class=k, gib_hour=v)
                             for k, v in sorted(p.storage_classes.items())],
        )


@strawberry.type(description="A monthly budget with this month's spend and forecast (closed "
                             "hours only: the running hour is left out until it is final).")
class Budget:
    id: strawberry.ID
    scope: BudgetScope
    scope_value: str
    cluster_id: strawberry.ID | None
    amount_monthly: Decimal
    currency: str
    spent: Decimal
    forecast: Decimal = strawberry.field(description="Spent plus the trailing 7-day hourly "
                                                     "burn rate times the hours left in the "
                                                     "month.")
    burn_rate_hourly: Decimal
    exceeded: bool = strawberry.field(description="The forecast exceeds the amount.")
    month_start: datetime

    @classmethod
    def of(cls, s: budget_engine.BudgetStatus) -> Budget:
        b = s.budget
        return cls(
            id=to_global_id("Budget", b.id), scope=BudgetScope(b.scope_kind),
            scope_value=b.scope_value,
            cluster_id=to_global_id("Cluster", b.cluster_id) if b.cluster_id else None,
            amount_monthly=b.amount_monthly, currency=b.currency,
            spent=s.spent, forecast=s.forecast,
            burn_rate_hourly=s.burn_rate_hourly, exceeded=s.exceeded,
            month_start=s.month_start,
        )


@strawberry.type(description="A budget whose forecast crossed its amount (fires once per "
                             "budget, month and amount).")
class BudgetAlert:
    budget_id: strawberry.ID
    scope: BudgetScope
    scope_value: str
    cluster_id: strawberry.ID | None
    amount_monthly: Decimal
    currency: str
    spent: Decimal
    forecast: Decimal
    month_start: datetime
    fired_at: datetime

    @classmethod
    def of(cls, p: Mapping[str, Any]) -> BudgetAlert:
        """From the NOTIFY payload, whose money is decimal text (cost/budgets.py)."""
        return cls(
            budget_id=to_global_id("Budget", p["budget_id"]), scope=BudgetScope(p["scope_kind"]),
            scope_value=p["scope_value"],
            cluster_id=to_global_id("Cluster", p["cluster_id"]) if p["cluster_id"] else None,
            amount_monthly=Decimal(p["amount_monthly"]), currency=p["currency"],
            spent=Decimal(p["spent"]), forecast=Decimal(p["forecast"]),
            month_start=datetime.fromisoformat(p["month_start"]),
            fired_at=datetime.fromisoformat(p["fired_at"]),
        )


@strawberry.input(description="Unset fields keep the price in effect; applies from the next "
                              "full hour on, past hours keep theirs.")
class SetClusterPricingInput:
    cpu_core_hour: Decimal | None = None
    memory_gib_hour: Decimal | None = None
    storage_gib_hour: Decimal | None = None
    network_gib: Decimal | None = None
    currency: str | None = None
    instance_types: list[InstanceTypePriceInput] | None = None
    storage_classes: list[StorageClassPriceInput] | None = None


@strawberry.input(description="An hourly price for nodes of an instance type; null removes it.")
class InstanceTypePriceInput:
    instance_type: str
    hourly_cost: Decimal | None = None


@strawberry.input(description="A price per GiB-hour for volumes of a storage class; null "
                              "removes it.")
class StorageClassPriceInput:
    storage_class: str
    gib_hour: Decimal | None = None


def _window(window: CostWindowInput | None, now: datetime) -> tuple[datetime, datetime]:
    """The window's bounds; presets are relative to ``now`` (the request's clock)."""
    if window is None or (window.preset is None and window.from_ is None and window.to is None):
        return window_bounds(WindowPreset.LAST_7_DAYS, now)
    if window.preset is not None:
        if window.from_ is not None or window.to is not None:
            raise BadUserInput("window", "give either a preset or from/to, not both")
        return window_bounds(window.preset, now)
    if window.from_ is None or window.to is None:
        raise BadUserInput("window", "from and to are both required")
    start, end = as_utc(window.from_), as_utc(window.to)
    if end <= start:
        raise BadUserInput("window.to", "must be after window.from")
    return start, end


def _cluster_ids(ids: list[strawberry.ID] | None) -> list[uuid.UUID] | None:
    if ids is None:
        return None
    return [expect_global_id(i, "Cluster", field="clusterIds") for i in ids]


@strawberry.type
class CostQuery:
    @strawberry.field(description="Cost over a window (default LAST_7_DAYS), grouped (default "
                                  "NAMESPACE), idle and shared namespaces optionally spread "
                                  "(OpenCost semantics). sharedNamespaces null uses the "
                                  "namespaces marked shared; a list replaces the marks.")
    async def costs(
        self,
        info: Info[Context, None],
        window: CostWindowInput | None = None,
        group_by: list[GroupBy] | None = None,
        share_idle: bool = False,
        shared_namespaces: list[str] | None = None,
        share_mode: ShareMode = ShareMode.WEIGHTED,
        cluster_ids: list[strawberry.ID] | None = None,
    ) -> list[CostAllocation]:
        start, end = _window(window, cost_reads.request_now(info.context))
        rows = await cost_reads.costs(
            info.context, start=start, end=end,
            group_by=list(group_by or [GroupBy.NAMESPACE]),
            share_idle=share_idle, shared_namespaces=shared_namespaces,
            share_mode=share_mode, cluster_ids=_cluster_ids(cluster_ids),
        )
        return [CostAllocation.of(r) for r in rows]

    @strawberry.field(description="Budgets with spent to date, forecast and whether it is "
                                  "exceeded.")
    async def budgets(self, info: Info[Context, None]) -> list[Budget]:
        return [Budget.of(s) for s in await cost_reads.budgets(info.context)]


@strawberry.type
class CostMutation:
    @strawberry.mutation(description="Change a cluster's prices (admin).")
    async def set_cluster_pricing(
        self, info: Info[Context, None], cluster_id: strawberry.ID, input: SetClusterPricingInput
    ) -> ClusterPricing:
        result = await cost_reads.set_cluster_pricing(
            info.context, expect_global_id(cluster_id, "Cluster", field="clusterId"),
            prices={
                "cpu_core_hour": input.cpu_core_hour, "memory_gib_hour": input.memory_gib_hour,
                "storage_gib_hour": input.storage_gib_hour, "network_gib": input.network_gib,
            },
            instance_types={i.instance_type: i.hourly_cost for i in input.instance_types or []},
            storage_classes={c.storage_class: c.gib_hour for c in input.storage_classes or []},
            currency=input.currency,
        )
        return ClusterPricing.of(result)

    @strawberry.mutation(description="Create or change the monthly budget of a team, cost "
                                     "center or namespace (admin).")
    async def set_budget(
        self,
        info: Info[Context, None],
        scope: BudgetScope,
        scope_value: str,
        amount_monthly: Decimal,
        currency: str = "USD",
        cluster_id: strawberry.ID | None = None,
    ) -> Budget:
        status = await cost_reads.set_budget(
            info.context, scope_kind=scope.value, scope_value=scope_value,
            amount_monthly=amount_monthly, currency=currency,
            cluster_id=(expect_global_id(cluster_id, "Cluster", field="clusterId")
                        if cluster_id else None),
        )
        return Budget.of(status)


@strawberry.type
class CostSubscription:
    @strawberry.subscription(description="Fires when a budget's forecast crosses its amount.")
    async def budget_alerts(self, info: Info[Context, None]) -> AsyncGenerator[BudgetAlert, None]:
        async for payload in cost_reads.budget_alerts(info.context):
            yield BudgetAlert.of(payload)


def cluster_pricing_field() -> Any:
    """``Cluster.pricing``: add ``pricing = cluster_pricing_field()`` to ``Cluster``."""

    async def pricing(root: Any, info: Info[Context, None]) -> ClusterPricing:
        found = await cost_reads.cluster_pricing(info.context, root.db_id)
        if found is None:
            from resolvers.errors import NotFound

            raise NotFound("cluster not found")
        return ClusterPricing.of(found)

    return strawberry.field(resolver=pricing, description="Prices in effect now (costs use "
                                                          "the price of each hour's time).")


__all__ = ["CostMutation", "CostQuery", "CostSubscription", "cluster_pricing_field"]
