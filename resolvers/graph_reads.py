"""Set-based reads behind every connection and nested field of the graph.

One statement per (relation, arguments) per request: the page of children for *all* parents
is cut with a window over ``PARTITION BY parent``, and the same window counts each parent's
matches, so ``totalCount`` costs nothing extra. Rows before an ``after`` cursor still take
part in the count (they are filtered out after the window), which keeps ``totalCount`` exact on
every page, including an empty last one.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import asyncpg

from resolvers.clusters import CLUSTER_COLUMNS
from resolvers.context import Context
from resolvers.dataloaders import BatchLoader
from resolvers.graph_filters import InventoryFilterArgs, filter_clauses
from resolvers.graph_sql import NODE, Entity, Relation
from resolvers.pagination import (
    Page,
    check_first,
    decode_cursor,
    encode_cursor,
    keyset_clause,
    order_by,
    sort_key_columns,
)
from resolvers.sql import Params, where


@dataclass(frozen=True)
class PageArgs:
    """A connection's arguments; part of the loader's identity (hashable on purpose)."""

    first: int = 50
    after: str | None = None
    order: str = "NAME"
    descending: bool = False
    filter: InventoryFilterArgs | None = None


@dataclass
class ChildPage:
    page: Page
    total: int


def _empty_page(args: PageArgs) -> ChildPage:
    return ChildPage(Page(rows=[], cursors=[], has_next_page=False,
                          has_previous_page=args.after is not None), 0)


@dataclass
class _PageQuery:
    sql: str
    params: list[Any]
    kind: str
    key_count: int


def page_query(ctx: Context, relation: Relation, parent_ids: list[uuid.UUID],
               args: PageArgs, columns: frozenset[str] | None = None, *,
               cursors: bool = True, totals: bool = True) -> _PageQuery:
    """The one statement that reads ``args``' page of ``relation`` for every parent, with
    only ``columns`` of the entity when given, and the sort keys only when ``cursors`` are
    minted (the planned path reads no more than it answers: decoding unused JSON,
    timestamps and UUIDs of 10,000 rows cost more than the statement).

    Without ``totals`` (no ``totalCount`` asked), each parent's page is cut by a ``LIMIT``
    inside a ``LATERAL`` join instead of windows over every child of every parent: the same
    rows, read through the parent's index without sorting and counting them all."""
    if not totals:
        return _lateral_page_query(ctx, relation, parent_ids, args, columns, cursors=cursors)
    principal = ctx.require()
    entity = relation.entity
    keys = entity.sort_keys(args.order, args.descending)
    kind = f"{relation.name}:{args.order}:{args.descending}"
    params = Params(principal.organization_id, parent_ids)
    clauses = ["c.organization_id = $1", f"{relation.parent} = ANY($2::uuid[])",
               *filter_clauses(entity, args.filter, params)]
    after = "true"
    if args.after is not None:
        values = decode_cursor(ctx.cursor_key, principal.organization_id, kind, args.after)
        after = keyset_clause(keys, values, params)
    parent = relation.parent
    ordering = order_by(keys)
    keys_out = "".join(f", _k{i}" for i in range(len(keys))) if cursors else ""
    sql = f"""
SELECT {", ".join(entity.columns_of(columns))}, _parent, _total, _after{keys_out} FROM (
    SELECT {entity.select_of(columns)}, {parent} AS _parent, {sort_key_columns(keys)},
           count(*) OVER (PARTITION BY {parent}) AS _total,
           ({after}) AS _after,
           row_number() OVER (PARTITION BY {parent} ORDER BY {ordering}) AS _pos,
           count(*) FILTER (WHERE {after}) OVER (
               PARTITION BY {parent} ORDER BY {ordering} ROWS UNBOUNDED PRECEDING) AS _rn
      FROM {relation.from_sql}
     WHERE {where(clauses)}
) s
WHERE (s._after AND s._rn <= {params.add(args.first + 1)}) OR s._pos = 1
ORDER BY s._parent, s._pos"""
    return _PageQuery(sql, params.values, kind, len(keys))


