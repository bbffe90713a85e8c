"""Enums shared by the schema's types and inputs (values map to the lowercase DB strings)."""

from __future__ import annotations

from enum import Enum

import strawberry


@strawberry.enum(description="Where a cluster runs.")
class ClusterProvider(Enum):
    EKS = "eks"
    GKE = "gke"
    AKS = "aks"
    K3S = "k3s"
    VANILLA = "vanilla"


@strawberry.enum(description=(
    "Sync state of a cluster: PENDING (its sync is starting: kinds not all listed and watched "
    "yet), ACTIVE (every kind listed and watching), DEGRADED (the API server answers, but with "
    "errors (5xx) or throttling (429); lastSyncError says which and for which kinds), "
    "UNREACHABLE (no connection, a timeout, credentials refused, or not a Kubernetes API), "
    "DISABLED."))
class ClusterStatus(Enum):
    PENDING = "pending"
    ACTIVE = "active"
    DEGRADED = "degraded"
    UNREACHABLE = "unreachable"
    DISABLED = "disabled"


@strawberry.enum(description="Health, worst first: CRITICAL > UNREACHABLE > DEGRADED > HEALTHY.")
class HealthStatus(Enum):
    HEALTHY = "healthy"
    DEGRADED = "degraded"
    CRITICAL = "critical"
    UNREACHABLE = "unreachable"
    UNKNOWN = "unknown"


@strawberry.enum
class Role(Enum):
    VIEWER = "viewer"
    OPERATOR = "operator"
    ADMIN = "admin"


@strawberry.enum
class OrderDirection(Enum):
    ASC = "asc"
    DESC = "desc"


@strawberry.enum
class ClusterOrderField(Enum):
    NAME = "NAME"
    CREATED_AT = "CREATED_AT"
    STATUS = "STATUS"
    HEALTH = "HEALTH"
    LAST_SYNCED_AT = "LAST_SYNCED_AT"
