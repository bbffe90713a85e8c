"""``node(id)``: global ID → object, through the same tenant-scoped reads as every field.

As the Relay specification has it, ``node`` is nullable and answers null for an ID that names
nothing: a malformed ID, an unknown type, a row that does not exist, and a row of another
organization alike (the scoped read cannot tell the last two apart, so neither can a caller).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from resolvers import clusters as cluster_reads
from resolvers.context import Context
from resolvers.graph_reads import get_one
from resolvers.graph_sql import DEPLOYMENT, HELM_RELEASE, NAMESPACE, NODE, POD, Entity
from schema.cluster_types import Cluster
from schema.pod_types import ClusterNode, Pod
from schema.relay import Node, parse_global_id
from schema.workload_types import Deployment, HelmRelease, Namespace


def _inventory(entity: Entity) -> Callable[[Context, Any], Awaitable[Any]]:
    async def load(ctx: Context, db_id: Any) -> Any:
        return await get_one(ctx, entity, db_id)

    return load


ROW_LOADERS: dict[str, Callable[[Context, Any], Awaitable[Any]]] = {
    "Cluster": cluster_reads.get_cluster,
    "Namespace": _inventory(NAMESPACE),
    "ClusterNode": _inventory(NODE),
    "Deployment": _inventory(DEPLOYMENT),
    "Pod": _inventory(POD),
    "HelmRelease": _inventory(HELM_RELEASE),
}
FROM_ROW: dict[str, Callable[[Any], Node]] = {
    "Cluster": Cluster.from_row, "Namespace": Namespace.from_row,
    "ClusterNode": ClusterNode.from_row, "Deployment": Deployment.from_row,
    "Pod": Pod.from_row, "HelmRelease": HelmRelease.from_row,
}


async def load_node_row(ctx: Context, id: str) -> tuple[str, Any] | None:
    """The type name and row a global ID names, or None (the planned path reads this too)."""
    ctx.require()
    parsed = parse_global_id(id)
    if parsed is None:
        return None
    type_name, db_id = parsed
    load = ROW_LOADERS.get(type_name)
    row = await load(ctx, db_id) if load is not None else None
    return (type_name, row) if row is not None else None


async def resolve_node(ctx: Context, global_id: str) -> Node | None:
    found = await load_node_row(ctx, global_id)
    return FROM_ROW[found[0]](found[1]) if found is not None else None
