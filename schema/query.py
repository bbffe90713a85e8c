"""Root query fields."""

from __future__ import annotations

from typing import Annotated

import strawberry
from strawberry.types import Info

from resolvers import clusters as cluster_reads
from resolvers.context import Context
from resolvers.errors import NotFound
from resolvers.fleet_health import fleet_health
from resolvers.graph_sql import FLEET_DEPLOYMENTS, FLEET_NAMESPACES, FLEET_PODS
from schema.cluster_types import Cluster, ClusterFilter, ClusterOrder
from schema.cost_types import CostQuery
from schema.enums import OrderDirection, Role
from schema.health_types import FleetHealth
from schema.nodes import resolve_node
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

    @strawberry.field(description="The caller's clusters, a page at a time.")
    async def clusters(
        self,
        info: Info[Context, None],
        first: int = 50,
        after: str | None = None,
        filter: ClusterFilter | None = None,
        order_by: ClusterOrder | None = None,
    ) -> Connection[Cluster]:
        order = order_by or ClusterOrder()
        page, count = await cluster_reads.list_clusters(
            info.context, first=first, after=after, filter=_filter_args(filter),
            order_field=order.field.value, descending=order.direction is OrderDirection.DESC,
        )
        return connection(page, count, Cluster.from_row)

    @strawberry.field
    async def cluster(self, info: Info[Context, None], id: strawberry.ID) -> Cluster:
        row = await cluster_reads.get_cluster(info.context, expect_global_id(id, "Cluster"))
        if row is None:
            raise NotFound("cluster not found")
        return Cluster.from_row(row)

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
                                  "names nothing the caller can see.")
    async def node(
        self, info: Info[Context, None], id: strawberry.ID
    ) -> Annotated[Node, strawberry.lazy("schema.relay")] | None:
        return await resolve_node(info.context, id)
