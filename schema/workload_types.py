"""``Namespace``, ``Deployment`` and ``HelmRelease``, with the connection-field factories that
let clusters, namespaces and the fleet root list them with the same arguments."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import strawberry
from strawberry.scalars import JSON
from strawberry.types import Info

from resolvers.context import Context
from resolvers.graph_reads import load_namespace_cost
from resolvers.graph_sql import (
    DEPLOYMENT_PODS,
    NAMESPACE_DEPLOYMENTS,
    NAMESPACE_HELM_RELEASES,
    NAMESPACE_PODS,
    Relation,
)
from resolvers.helm_values import release_values
from resolvers.inventory.spec import (
    ChildConnection,
    RowReaders,
    column,
    read_row,
    record,
    spec_metadata,
)
from schema.enums import HealthStatus
from schema.filters import (
    DeploymentFilter,
    HelmReleaseFilter,
    HelmReleaseOrder,
    InventoryOrder,
    NamespaceFilter,
    connection_page,
    page_args,
)
from schema.graph_fields import cluster_field, load_connection
from schema.health_types import NamespaceCost
from schema.metric_types import metrics_field
from schema.pod_types import ResourceAmounts, pods_field
from schema.relay import Connection, Node, to_global_id


@strawberry.type(description="A Helm release (latest revision). Values are redacted.")
class HelmRelease(Node):
    db_id: strawberry.Private[uuid.UUID]
    cluster_id: strawberry.Private[uuid.UUID]
    row: strawberry.Private[Any]
    namespace: str
    name: str
    revision: int
    chart_name: str | None
    chart_version: str | None
    app_version: str | None
    status: str | None
    description: str | None
    first_deployed_at: datetime | None
    last_deployed_at: datetime | None
    deleted_at: datetime | None
    cluster = cluster_field()

    @strawberry.field(description="The release's values. Keys that look like passwords, "
                                  "secrets, tokens, keys or credentials show \"***\"; "
                                  "`redact: false` is for admins only.")
    def values(self, info: Info[Context, None], redact: bool = True) -> JSON | None:
        return release_values(info.context, self.row, redacted=redact)

    @classmethod
    def from_row(cls, r: Any) -> HelmRelease:
        return cls(
            id=to_global_id("HelmRelease", r["id"]), db_id=r["id"], cluster_id=r["cluster_id"],
            row=r, namespace=r["namespace"], name=r["name"], revision=r["revision"],
            chart_name=r["chart_name"], chart_version=r["chart_version"],
            app_version=r["app_version"], status=r["status"], description=r["description"],
            first_deployed_at=r["first_deployed_at"], last_deployed_at=r["last_deployed_at"],
            deleted_at=r["deleted_at"],
        )


def helm_releases_field(relation: Relation, description: str) -> Any:
    async def resolve(
        root: Any, info: Info[Context, None], first: int = 50, after: str | None = None,
        filter: HelmReleaseFilter | None = None, order_by: HelmReleaseOrder | None = None,
    ) -> Connection[HelmRelease]:
        args = page_args(first, after, filter, order_by or HelmReleaseOrder())
        return await load_connection(info, relation, root, args, HelmRelease.from_row)

    return strawberry.field(resolver=resolve, description=description)


@strawberry.type
class DeploymentReplicas:
    desired: int
    ready: int
    available: int
    updated: int
    unavailable: int


@strawberry.type
class WorkloadHealth:
    status: HealthStatus
    reason: str | None


@strawberry.type(description="A Deployment and its rollout state.")
class Deployment(Node):
    db_id: strawberry.Private[uuid.UUID]
    cluster_id: strawberry.Private[uuid.UUID]
    uid: str
    namespace: str
    name: str
    labels: JSON
    annotations: JSON
    selector: JSON
    replicas: DeploymentReplicas
    strategy: str | None
    strategy_params: JSON
    containers: JSON = strawberry.field(description="The pod template's containers.")
    conditions: JSON
    generation: int | None
    observed_generation: int | None
    health: WorkloadHealth
    created_at: datetime | None
    deleted_at: datetime | None
    cluster = cluster_field()
    pods = pods_field(DEPLOYMENT_PODS, "Pods of this Deployment (through its ReplicaSets).")
    metrics = metrics_field("deployment", lambda d: (d.cluster_id, d.namespace, d.name))

    @classmethod
    def from_row(cls, r: Any) -> Deployment:
        return cls(**read_row(DEPLOYMENT_READERS, r))


DEPLOYMENT_READERS: RowReaders = {
    "id": lambda r: to_global_id("Deployment", r["id"]), "db_id": column("id"),
    **{name: column(name) for name in (
        "cluster_id", "uid", "namespace", "name", "labels", "annotations", "selector",
        "strategy", "strategy_params", "containers", "conditions", "generation",
        "observed_generation", "created_at", "deleted_at")},
    "replicas": record(DeploymentReplicas, **{
        name: column(f"replicas_{name}")
        for name in ("desired", "ready", "available", "updated", "unavailable")}),
    "health": record(WorkloadHealth, status=column("health_status", HealthStatus),
                     reason=column("health_reason")),
}
_deployment_page = connection_page(InventoryOrder)


def deployments_field(relation: Relation, description: str) -> Any:
    async def resolve(
        root: Any, info: Info[Context, None], first: int = 50, after: str | None = None,
        filter: DeploymentFilter | None = None, order_by: InventoryOrder | None = None,
    ) -> Connection[Deployment]:
        args = _deployment_page(first, after, filter, order_by)
        return await load_connection(info, relation, root, args, Deployment.from_row)

    return strawberry.field(resolver=resolve, description=description,
                            metadata=spec_metadata(ChildConnection(relation, _deployment_page)))


@strawberry.type
class NamespaceQuota:
    hard: ResourceAmounts
    used: ResourceAmounts
    hard_pods: int | None
    used_pods: int | None


@strawberry.type(description="A namespace, with its owner (team, cost center) and quota.")
class Namespace(Node):
    db_id: strawberry.Private[uuid.UUID]
    cluster_id: strawberry.Private[uuid.UUID]
    uid: str
    name: str
    phase: str | None
    labels: JSON
    annotations: JSON
    team: str | None
    cost_center: str | None
    quota: NamespaceQuota
    usage: ResourceAmounts
    created_at: datetime | None
    deleted_at: datetime | None
    cluster = cluster_field()
    deployments = deployments_field(NAMESPACE_DEPLOYMENTS, "Deployments in this namespace.")
    pods = pods_field(NAMESPACE_PODS, "Pods in this namespace.")
    helm_releases = helm_releases_field(NAMESPACE_HELM_RELEASES, "Helm releases here.")
    metrics = metrics_field("namespace", lambda n: (n.cluster_id, n.name, ""))

    @strawberry.field(description="Cost over the last 30 days (v_k8s_namespace_costs).")
    async def cost(self, info: Info[Context, None]) -> NamespaceCost | None:
        row = await load_namespace_cost(info.context, self.db_id)
        return NamespaceCost.from_row(row) if row is not None else None

    @classmethod
    def from_row(cls, r: Any) -> Namespace:
        return cls(**read_row(NAMESPACE_READERS, r))


NAMESPACE_READERS: RowReaders = {
    "id": lambda r: to_global_id("Namespace", r["id"]), "db_id": column("id"),
    **{name: column(name) for name in (
        "cluster_id", "uid", "name", "phase", "labels", "annotations", "team", "cost_center",
        "created_at", "deleted_at")},
    "quota": record(
        NamespaceQuota,
        hard=ResourceAmounts.columns("quota_hard_cpu_cores", "quota_hard_memory_bytes"),
        used=ResourceAmounts.columns("quota_used_cpu_cores", "quota_used_memory_bytes"),
        hard_pods=column("quota_hard_pods"), used_pods=column("quota_used_pods")),
    "usage": ResourceAmounts.columns("usage_cpu_cores", "usage_memory_bytes"),
}
_namespace_page = connection_page(InventoryOrder)


def namespaces_field(relation: Relation, description: str) -> Any:
    async def resolve(
        root: Any, info: Info[Context, None], first: int = 50, after: str | None = None,
        filter: NamespaceFilter | None = None, order_by: InventoryOrder | None = None,
    ) -> Connection[Namespace]:
        args = _namespace_page(first, after, filter, order_by)
        return await load_connection(info, relation, root, args, Namespace.from_row)

    return strawberry.field(resolver=resolve, description=description,
                            metadata=spec_metadata(ChildConnection(relation, _namespace_page)))
