"""Root query fields."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

import strawberry
from strawberry.types import Info

from resolvers import clusters as cluster_reads
from resolvers.context import Context
from resolvers.errors import NotFound
from resolvers.fleet_health import fleet_health
from resolvers.graph_sql import FLEET_DEPLOYMENTS, FLEET_NAMESPACES, FLEET_PODS
from resolvers.inventory.spec import RootConnection, RootObject, spec_metadata
from resolvers.pagination import Page
from schema.cluster_types import Cluster, ClusterFilter, ClusterOrder
from schema.cost_types import CostQuery
from schema.enums import OrderDirection, Role
from schema.health_types import FleetHealth
from schema.nodes import load_node_row, resolve_node
from schema.pod_types import pods_field
from schema.relay import Connection, Node, connection, expect_global_id
from schema.workload_types import deployments_field, namespaces_field


@strawberry.type(description="Who is asking: the organization and role of the token.")
class Viewer:
    organization: str
    organization_id: strawberry.ID
    role: Role


def _filter_args(f: ClusterFilter | None) -> cluster_reads.ClusterFilterArgs | None:
    if f is None:
        return None
    return cluster_reads.ClusterFilterArgs(
        status=[s.value for s in f.status] if f.status else None,
        provider=[p.value for p in f.provider] if f.provider else None,
        health=[h.value for h in f.health] if f.health else None,
        label_selector=f.label_selector,
        search=f.search,
    )


async def _cluster_page(
    ctx: Context, first: int = 50, after: str | None = None,
    filter: ClusterFilter | None = None, order_by: ClusterOrder | None = None,
) -> tuple[Page, Callable[[], Awaitable[int]]]:
    order = order_by or ClusterOrder()
    page, count = await cluster_reads.list_clusters(
        ctx, first=first, after=after, filter=_filter_args(filter),
        order_field=order.field.value, descending=order.direction is OrderDirection.DESC,
    )
    return page, count


async def _cluster_row(ctx: Context, id: strawberry.ID) -> tuple[str, Any] | None:
    row = await cluster_reads.get_cluster(ctx, expect_global_id(id, "Cluster"))
    return ("Cluster", row) if row is not None else None


@strawberry.type
class Query(CostQuery):
    @strawberry.field(description="The caller's organization and role.")
    def viewer(self, info: Info[Context, None]) -> Viewer:
        principal = info.context.require()
        return Viewer(
            organization=principal.organization_slug,
            organization_id=strawberry.ID(str(principal.organization_id)),
            role=Role(principal.role.value),
        )

    @strawberry.field(description="The caller's clusters, a page at a time.",
                      metadata=spec_metadata(RootConnection(_cluster_page)))
    async def clusters(
        self,
        info: Info[Context, None],
        first: int = 50,
        after: str | None = None,
        filter: ClusterFilter | None = None,
        order_by: ClusterOrder | None = None,
    ) -> Connection[Cluster]:
        page, count = await _cluster_page(info.context, first, after, filter, order_by)
        return connection(page, count, Cluster.from_row)

    @strawberry.field(metadata=spec_metadata(RootObject(_cluster_row, null_when_missing=False)))
    async def cluster(self, info: Info[Context, None], id: strawberry.ID) -> Cluster:
        found = await _cluster_row(info.context, id)
        if found is None:
            raise NotFound("cluster not found")
        return Cluster.from_row(found[1])

    namespaces = namespaces_field(FLEET_NAMESPACES, "Namespaces across all the caller's "
                                                    "clusters.")
    deployments = deployments_field(FLEET_DEPLOYMENTS, "Deployments across all the caller's "
                                                       "clusters.")
    pods = pods_field(FLEET_PODS, "Pods across all the caller's clusters.")

    @strawberry.field(description="Totals over the caller's clusters, and clusters per health "
                                  "state.")
    async def fleet_health(self, info: Info[Context, None]) -> FleetHealth:
        return FleetHealth.of(await fleet_health(info.context))

    @strawberry.field(description="Any object by its global ID (Relay), or null when the ID "
                                  "names nothing the caller can see.",
                      metadata=spec_metadata(RootObject(load_node_row, null_when_missing=True)))
    async def node(
        self, info: Info[Context, None], id: strawberry.ID
    ) -> Annotated[Node, strawberry.lazy("schema.relay")] | None:
        return await resolve_node(info.context, id)
