"""Cost reads and writes for the graph: thin, organization-scoped wrappers over ``cost``.

The cost engine owns the arithmetic; this module only adds who may ask (viewer to read, admin
to change prices and budgets), turns engine ``ValueError``s into ``BAD_USER_INPUT``, and makes
a cluster of another organization indistinguishable from one that does not exist.

"Now" (the month a budget is in, the instant a new price takes effect, the price in effect)
comes from ``request_now``: the real UTC clock, unless the app put a clock callable in
``services['clock']``. Tests do, so what they assert is fixed by the instant they chose and
never by the day they happen to run on.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from app.auth import Role
from cost import budgets as budget_engine
from cost import pricing as pricing_engine
from cost.query import (
    CostRow,
    GroupBy,
    ShareMode,
    WindowPreset,
    query_costs,
    window_bounds,
)
from resolvers import events
from resolvers.context import Context
from resolvers.dataloaders import BatchLoader
from resolvers.errors import BadUserInput, NotFound

_BOOK: pricing_engine.PriceBook | None = None
# The ``services`` key of an injected clock: a callable returning an aware ``datetime``.
CLOCK_SERVICE = "clock"
Clock = Callable[[], datetime]


# The schema's cost types name these; they reach it through here (schema imports resolvers).
__all__ = [
    "CostRow", "GroupBy", "ShareMode", "WindowPreset", "budget_engine", "pricing_engine",
    "window_bounds",
]


def request_now(ctx: Context) -> datetime:
    """Now for this request: ``services['clock']()`` when the app put a clock there, else the
    real UTC clock (production never sets one, so it always runs on real time)."""
    clock: Clock | None = ctx.services.get(CLOCK_SERVICE)
    return clock() if clock is not None else datetime.now(UTC)


def price_book(ctx: Context) -> pricing_engine.PriceBook:
    """The process's price book (``services['price_book']`` when the app put one there)."""
    global _BOOK
    book = ctx.services.get("price_book")
    if isinstance(book, pricing_engine.PriceBook):
        return book
    if _BOOK is None:
        _BOOK = pricing_engine.PriceBook.from_env()
    return _BOOK


def _bad_input(exc: ValueError) -> BadUserInput:
    field, _, reason = str(exc).partition(": ")
    return BadUserInput(field, reason) if reason else BadUserInput("input", str(exc))


async def costs(
    ctx: Context,
    *,
    start: datetime,
    end: datetime,
    group_by: Sequence[GroupBy],
    share_idle: bool,
    shared_namespaces: Sequence[str] | None,
    share_mode: ShareMode,
    cluster_ids: Sequence[uuid.UUID] | None,
) -> list[CostRow]:
    principal = ctx.require()
    if end < start:
        raise BadUserInput("window.to", "must not be before window.from")
    async with ctx.pool.acquire() as conn:
        return await query_costs(
            conn, organization_id=principal.organization_id, start=start, end=end,
            group_by=group_by, share_idle=share_idle, shared_namespaces=shared_namespaces,
            share_mode=share_mode, cluster_ids=cluster_ids,
        )


async def cluster_pricing(
    ctx: Context, cluster_id: uuid.UUID
) -> pricing_engine.ClusterPricing | None:
    def factory(c: Context) -> BatchLoader[uuid.UUID, pricing_engine.ClusterPricing | None]:
        async def fetch(
            keys: list[uuid.UUID],
        ) -> Mapping[uuid.UUID, pricing_engine.ClusterPricing | None]:
            async with c.pool.acquire() as conn:
                found = await pricing_engine.get_clusters_pricing(
                    conn, organization_id=c.require().organization_id, cluster_ids=keys,
                    at=request_now(c), book=price_book(c),
                )
            return dict(found)

        return BatchLoader(fetch, missing=lambda: None)

    ctx.require()
    loader: BatchLoader[uuid.UUID, pricing_engine.ClusterPricing | None] = ctx.loader(
        "cluster_pricing", factory)
    return await loader.load(cluster_id)


async def set_cluster_pricing(
    ctx: Context,
    cluster_id: uuid.UUID,
    *,
    prices: Mapping[str, Decimal | None],
    instance_types: Mapping[str, Decimal | None] | None,
    storage_classes: Mapping[str, Decimal | None] | None = None,
    currency: str | None,
) -> pricing_engine.ClusterPricing:
    principal = ctx.require(Role.ADMIN)
    async with ctx.pool.acquire() as conn:
        try:
            result = await pricing_engine.set_cluster_pricing(
                conn, organization_id=principal.organization_id, cluster_id=cluster_id,
                effective_from=request_now(ctx), book=price_book(ctx),
                instance_types=instance_types, storage_classes=storage_classes,
                currency=currency, cpu_core_hour=prices.get("cpu_core_hour"),
                memory_gib_hour=prices.get("memory_gib_hour"),
                storage_gib_hour=prices.get("storage_gib_hour"),
                network_gib=prices.get("network_gib"),
            )
        except ValueError as exc:
            raise _bad_input(exc) from None
    if result is None:
        raise NotFound("cluster not found")
    return result


async def budgets(ctx: Context) -> list[budget_engine.BudgetStatus]:
    principal = ctx.require()
    async with ctx.pool.acquire() as conn:
        return await budget_engine.budget_statuses(
            conn, organization_id=principal.organization_id, now=request_now(ctx)
        )


async def set_budget(
    ctx: Context,
    *,
    scope_kind: str,
    scope_value: str,
    amount_monthly: Decimal,
    currency: str,
    cluster_id: uuid.UUID | None,
) -> budget_engine.BudgetStatus:
    principal = ctx.require(Role.ADMIN)
    async with ctx.pool.acquire() as conn:
        try:
            budget = await budget_engine.set_budget(
                conn, organization_id=principal.organization_id, scope_kind=scope_kind,
                scope_value=scope_value, amount_monthly=amount_monthly, currency=currency,
                cluster_id=cluster_id,
            )
        except ValueError as exc:
            raise _bad_input(exc) from None
        [status] = await budget_engine.budget_statuses(
            conn, organization_id=principal.organization_id, now=request_now(ctx),
            budget_ids=[budget.id],
        )
    return status


async def budget_alerts(ctx: Context) -> AsyncIterator[Mapping[str, Any]]:
    """Payloads of ``fleetgraph_budget_alerts`` notices for the caller's organization, through
    the process's one LISTEN hub (never a connection per subscriber)."""
    async for event in events.stream(ctx, topic=events.BUDGET_ALERTS, cluster_id=None):
        yield event.row