def _lateral_page_query(ctx: Context, relation: Relation, parent_ids: list[uuid.UUID],
                        args: PageArgs, columns: frozenset[str] | None, *, cursors: bool
                        ) -> _PageQuery:
    principal = ctx.require()
    entity = relation.entity
    keys = entity.sort_keys(args.order, args.descending)
    kind = f"{relation.name}:{args.order}:{args.descending}"
    params = Params(principal.organization_id, parent_ids)
    clauses = ["c.organization_id = $1", f"{relation.parent} = _parents._id",
               *filter_clauses(entity, args.filter, params)]
    if args.after is not None:
        values = decode_cursor(ctx.cursor_key, principal.organization_id, kind, args.after)
        clauses.append(keyset_clause(keys, values, params))
    keys_out = f", {sort_key_columns(keys)}" if cursors else ""
    sql = f"""
SELECT s.* FROM unnest($2::uuid[]) AS _parents(_id) CROSS JOIN LATERAL (
    SELECT {entity.select_of(columns)}, {relation.parent} AS _parent, true AS _after,
           NULL::bigint AS _total{keys_out}
      FROM {relation.from_sql}
     WHERE {where(clauses)}
     ORDER BY {order_by(keys)}
     LIMIT {params.add(args.first + 1)}
) s"""
    return _PageQuery(sql, params.values, kind, len(keys))


@dataclass
class ChildRows:
    """One parent's page of rows before any cursor is minted: the planned path mints cursors
    only where a query selects them, the resolvers always (``fetch_child_pages``)."""

    rows: list[asyncpg.Record]
    has_next_page: bool
    has_previous_page: bool
    total: int | None  # None: not counted (see ``page_query``'s ``totals``)


@dataclass
class ChildRowSet:
    """Every parent's rows from one statement, and what minting their cursors needs."""

    pages: dict[uuid.UUID, ChildRows]
    kind: str
    key_count: int

    def cursors(self, ctx: Context, rows: list[asyncpg.Record]) -> list[str]:
        org_id = ctx.require().organization_id
        return [encode_cursor(ctx.cursor_key, org_id, self.kind,
                              [r[f"_k{i}"] for i in range(self.key_count)]) for r in rows]


async def fetch_child_rows(
    ctx: Context, relation: Relation, parent_ids: list[uuid.UUID], args: PageArgs,
    columns: frozenset[str] | None = None, *, cursors: bool = True, totals: bool = True,
) -> ChildRowSet:
    """``args``' page of ``relation`` under every parent in ``parent_ids``, in one statement.
    Parents without a matching child are absent (see ``empty_child_rows``); without
    ``totals``, each page's ``total`` is None."""
    check_first(args.first, ctx.settings.max_page_size)
    query = page_query(ctx, relation, parent_ids, args, columns, cursors=cursors,
                       totals=totals)
    grouped: dict[uuid.UUID, list[asyncpg.Record]] = defaultdict(list)
    counted: dict[uuid.UUID, int | None] = {}
    for row in await ctx.pool.fetch(query.sql, *query.params):
        counted[row["_parent"]] = row["_total"]
        if row["_after"]:
            grouped[row["_parent"]].append(row)
    pages: dict[uuid.UUID, ChildRows] = {}
    for parent_id, total in counted.items():
        rows = grouped.get(parent_id, [])
        pages[parent_id] = ChildRows(rows[: args.first], len(rows) > args.first,
                                     args.after is not None, total)
    return ChildRowSet(pages, query.kind, query.key_count)


def empty_child_rows(args: PageArgs) -> ChildRows:
    return ChildRows([], False, args.after is not None, 0)


