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


async def _cluster(ctx: Context, db_id: Any) -> Node | None:
    row = await cluster_reads.get_cluster(ctx, db_id)
    return Cluster.from_row(row) if row is not None else None


def _inventory(entity: Entity, to_node: Callable[[Any], Node]) -> Callable[
    [Context, Any], Awaitable[Node | None]
]:
    async def resolve(ctx: Context, db_id: Any) -> Node | None:
        row = await get_one(ctx, entity, db_id)
        return to_node(row) if row is not None else None

    return resolve


NODE_RESOLVERS: dict[str, Callable[[Context, Any], Awaitable[Node | None]]] = {
    "Cluster": _cluster,
    "Namespace": _inventory(NAMESPACE, Namespace.from_row),
    "ClusterNode": _inventory(NODE, ClusterNode.from_row),
    "Deployment": _inventory(DEPLOYMENT, Deployment.from_row),
    "Pod": _inventory(POD, Pod.from_row),
    "HelmRelease": _inventory(HELM_RELEASE, HelmRelease.from_row),
}


async def resolve_node(ctx: Context, global_id: str) -> Node | None:
    ctx.require()
    parsed = parse_global_id(global_id)
    if parsed is None:
        return None
    type_name, db_id = parsed
    resolver = NODE_RESOLVERS.get(type_name)
    return await resolver(ctx, db_id) if resolver is not None else None
