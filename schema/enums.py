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


@strawberry.enum(description="Registry state of a cluster.")
class ClusterStatus(Enum):
    PENDING = "pending"
    ACTIVE = "active"
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
