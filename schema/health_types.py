"""Health and cost figures read from the views (``v_k8s_cluster_health``,
``v_k8s_namespace_costs``), shared by queries and the ``clusterHealth`` subscription."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

import strawberry

from resolvers.fleet_health import FleetHealthFigures
from schema.enums import HealthStatus
from schema.relay import to_global_id
from schema.scalars import Long, money, number


@strawberry.type(description="A cluster's health verdict and the figures behind it.")
class ClusterHealth:
    cluster_id: strawberry.ID
    status: HealthStatus
    reason: str | None
    last_synced_at: datetime | None
    nodes_total: int
    nodes_ready: int
    deployments_total: int
    deployments_healthy: int
    pods_total: int
    pods_running: int
    pods_pending: int
    pods_succeeded: int
    pods_failed: int
    pods_unknown: int
    restarts_24h: int
    oom_kills_24h: int
    cpu_capacity_cores: float
    cpu_usage_cores: float
    cpu_requests_cores: float
    memory_capacity_bytes: Long
    memory_usage_bytes: Long
    memory_requests_bytes: Long

    @classmethod
    def from_row(cls, r: Any) -> ClusterHealth:
        """From a ``v_k8s_cluster_health`` row (a Record or a plain mapping)."""
        return cls(
            cluster_id=to_global_id("Cluster", r["cluster_id"]),
            status=HealthStatus(r["health_status"]), reason=r["health_reason"],
            last_synced_at=r["last_synced_at"],
            nodes_total=r["nodes_total"], nodes_ready=r["nodes_ready"],
            deployments_total=r["deployments_total"],
            deployments_healthy=r["deployments_healthy"], pods_total=r["pods_total"],
            pods_running=r["pods_running"], pods_pending=r["pods_pending"],
            pods_succeeded=r["pods_succeeded"], pods_failed=r["pods_failed"],
            pods_unknown=r["pods_unknown"], restarts_24h=int(r["restarts_24h"]),
            oom_kills_24h=int(r["oom_kills_24h"]),
            cpu_capacity_cores=number(r["cpu_capacity_cores"]) or 0.0,
            cpu_usage_cores=number(r["cpu_usage_cores"]) or 0.0,
            cpu_requests_cores=number(r["cpu_requests_cores"]) or 0.0,
            memory_capacity_bytes=Long(int(r["memory_capacity_bytes"])),
            memory_usage_bytes=Long(int(r["memory_usage_bytes"])),
            memory_requests_bytes=Long(int(r["memory_requests_bytes"])),
        )


@strawberry.type(description="What a cluster costs: the node-price estimate from the health "
                             "view and the cost engine's latest figures.")
class ClusterCost:
    estimated_hourly_cost: Decimal
    estimated_monthly_cost: Decimal
    last_hour: Decimal | None = strawberry.field(description="The latest final hour's total.")
    month_to_date: Decimal | None = strawberry.field(description="This UTC month's final hours.")


@strawberry.type(description="A namespace's cost over the last 30 days (daily rollups).")
class NamespaceCost:
    total_cost_30d: Decimal
    cpu_cost_30d: Decimal
    memory_cost_30d: Decimal
    storage_cost_30d: Decimal
    network_cost_30d: Decimal
    avg_daily_cost: Decimal
    days_with_cost: int

    @classmethod
    def from_row(cls, r: Any) -> NamespaceCost:
        return cls(
            total_cost_30d=money(r["total_cost_30d"]), cpu_cost_30d=money(r["cpu_cost_30d"]),
            memory_cost_30d=money(r["memory_cost_30d"]),
            storage_cost_30d=money(r["storage_cost_30d"]),
            network_cost_30d=money(r["network_cost_30d"]),
            avg_daily_cost=money(r["avg_daily_cost"]), days_with_cost=r["days_with_cost"],
        )



@strawberry.type
class HealthStateCount:
    status: HealthStatus
    clusters: int


@strawberry.type(description="The caller's whole fleet at a glance.")
class FleetHealth:
    clusters_total: int
    by_state: list[HealthStateCount]
    nodes_total: int
    nodes_ready: int
    deployments_total: int
    deployments_healthy: int
    pods_total: int
    pods_running: int
    pods_pending: int
    pods_failed: int
    restarts_24h: int
    oom_kills_24h: int

    @classmethod
    def of(cls, f: FleetHealthFigures) -> FleetHealth:
        return cls(
            clusters_total=f.clusters_total,
            by_state=[HealthStateCount(status=HealthStatus(s), clusters=n)
                      for s, n in f.by_state.items()],
            **f.totals,
        )


