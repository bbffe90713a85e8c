"""``Pod`` and ``ClusterNode`` (named so it cannot be confused with Relay's ``Node``).

They sit together because each points at the other: a pod runs on a node, a node lists its
pods. The ``pods_field``/``nodes_field`` factories give every parent the same arguments.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

import strawberry
from strawberry.scalars import JSON
from strawberry.types import Info

from resolvers.context import Context
from resolvers.graph_reads import load_node_by_name
from resolvers.graph_sql import NODE_PODS, Relation
from resolvers.inventory.spec import (
    ChildConnection,
    Composite,
    RowReaders,
    column,
    read_row,
    record,
    spec_metadata,
)
from schema.filters import InventoryOrder, NodeFilter, PodFilter, PodOrder, connection_page
from schema.graph_enums import PodPhase
from schema.graph_fields import cluster_field, load_connection
from schema.metric_types import metrics_field
from schema.relay import Connection, Node, to_global_id
from schema.scalars import Long, money, number


@strawberry.type(description="CPU in cores and memory in bytes.")
class ResourceAmounts:
    cpu_cores: float | None
    memory_bytes: Long | None

    @classmethod
    def of(cls, cpu: Any, memory: Any) -> ResourceAmounts:
        return cls(cpu_cores=number(cpu), memory_bytes=_long(memory))

    @classmethod
    def columns(cls, cpu: str, memory: str) -> Composite:
        """Read from a row's ``cpu`` and ``memory`` columns."""
        return record(cls, cpu_cores=column(cpu, number), memory_bytes=column(memory, _long))


def _long(value: Any) -> Long | None:
    return None if value is None else Long(int(value))


@strawberry.type(description="One container of a pod: its image, resources and what it went "
                             "through (kube-state-metrics' container signals).")
class PodContainer:
    name: str
    image: str | None
    ready: bool
    state: str | None
    restart_count: int
    waiting_reason: str | None
    terminated_reason: str | None
    last_terminated_reason: str | None
    last_terminated_at: str | None
    last_oom_killed_at: str | None
    oom_kills: int
    requests: ResourceAmounts
    limits: ResourceAmounts

    @classmethod
    def of(cls, c: dict[str, Any]) -> PodContainer:
        requests, limits = c.get("requests") or {}, c.get("limits") or {}
        return cls(
            name=str(c.get("name") or ""), image=c.get("image"), ready=bool(c.get("ready")),
            state=c.get("state"), restart_count=int(c.get("restartCount") or 0),
            waiting_reason=c.get("waitingReason"), terminated_reason=c.get("terminatedReason"),
            last_terminated_reason=c.get("lastTerminatedReason"),
            last_terminated_at=c.get("lastTerminatedAt"),
            last_oom_killed_at=c.get("lastOOMKilledAt"), oom_kills=int(c.get("oomKills") or 0),
            requests=ResourceAmounts.of(requests.get("cpu"), requests.get("memory")),
            limits=ResourceAmounts.of(limits.get("cpu"), limits.get("memory")),
        )


@strawberry.type(description="A pod; deleted pods keep their row (see `includeDeleted`).")
class Pod(Node):
    db_id: strawberry.Private[uuid.UUID]
    cluster_id: strawberry.Private[uuid.UUID]
    raw_containers: strawberry.Private[list[Any]]
    uid: str
    namespace: str
    name: str
    node_name: str | None
    owner_kind: str | None
    owner_name: str | None
    deployment_name: str | None
    labels: JSON
    phase: PodPhase
    reason: str | None
    qos_class: str | None
    pod_ip: str | None
    requests: ResourceAmounts
    limits: ResourceAmounts
    usage: ResourceAmounts
    restart_count: int
    oom_kill_count: int
    last_oom_killed_at: datetime | None
    ready: bool
    start_time: datetime | None
    deletion_timestamp: datetime | None
    created_at: datetime
    deleted_at: datetime | None
    cluster = cluster_field()
    metrics = metrics_field("pod", lambda p: (p.cluster_id, p.namespace, p.name))

    @strawberry.field
    def containers(self) -> list[PodContainer]:
        return [PodContainer.of(c) for c in self.raw_containers if isinstance(c, dict)]

    @strawberry.field(description="The node the pod is scheduled on, if it still exists.")
    async def node(self, info: Info[Context, None]) -> ClusterNode | None:
        if self.node_name is None:
            return None
        row = await load_node_by_name(info.context, self.cluster_id, self.node_name)
        return ClusterNode.from_row(row) if row is not None else None

    @classmethod
    def from_row(cls, r: Any) -> Pod:
        return cls(**read_row(POD_READERS, r))


