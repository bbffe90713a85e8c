"""Enums of the inventory graph (values are the strings stored in the database)."""

from __future__ import annotations

from enum import Enum

import strawberry


@strawberry.enum(description="Pod phase, as Kubernetes reports it.")
class PodPhase(Enum):
    PENDING = "Pending"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    UNKNOWN = "Unknown"

    @classmethod
    def of(cls, value: str | None) -> PodPhase:
        try:
            return cls(value)
        except ValueError:
            return cls.UNKNOWN


@strawberry.enum(description="Which measurement a time series shows.")
class MetricResource(Enum):
    CPU = "CPU"
    MEMORY = "MEMORY"
    NETWORK_RX = "NETWORK_RX"
    NETWORK_TX = "NETWORK_TX"
    STORAGE = "STORAGE"


@strawberry.enum(description="How samples within one bucket become one point. INCREASE is the "
                             "growth of a cumulative counter within the bucket.")
class MetricAggregation(Enum):
    AVG = "AVG"
    MIN = "MIN"
    MAX = "MAX"
    SUM = "SUM"
    INCREASE = "INCREASE"


@strawberry.enum
class InventoryOrderField(Enum):
    NAME = "NAME"
    CREATED_AT = "CREATED_AT"


@strawberry.enum
class PodOrderField(Enum):
    NAME = "NAME"
    CREATED_AT = "CREATED_AT"
    RESTARTS = "RESTARTS"


@strawberry.enum
class HelmReleaseOrderField(Enum):
    NAME = "NAME"
    LAST_DEPLOYED_AT = "LAST_DEPLOYED_AT"