async def fetch_child_pages(
    ctx: Context, relation: Relation, parent_ids: list[uuid.UUID], args: PageArgs
) -> dict[uuid.UUID, ChildPage]:
    found = await fetch_child_rows(ctx, relation, parent_ids, args)
    return {
        parent_id: ChildPage(
            Page(rows=child.rows, cursors=found.cursors(ctx, child.rows),
                 has_next_page=child.has_next_page, has_previous_page=child.has_previous_page),
            child.total or 0,  # always counted here (``totals`` is on)
        )
        for parent_id, child in found.pages.items()
    }


async def load_child_page(
    ctx: Context, relation: Relation, parent_id: uuid.UUID, args: PageArgs
) -> ChildPage:
    """The page under one parent, batched with every sibling asking the same question."""
    check_first(args.first, ctx.settings.max_page_size)

    def factory(c: Context) -> BatchLoader[uuid.UUID, ChildPage]:
        async def fetch(ids: list[uuid.UUID]) -> Mapping[uuid.UUID, ChildPage]:
            return await fetch_child_pages(c, relation, ids, args)

        return BatchLoader(fetch, missing=lambda: _empty_page(args))

    loader = ctx.loader(f"page:{relation.name}:{args!r}", factory)
    page: ChildPage = await loader.load(parent_id)
    return page


async def get_one(ctx: Context, entity: Entity, db_id: uuid.UUID) -> asyncpg.Record | None:
    """One row by id within the caller's organization (``node(id)``)."""
    principal = ctx.require()
    row: asyncpg.Record | None = await ctx.pool.fetchrow(
        f"SELECT {entity.select_list} FROM {entity.base_from} "
        f"WHERE c.organization_id = $1 AND {entity.alias}.id = $2",
        principal.organization_id, db_id,
    )
    return row


def _keyed_loader(ctx: Context, name: str, sql: str, key_column: str) -> BatchLoader[Any, Any]:
    """A loader of one row per key from ``sql`` (``$1`` organization, ``$2`` the key array)."""

    def factory(c: Context) -> BatchLoader[Any, Any]:
        async def fetch(keys: list[Any]) -> Mapping[Any, Any]:
            rows = await c.pool.fetch(sql, c.require().organization_id, keys)
            return {row[key_column]: row for row in rows}

        return BatchLoader(fetch, missing=lambda: None)

    loader: BatchLoader[Any, Any] = ctx.loader(name, factory)
    return loader


async def load_cluster_health(ctx: Context, cluster_id: uuid.UUID) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await _keyed_loader(
        ctx, "cluster_health",
        "SELECT * FROM v_k8s_cluster_health WHERE organization_id = $1 "
        "AND cluster_id = ANY($2::uuid[])", "cluster_id",
    ).load(cluster_id)
    return row


async def load_namespace_cost(ctx: Context, namespace_id: uuid.UUID) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await _keyed_loader(
        ctx, "namespace_cost",
        "SELECT * FROM v_k8s_namespace_costs WHERE organization_id = $1 "
        "AND namespace_id = ANY($2::uuid[])", "namespace_id",
    ).load(namespace_id)
    return row


async def load_cluster(ctx: Context, cluster_id: uuid.UUID) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await _keyed_loader(
        ctx, "cluster_by_id",
        f"SELECT {CLUSTER_COLUMNS} FROM k8s_clusters c WHERE c.organization_id = $1 "
        "AND c.id = ANY($2::uuid[])", "id",
    ).load(cluster_id)
    return row


async def load_node_by_name(
    ctx: Context, cluster_id: uuid.UUID, name: str
) -> asyncpg.Record | None:
    """The live node a pod runs on, by (cluster, node name)."""
    row: asyncpg.Record | None = await _keyed_loader(
        ctx, "node_by_name",
        f"SELECT {NODE.select_list}, (nd.cluster_id::text || '/' || nd.name) AS _key "
        f"FROM {NODE.base_from} WHERE c.organization_id = $1 AND nd.deleted_at IS NULL "
        "AND (nd.cluster_id::text || '/' || nd.name) = ANY($2::text[])", "_key",
    ).load(f"{cluster_id}/{name}")
    return row
