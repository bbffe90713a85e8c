"""``node(id)``: global ID → object, through the same tenant-scoped reads as every field."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from resolvers import clusters as cluster_reads
from resolvers.context import Context
from resolvers.errors import NotFound
from schema.cluster_types import Cluster
from schema.relay import Node, from_global_id


async def _cluster(ctx: Context, db_id: Any) -> Node | None:
    row = await cluster_reads.get_cluster(ctx, db_id)
    return Cluster.from_row(row) if row is not None else None


NODE_RESOLVERS: dict[str, Callable[[Context, Any], Awaitable[Node | None]]] = {
    "Cluster": _cluster,
}


async def resolve_node(ctx: Context, global_id: str) -> Node:
    ctx.require()
    type_name, db_id = from_global_id(global_id)
    resolver = NODE_RESOLVERS.get(type_name)
    found = await resolver(ctx, db_id) if resolver else None
    if found is None:
        raise NotFound("no object with this ID")
    return found