POD_READERS: RowReaders = {
    "id": lambda r: to_global_id("Pod", r["id"]), "db_id": column("id"),
    "cluster_id": column("cluster_id"), "raw_containers": lambda r: r["containers"] or [],
    **{name: column(name) for name in (
        "uid", "namespace", "name", "node_name", "owner_kind", "owner_name", "deployment_name",
        "labels", "reason", "qos_class", "pod_ip", "restart_count", "oom_kill_count",
        "last_oom_killed_at", "ready", "start_time", "deletion_timestamp", "created_at",
        "deleted_at")},
    "phase": column("phase", PodPhase.of),
    "requests": ResourceAmounts.columns("requests_cpu_cores", "requests_memory_bytes"),
    "limits": ResourceAmounts.columns("limits_cpu_cores", "limits_memory_bytes"),
    "usage": ResourceAmounts.columns("usage_cpu_cores", "usage_memory_bytes"),
}


_pod_page = connection_page(PodOrder)


def pods_field(relation: Relation, description: str) -> Any:
    async def resolve(
        root: Any, info: Info[Context, None], first: int = 50, after: str | None = None,
        filter: PodFilter | None = None, order_by: PodOrder | None = None,
    ) -> Connection[Pod]:
        args = _pod_page(first, after, filter, order_by)
        return await load_connection(info, relation, root, args, Pod.from_row)

    return strawberry.field(resolver=resolve, description=description,
                            metadata=spec_metadata(ChildConnection(relation, _pod_page)))


@strawberry.type(description="Capacity or allocatable resources of a node.")
class NodeResources:
    cpu_cores: float | None
    memory_bytes: Long | None
    pods: int | None
    ephemeral_storage_bytes: Long | None

    @classmethod
    def of(cls, r: Any, prefix: str) -> NodeResources:
        return cls(cpu_cores=number(r[f"{prefix}_cpu_cores"]),
                   memory_bytes=r[f"{prefix}_memory_bytes"], pods=r[f"{prefix}_pods"],
                   ephemeral_storage_bytes=r[f"{prefix}_ephemeral_storage_bytes"])


@strawberry.type(description="A Kubernetes node of a cluster.")
class ClusterNode(Node):
    db_id: strawberry.Private[uuid.UUID]
    cluster_id: strawberry.Private[uuid.UUID]
    uid: str
    name: str
    labels: JSON
    taints: JSON
    conditions: JSON
    ready: bool
    unschedulable: bool
    instance_type: str | None
    zone: str | None
    kubelet_version: str | None
    capacity: NodeResources
    allocatable: NodeResources
    usage: ResourceAmounts
    hourly_cost: Decimal | None
    created_at: datetime | None
    deleted_at: datetime | None
    cluster = cluster_field()
    pods = pods_field(NODE_PODS, "Pods scheduled on this node.")
    metrics = metrics_field("node", lambda n: (n.cluster_id, "", n.name))

    @classmethod
    def from_row(cls, r: Any) -> ClusterNode:
        return cls(**read_row(NODE_READERS, r))


NODE_READERS: RowReaders = {
    "id": lambda r: to_global_id("ClusterNode", r["id"]), "db_id": column("id"),
    **{name: column(name) for name in (
        "cluster_id", "uid", "name", "labels", "taints", "conditions", "ready",
        "unschedulable", "instance_type", "zone", "kubelet_version", "created_at",
        "deleted_at")},
    "capacity": lambda r: NodeResources.of(r, "capacity"),
    "allocatable": lambda r: NodeResources.of(r, "allocatable"),
    "usage": ResourceAmounts.columns("usage_cpu_cores", "usage_memory_bytes"),
    "hourly_cost": lambda r: money(r["hourly_cost"]),
}


_node_page = connection_page(InventoryOrder)


def nodes_field(relation: Relation, description: str) -> Any:
    async def resolve(
        root: Any, info: Info[Context, None], first: int = 50, after: str | None = None,
        filter: NodeFilter | None = None, order_by: InventoryOrder | None = None,
    ) -> Connection[ClusterNode]:
        args = _node_page(first, after, filter, order_by)
        return await load_connection(info, relation, root, args, ClusterNode.from_row)

    return strawberry.field(resolver=resolve, description=description,
                            metadata=spec_metadata(ChildConnection(relation, _node_page)))
