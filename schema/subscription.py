"""Root subscription fields (graphql-transport-ws on ``/graphql``), fed by the LISTEN hub.

Subscribers never query the database per event: the hub computes each event once, one
payload object is built from it for all subscribers (``ClusterEvent.shared``), and the
payload carries the answers computed from it, so subscribers with the same operation,
variables, organization and role share one execution and one serialisation of each event
(``schema.shared_results``).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Mapping
from dataclasses import field
from datetime import datetime
from functools import partial
from typing import Any, cast

import strawberry
from strawberry.scalars import JSON
from strawberry.types import Info

from resolvers import events
from resolvers.context import Context
from schema.cost_types import CostSubscription
from schema.enums import ClusterStatus, HealthStatus
from schema.express import express_route
from schema.health_types import ClusterHealth
from schema.relay import expect_global_id, to_global_id
from schema.shared_results import SharedResults


def _shared_results() -> Any:
    """Not part of the API: the answers computed from a payload, which live and die with it
    (a field of its own per class: dataclasses write the field's name and type into it)."""
    return field(default_factory=SharedResults, compare=False, repr=False)


@strawberry.type(description="A cluster's health changed: the new state, why, and the figures.")
class ClusterHealthChange:
    cluster_id: strawberry.ID
    cluster_name: str
    status: HealthStatus
    reason: str | None
    changed_at: datetime | None
    figures: ClusterHealth
    shared_results: strawberry.Private[SharedResults] = _shared_results()

    @classmethod
    def of(cls, event: events.ClusterEvent) -> ClusterHealthChange:
        row = event.row
        return cls(cluster_id=to_global_id("Cluster", row["cluster_id"]),
                   cluster_name=row["name"], status=HealthStatus(row["health_status"]),
                   reason=row["health_reason"], changed_at=row["health_changed_at"],
                   figures=ClusterHealth.from_row(row))


@strawberry.type(description="Sync progress of one kind (the initial list, then watching).")
class KindSyncProgress:
    kind: str
    state: str | None
    items: int | None
    detail: JSON


def _progress(raw: Mapping[str, Any] | None) -> list[KindSyncProgress]:
    """Tolerant reading of ``k8s_clusters.sync_progress`` ({kind: {state, items, ...}})."""
    out = []
    for kind, value in sorted((raw or {}).items()):
        detail = value if isinstance(value, dict) else {"state": value}
        state = detail.get("state") or detail.get("phase")
        items = detail.get("items", detail.get("listed"))
        out.append(KindSyncProgress(kind=kind, state=None if state is None else str(state),
                                    items=items if isinstance(items, int) else None,
                                    detail=cast(JSON, detail)))
    return out


@strawberry.type(description="Where a cluster's sync stands.")
class SyncStatus:
    cluster_id: strawberry.ID
    status: ClusterStatus
    last_synced_at: datetime | None
    last_sync_error: str | None
    kinds: list[KindSyncProgress]
    changed_kinds: list[str] = strawberry.field(description="Kinds the last flush changed.")
    shared_results: strawberry.Private[SharedResults] = _shared_results()

    @classmethod
    def of(cls, event: events.ClusterEvent) -> SyncStatus:
        row = event.row
        return cls(cluster_id=to_global_id("Cluster", row["cluster_id"]),
                   status=ClusterStatus(row["status"]), last_synced_at=row["last_synced_at"],
                   last_sync_error=row["last_sync_error"],
                   kinds=_progress(row["sync_progress"]), changed_kinds=list(event.kinds))


@strawberry.type
class Subscription(CostSubscription):
    @strawberry.subscription(description="Each health change of the caller's clusters (or of "
                                         "one cluster).")
    async def cluster_health(
        self, info: Info[Context, None], cluster_id: strawberry.ID | None = None
    ) -> AsyncGenerator[ClusterHealthChange, None]:
        cid = expect_global_id(cluster_id, "Cluster", field="clusterId") if cluster_id else None
        async for event in events.stream(info.context, topic=events.CLUSTER_HEALTH,
                                         cluster_id=cid,
                                         express=express_route(info, _health_change)):
            yield _health_change(event)

    @strawberry.subscription(description="A cluster's sync progress per kind and last sync "
                                         "time: the current state first, then every change.")
    async def sync_status(
        self, info: Info[Context, None], cluster_id: strawberry.ID
    ) -> AsyncGenerator[SyncStatus, None]:
        cid = expect_global_id(cluster_id, "Cluster", field="clusterId")
        async for event in events.stream(info.context, topic=events.SYNC_STATUS,
                                         cluster_id=cid, snapshot=True,
                                         express=express_route(info, _sync_status)):
            yield _sync_status(event)


def _health_change(event: events.ClusterEvent) -> ClusterHealthChange:
    """The event's one payload object, for every subscriber and both delivery paths."""
    return event.shared(ClusterHealthChange, partial(ClusterHealthChange.of, event))


def _sync_status(event: events.ClusterEvent) -> SyncStatus:
    return event.shared(SyncStatus, partial(SyncStatus.of, event))
