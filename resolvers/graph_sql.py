"""What the graph reads: each inventory table as an ``Entity`` and each parent→children edge
as a ``Relation``.

A relation names the SQL expression that identifies a child's parent. The paged read in
``resolvers.graph_reads`` partitions by that expression, so one statement serves a whole level
of the tree (all namespaces of all clusters on the page) whatever the number of parents. The
organization-wide relations use the organization itself as the single parent, which is how the
fleet-wide entry points share the same code. Every statement joins ``k8s_clusters`` and filters
on the caller's organization, so no relation can reach another tenant's rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from resolvers.pagination import SortKey


@dataclass(frozen=True)
class Entity:
    """An inventory table, the columns the schema reads from it, and its orders."""

    type_name: str
    table: str
    alias: str
    columns: tuple[str, ...]
    namespaced: bool
    extra_sorts: tuple[tuple[str, str, str], ...] = ()  # (order name, expression, SQL type)

    @cached_property
    def select_list(self) -> str:
        """Every column, aliased. Kept once made: keyed loaders (a pod's ``node``) write
        their statement for every key they are asked, 10,000 times for a big tree."""
        return ", ".join(f"{self.alias}.{c}" for c in self.columns)

    def columns_of(self, wanted: frozenset[str] | None) -> list[str]:
        """The ``wanted`` columns and the id, in table order (all columns for None)."""
        return [c for c in self.columns if wanted is None or c in wanted or c == "id"]

    def select_of(self, wanted: frozenset[str] | None) -> str:
        return ", ".join(f"{self.alias}.{c}" for c in self.columns_of(wanted))

    @property
    def base_from(self) -> str:
        return f"{self.table} {self.alias} JOIN k8s_clusters c ON c.id = {self.alias}.cluster_id"

    def sort_keys(self, order: str, descending: bool) -> list[SortKey]:
        """ORDER BY keys for ``order``; the row id always breaks ties so pages never overlap."""
        a = self.alias
        if order == "CREATED_AT":
            keys = [SortKey(f"COALESCE({a}.created_at, 'epoch'::timestamptz)", "timestamptz",
                            descending)]
        elif order == "NAME":
            keys = [SortKey(f"{a}.namespace", "text", descending)] if self.namespaced else []
            keys.append(SortKey(f"{a}.name", "text", descending))
        else:
            expression, sql_type = next((e, t) for n, e, t in self.extra_sorts if n == order)
            keys = [SortKey(expression, sql_type, descending)]
        return [*keys, SortKey(f"{a}.id", "uuid", descending)]


_COMMON = ("id", "cluster_id", "uid", "name", "labels", "created_at", "deleted_at")

NAMESPACE = Entity(
    "Namespace", "k8s_namespaces", "n",
    (*_COMMON, "phase", "annotations", "team", "cost_center", "quota_hard_cpu_cores",
     "quota_hard_memory_bytes", "quota_hard_pods", "quota_used_cpu_cores",
     "quota_used_memory_bytes", "quota_used_pods", "usage_cpu_cores", "usage_memory_bytes"),
    namespaced=False,
)
NODE = Entity(
    "ClusterNode", "k8s_nodes", "nd",
    (*_COMMON, "taints", "conditions", "ready", "unschedulable", "instance_type", "zone",
     "kubelet_version", "capacity_cpu_cores", "capacity_memory_bytes", "capacity_pods",
     "capacity_ephemeral_storage_bytes", "allocatable_cpu_cores", "allocatable_memory_bytes",
     "allocatable_pods", "allocatable_ephemeral_storage_bytes", "usage_cpu_cores",
     "usage_memory_bytes", "hourly_cost"),
    namespaced=False,
)
DEPLOYMENT = Entity(
    "Deployment", "k8s_deployments", "d",
    (*_COMMON, "namespace", "annotations", "selector", "replicas_desired", "replicas_ready",
     "replicas_available", "replicas_updated", "replicas_unavailable", "strategy",
     "strategy_params", "containers", "conditions", "generation", "observed_generation",
     "health_status", "health_reason"),
    namespaced=True,
)
POD = Entity(
    "Pod", "k8s_pods", "p",
    (*_COMMON, "namespace", "node_name", "owner_kind", "owner_name", "deployment_name", "phase",
     "reason", "qos_class", "pod_ip", "requests_cpu_cores", "requests_memory_bytes",
     "limits_cpu_cores", "limits_memory_bytes", "containers", "restart_count", "oom_kill_count",
     "last_oom_killed_at", "ready", "usage_cpu_cores", "usage_memory_bytes", "start_time",
     "deletion_timestamp"),
    namespaced=True,
    extra_sorts=(("RESTARTS", "p.restart_count", "integer"),),
)
HELM_RELEASE = Entity(
    "HelmRelease", "k8s_helm_releases", "h",
    ("id", "cluster_id", "namespace", "name", "revision", "chart_name", "chart_version",
     "app_version", "status", "description", "first_deployed_at", "last_deployed_at",
     "deleted_at", "values_encrypted", "values_key_id"),
    namespaced=True,
    extra_sorts=(("LAST_DEPLOYED_AT",
                  "COALESCE(h.last_deployed_at, 'epoch'::timestamptz)", "timestamptz"),),
)


@dataclass(frozen=True)
class Relation:
    """Children of one kind under one kind of parent (or under the organization)."""

    name: str
    entity: Entity
    parent: str  # SQL expression: the parent's id for each child row
    join: str = ""

    @property
    def from_sql(self) -> str:
        return f"{self.entity.base_from} {self.join}"


def _born_within_parent(born: str) -> str:
    """Children join by name, and a name can be reused: a namespace deleted and created again
    is two rows. A child belongs to the generation of its parent that was alive when the
    child was created (unknown times match, rather than hide a row)."""
    return (f"AND (par.created_at IS NULL OR {born} IS NULL OR {born} >= par.created_at) "
            f"AND (par.deleted_at IS NULL OR {born} IS NULL OR {born} <= par.deleted_at)")


def _under_namespace(e: Entity) -> Relation:
    a = e.alias
    born = f"{a}.first_deployed_at" if e.table == "k8s_helm_releases" else f"{a}.created_at"
    return Relation(f"namespace.{e.table}", e, "par.id",
                    f"JOIN k8s_namespaces par ON par.cluster_id = {a}.cluster_id "
                    f"AND par.name = {a}.namespace {_born_within_parent(born)}")


def _under_cluster(e: Entity) -> Relation:
    return Relation(f"cluster.{e.table}", e, f"{e.alias}.cluster_id")


def _under_organization(e: Entity) -> Relation:
    return Relation(f"organization.{e.table}", e, "c.organization_id")


CLUSTER_NAMESPACES = _under_cluster(NAMESPACE)
CLUSTER_NODES = _under_cluster(NODE)
CLUSTER_DEPLOYMENTS = _under_cluster(DEPLOYMENT)
CLUSTER_PODS = _under_cluster(POD)
CLUSTER_HELM_RELEASES = _under_cluster(HELM_RELEASE)
NAMESPACE_DEPLOYMENTS = _under_namespace(DEPLOYMENT)
NAMESPACE_PODS = _under_namespace(POD)
NAMESPACE_HELM_RELEASES = _under_namespace(HELM_RELEASE)
DEPLOYMENT_PODS = Relation(
    "deployment.k8s_pods", POD, "par.id",
    "JOIN k8s_deployments par ON par.cluster_id = p.cluster_id AND par.namespace = p.namespace "
    "AND par.name = p.deployment_name " + _born_within_parent("p.created_at"),
)
NODE_PODS = Relation(
    "node.k8s_pods", POD, "par.id",
    "JOIN k8s_nodes par ON par.cluster_id = p.cluster_id AND par.name = p.node_name "
    + _born_within_parent("p.created_at"),
)
FLEET_NAMESPACES = _under_organization(NAMESPACE)
FLEET_DEPLOYMENTS = _under_organization(DEPLOYMENT)
FLEET_PODS = _under_organization(POD)
