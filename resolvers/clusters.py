"""Reads of the cluster registry, always scoped to the caller's organization.

The column list is explicit: the encrypted kubeconfig and its key id are never selected on a
read path, so no resolver can hand them out even by mistake.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg

from resolvers.context import Context
from resolvers.label_selector import label_selector_sql
from resolvers.pagination import Page, SortKey, check_first, fetch_page, sort_key_columns
from resolvers.sql import Params, where

CLUSTER_COLUMNS = """c.id, c.organization_id, c.name, c.provider, c.region, c.api_server_url,
    c.context_name, c.kubernetes_version, c.status, c.health_status, c.health_reason,
    c.health_changed_at, c.metrics_available, c.last_synced_at, c.last_sync_error, c.labels,
    c.price_cpu_core_hour, c.price_memory_gib_hour, c.price_storage_gib_hour,
    c.price_network_gib, c.cost_last_hour, c.cost_month_to_date, c.sync_progress,
    c.created_at, c.updated_at"""

CLUSTER_SORTS: dict[str, tuple[str, str]] = {
    "NAME": ("c.name", "text"),
    "CREATED_AT": ("c.created_at", "timestamptz"),
    "STATUS": ("c.status", "text"),
    "HEALTH": ("c.health_status", "text"),
    "LAST_SYNCED_AT": ("COALESCE(c.last_synced_at, 'epoch'::timestamptz)", "timestamptz"),
}


@dataclass(frozen=True)
class ClusterFilterArgs:
    status: list[str] | None = None
    provider: list[str] | None = None
    health: list[str] | None = None
    label_selector: str | None = None
    search: str | None = None


def cluster_filter_clauses(f: ClusterFilterArgs | None, params: Params) -> list[str]:
    clauses: list[str] = []
    if f is None:
        return clauses
    if f.status:
        clauses.append(f"c.status = ANY({params.add(f.status)}::text[])")
    if f.provider:
        clauses.append(f"c.provider = ANY({params.add(f.provider)}::text[])")
    if f.health:
        clauses.append(f"c.health_status = ANY({params.add(f.health)}::text[])")
    if f.label_selector:
        clauses += label_selector_sql(
            f.label_selector, "c.labels", params, field="filter.labelSelector"
        )
    if f.search:
        escaped = f.search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        clauses.append(f"c.name ILIKE {params.add('%' + escaped + '%')}")
    return clauses


async def list_clusters(
    ctx: Context,
    *,
    first: int,
    after: str | None,
    filter: ClusterFilterArgs | None,
    order_field: str,
    descending: bool,
) -> tuple[Page, Any]:
    """A page of the caller's clusters, and a coroutine factory counting all matches."""
    principal = ctx.require()
    check_first(first, ctx.settings.max_page_size)
    expression, sql_type = CLUSTER_SORTS[order_field]
    keys = [SortKey(expression, sql_type, descending), SortKey("c.id", "uuid", descending)]
    params = Params(principal.organization_id)
    clauses = ["c.organization_id = $1", *cluster_filter_clauses(filter, params)]
    count_params = list(params.values)
    count_where = where(clauses)
    page = await fetch_page(
        ctx.pool,
        sql=f"SELECT {CLUSTER_COLUMNS}, {sort_key_columns(keys)} FROM k8s_clusters c "
        "WHERE {where}",
        clauses=clauses, params=params, keys=keys, first=first, after=after,
        cursor_key=ctx.cursor_key, org_id=principal.organization_id,
        kind=f"clusters:{order_field}:{descending}",
    )

    async def count() -> int:
        value: int = await ctx.pool.fetchval(
            f"SELECT count(*) FROM k8s_clusters c WHERE {count_where}", *count_params
        )
        return value

    return page, count


async def get_cluster(ctx: Context, cluster_id: uuid.UUID) -> asyncpg.Record | None:
    principal = ctx.require()
    row: asyncpg.Record | None = await ctx.pool.fetchrow(
        f"SELECT {CLUSTER_COLUMNS} FROM k8s_clusters c WHERE c.organization_id = $1 AND c.id = $2",
        principal.organization_id, cluster_id,
    )
    return row
