"""Filter and order inputs of the inventory connections, and their translation to the
resolvers' hashable filter arguments. Each input only offers what applies to its kind."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import strawberry

from resolvers.graph_filters import InventoryFilterArgs
from resolvers.graph_reads import PageArgs
from schema.enums import HealthStatus, OrderDirection
from schema.graph_enums import (
    HelmReleaseOrderField,
    InventoryOrderField,
    PodOrderField,
    PodPhase,
)

_SELECTOR_HELP = "Kubernetes syntax, e.g. `app=web,tier in (a,b),!legacy`."


def _tuple(values: list[Any] | None) -> tuple[Any, ...] | None:
    return tuple(v.value if hasattr(v, "value") else v for v in values) if values else None


@strawberry.input
class NamespaceFilter:
    label_selector: str | None = strawberry.field(default=None, description=_SELECTOR_HELP)
    search: str | None = strawberry.field(default=None, description="Substring of the name.")
    team: list[str] | None = None
    cost_center: list[str] | None = None
    phase: list[str] | None = strawberry.field(default=None, description="Active, Terminating.")
    include_deleted: bool = False

    def to_args(self) -> InventoryFilterArgs:
        return InventoryFilterArgs(
            label_selector=self.label_selector, search=self.search, team=_tuple(self.team),
            cost_center=_tuple(self.cost_center), status=_tuple(self.phase),
            include_deleted=self.include_deleted,
        )


@strawberry.input
class NodeFilter:
    label_selector: str | None = strawberry.field(default=None, description=_SELECTOR_HELP)
    search: str | None = None
    ready: bool | None = None
    include_deleted: bool = False

    def to_args(self) -> InventoryFilterArgs:
        return InventoryFilterArgs(label_selector=self.label_selector, search=self.search,
                                   ready=self.ready, include_deleted=self.include_deleted)


@strawberry.input
class DeploymentFilter:
    label_selector: str | None = strawberry.field(default=None, description=_SELECTOR_HELP)
    search: str | None = None
    namespace: list[str] | None = None
    team: list[str] | None = None
    cost_center: list[str] | None = None
    health: list[HealthStatus] | None = None
    include_deleted: bool = False

    def to_args(self) -> InventoryFilterArgs:
        return InventoryFilterArgs(
            label_selector=self.label_selector, search=self.search,
            namespace=_tuple(self.namespace), team=_tuple(self.team),
            cost_center=_tuple(self.cost_center), status=_tuple(self.health),
            include_deleted=self.include_deleted,
        )


@strawberry.input
class PodFilter:
    label_selector: str | None = strawberry.field(default=None, description=_SELECTOR_HELP)
    search: str | None = None
    namespace: list[str] | None = None
    team: list[str] | None = None
    cost_center: list[str] | None = None
    phase: list[PodPhase] | None = None
    node: str | None = strawberry.field(default=None, description="Node name.")
    deployment: str | None = strawberry.field(default=None, description="Deployment name.")
    restarts_greater_than: int | None = None
    oom_killed_since: datetime | None = None
    include_deleted: bool = strawberry.field(
        default=False, description="Also pods that no longer exist (history).")

    def to_args(self) -> InventoryFilterArgs:
        return InventoryFilterArgs(
            label_selector=self.label_selector, search=self.search,
            namespace=_tuple(self.namespace), team=_tuple(self.team),
            cost_center=_tuple(self.cost_center), phase=_tuple(self.phase), node=self.node,
            deployment=self.deployment, restarts_greater_than=self.restarts_greater_than,
            oom_killed_since=self.oom_killed_since, include_deleted=self.include_deleted,
        )


@strawberry.input
class HelmReleaseFilter:
    search: str | None = None
    namespace: list[str] | None = None
    status: list[str] | None = strawberry.field(default=None, description="deployed, failed…")
    include_deleted: bool = False

    def to_args(self) -> InventoryFilterArgs:
        return InventoryFilterArgs(search=self.search, namespace=_tuple(self.namespace),
                                   status=_tuple(self.status),
                                   include_deleted=self.include_deleted)


@strawberry.input
class InventoryOrder:
    field: InventoryOrderField = InventoryOrderField.NAME
    direction: OrderDirection = OrderDirection.ASC


@strawberry.input
class PodOrder:
    field: PodOrderField = PodOrderField.NAME
    direction: OrderDirection = OrderDirection.ASC


@strawberry.input
class HelmReleaseOrder:
    field: HelmReleaseOrderField = HelmReleaseOrderField.NAME
    direction: OrderDirection = OrderDirection.ASC


def page_args(first: int, after: str | None, filter: Any, order: Any) -> PageArgs:
    """Connection arguments in the form the loaders key on."""
    return PageArgs(first=first, after=after, order=order.field.value,
                    descending=order.direction is OrderDirection.DESC,
                    filter=filter.to_args() if filter is not None else None)


def connection_page(default_order: Callable[[], Any]) -> Callable[..., PageArgs]:
    """A connection field's arguments → ``PageArgs``, with ``default_order`` when none is
    given. The resolver and the planned path both call it, so they page alike."""

    def to_page(first: int = 50, after: str | None = None, filter: Any = None,
                order_by: Any = None) -> PageArgs:
        return page_args(first, after, filter, order_by or default_order())

    return to_page
