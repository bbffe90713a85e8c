"""Pieces every inventory type shares: loading a nested connection, and the way back up to the
object's cluster. Kept in one place so each type declares *what* it lists, not how."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import strawberry
from strawberry.types import Info

from resolvers.context import Context
from resolvers.errors import NotFound
from resolvers.graph_reads import PageArgs, load_child_page, load_cluster
from resolvers.graph_sql import Relation
from schema.relay import Connection, connection

if TYPE_CHECKING:
    from schema.cluster_types import Cluster

T = TypeVar("T")


async def load_connection(
    info: Info[Context, None], relation: Relation, root: Any, args: PageArgs,
    to_node: Callable[[Any], T],
) -> Connection[T]:
    """The page of ``relation`` under ``root`` (or under the caller's organization)."""
    ctx = info.context
    if relation.parent == "c.organization_id":
        parent_id = ctx.require().organization_id
    else:
        parent_id = root.db_id
    child = await load_child_page(ctx, relation, parent_id, args)
    total = child.total

    async def count() -> int:
        return total

    return connection(child.page, count, to_node)


def cluster_field() -> Any:
    """``cluster``: the cluster an object belongs to, batched across the page."""

    async def resolve(
        root: Any, info: Info[Context, None]
    ) -> Annotated[Cluster, strawberry.lazy("schema.cluster_types")]:
        from schema.cluster_types import Cluster

        row = await load_cluster(info.context, root.cluster_id)
        if row is None:
            raise NotFound("cluster not found")
        return Cluster.from_row(row)

    return strawberry.field(resolver=resolve, description="The cluster this object lives in.")
