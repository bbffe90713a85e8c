"""The ``Cluster`` type and the registry's inputs and results.

``Cluster`` is built from the explicit column list in ``resolvers.clusters``; it has no field
that could carry a kubeconfig, token or key, by construction.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any

import strawberry
from strawberry.scalars import JSON
from strawberry.types import Info

from resolvers.context import Context
from resolvers.errors import NotFound
from resolvers.graph_reads import load_cluster_health
from resolvers.graph_sql import (
    CLUSTER_DEPLOYMENTS,
    CLUSTER_HELM_RELEASES,
    CLUSTER_NAMESPACES,
    CLUSTER_NODES,
    CLUSTER_PODS,
)
from resolvers.inventory.spec import RowReaders, column, read_row
from schema.cost_types import cluster_pricing_field
from schema.enums import (
    ClusterOrderField,
    ClusterProvider,
    ClusterStatus,
    HealthStatus,
    OrderDirection,
)
from schema.health_types import ClusterCost, ClusterHealth
from schema.metric_types import metrics_field
from schema.pod_types import nodes_field, pods_field
from schema.relay import Node, to_global_id
from schema.scalars import money
from schema.workload_types import deployments_field, helm_releases_field, namespaces_field


@strawberry.type(description="Current health and why.")
class ClusterHealthState:
    status: HealthStatus
    reason: str | None
    changed_at: datetime | None


@strawberry.type(description="Registry entry of a Kubernetes cluster and the graph below it.")
class Cluster(Node):
    db_id: strawberry.Private[uuid.UUID]
    row: strawberry.Private[Any]
    name: str
    provider: ClusterProvider
    region: str | None
    api_server_url: str
    context_name: str | None
    kubernetes_version: str | None
    status: ClusterStatus
    metrics_available: bool | None
    last_synced_at: datetime | None
    last_sync_error: str | None
    labels: JSON
    created_at: datetime
    updated_at: datetime
    namespaces = namespaces_field(CLUSTER_NAMESPACES, "Namespaces of this cluster.")
    nodes = nodes_field(CLUSTER_NODES, "Nodes of this cluster.")
    deployments = deployments_field(CLUSTER_DEPLOYMENTS, "Deployments in every namespace.")
    pods = pods_field(CLUSTER_PODS, "Pods in every namespace.")
    helm_releases = helm_releases_field(CLUSTER_HELM_RELEASES, "Helm releases of the cluster.")
    metrics = metrics_field("cluster", lambda c: (c.db_id, "", ""))

    pricing = cluster_pricing_field()

    @strawberry.field(description="Health verdict and its figures (v_k8s_cluster_health).")
    async def health(self, info: Info[Context, None]) -> ClusterHealth:
        row = await load_cluster_health(info.context, self.db_id)
        if row is None:
            raise NotFound("cluster not found")
        return ClusterHealth.from_row(row)

    @strawberry.field(description="Estimated cost from node prices, and the cost engine's "
                                  "latest hour and month to date.")
    async def cost(self, info: Info[Context, None]) -> ClusterCost:
        row = await load_cluster_health(info.context, self.db_id)
        if row is None:
            raise NotFound("cluster not found")
        return ClusterCost(
            estimated_hourly_cost=money(row["estimated_hourly_cost"] or 0),
            estimated_monthly_cost=money(row["estimated_monthly_cost"] or 0),
            last_hour=money(self.row["cost_last_hour"]),
            month_to_date=money(self.row["cost_month_to_date"]),
        )

    @strawberry.field(description="Health as last computed by the sync engine.")
    def health_state(self) -> ClusterHealthState:
        return ClusterHealthState(
            status=HealthStatus(self.row["health_status"]),
            reason=self.row["health_reason"],
            changed_at=self.row["health_changed_at"],
        )

    @classmethod
    def from_row(cls, row: Any) -> Cluster:
        return cls(**read_row(CLUSTER_READERS, row))


CLUSTER_READERS: RowReaders = {
    "id": lambda r: to_global_id("Cluster", r["id"]), "db_id": column("id"), "row": lambda r: r,
    **{name: column(name) for name in (
        "name", "region", "api_server_url", "context_name", "kubernetes_version",
        "metrics_available", "last_synced_at", "last_sync_error", "labels", "created_at",
        "updated_at")},
    "provider": column("provider", ClusterProvider),
    "status": column("status", ClusterStatus),
}


@strawberry.input(description="Prices for this cluster; unset fields use the provider default.")
class PricingInput:
    cpu_core_hour: Decimal | None = None
    memory_gib_hour: Decimal | None = None
    storage_gib_hour: Decimal | None = None
    network_gib: Decimal | None = None


@strawberry.input
class RegisterClusterInput:
    name: str
    provider: ClusterProvider
    kubeconfig: str = strawberry.field(description="Kubeconfig YAML; only inline credentials.")
    context: str | None = None
    region: str | None = None
    labels: JSON | None = None
    pricing: PricingInput | None = None


@strawberry.input
class UpdateClusterInput:
    name: str | None = None
    region: str | None = None
    labels: JSON | None = None
    pricing: PricingInput | None = None
    enabled: bool | None = strawberry.field(
        default=None, description="false disables syncing; true re-enables it."
    )


@strawberry.input
class ClusterFilter:
    status: list[ClusterStatus] | None = None
    provider: list[ClusterProvider] | None = None
    health: list[HealthStatus] | None = None
    label_selector: str | None = strawberry.field(
        default=None, description="Kubernetes syntax, e.g. `env=prod,tier in (a,b),!legacy`."
    )
    search: str | None = strawberry.field(default=None, description="Substring of the name.")


@strawberry.input
class ClusterOrder:
    field: ClusterOrderField = ClusterOrderField.NAME
    direction: OrderDirection = OrderDirection.ASC


@strawberry.type(description="One input field that was refused, and why.")
class FieldError:
    field: str
    message: str


@strawberry.type(description="The input was refused; nothing was changed.")
class InvalidInput:
    message: str
    field_errors: list[FieldError]


@strawberry.type
class DeletedCluster:
    id: strawberry.ID


@strawberry.type(description="Outcome of reaching a cluster's API server.")
class ConnectionTest:
    reachable: bool
    server_version: str | None
    latency_ms: float | None
    error: str | None


ClusterResult = Annotated[Cluster | InvalidInput, strawberry.union("ClusterResult")]
