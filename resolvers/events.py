"""Live events for subscriptions: what a change notice means, computed once per notice.

The sync engine sends ``NOTIFY fleetgraph_changes`` after each flush (payload documented in
``sync/notify.py``). The process-wide hub (``app.events.ChangeHub``) hears it on one connection
and calls ``compute_events`` once per notice, only for the topics someone is subscribed to,
with a single statement however many subscribers there are; the resulting immutable events are
shared by every subscriber allowed to see them.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Protocol, TypeVar

import asyncpg
import orjson

from resolvers.context import Context
from resolvers.errors import ApiError, NotFound

T = TypeVar("T")

CHANGES_CHANNEL = "fleetgraph_changes"  # sync/notify.py owns the payload's definition
BUDGET_ALERTS_CHANNEL = "fleetgraph_budget_alerts"  # cost/budgets.py owns the payload
CLUSTER_HEALTH = "clusterHealth"
SYNC_STATUS = "syncStatus"
BUDGET_ALERTS = "budgetAlerts"

_EVENT_SQL = """
SELECT h.*, c.health_changed_at, c.sync_progress, c.last_sync_error
  FROM v_k8s_cluster_health h JOIN k8s_clusters c ON c.id = h.cluster_id
 WHERE h.cluster_id = $1"""


@dataclass(frozen=True)
class ChangeNotice:
    cluster_id: uuid.UUID
    organization_id: uuid.UUID
    kinds: tuple[str, ...]
    health_changed: bool

    @classmethod
    def parse(cls, payload: str) -> ChangeNotice | None:
        """The notice in a NOTIFY payload, or None for one we cannot read (never raises)."""
        try:
            body = orjson.loads(payload)
            return cls(
                cluster_id=uuid.UUID(body["cluster_id"]),
                organization_id=uuid.UUID(body["organization_id"]),
                kinds=tuple(str(k) for k in body.get("kinds") or ()),
                health_changed=bool(body.get("health_changed")),
            )
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
            return None

    def topics(self) -> set[str]:
        """What this notice can change for subscribers."""
        return {SYNC_STATUS, CLUSTER_HEALTH} if self.health_changed else {SYNC_STATUS}


@dataclass(frozen=True)
class ClusterEvent:
    """One computed event, shared read-only by every subscriber it is delivered to.

    ``derived`` holds what is built from the event once for all of them: the GraphQL payload
    object, so every subscriber's execution starts from the same root value, and the answers
    computed from that payload live on it (``schema.shared_results``) and die with the event.
    """

    topic: str
    cluster_id: uuid.UUID | None
    organization_id: uuid.UUID
    row: Mapping[str, Any]
    kinds: tuple[str, ...] = ()
    derived: dict[Any, Any] = field(default_factory=dict, compare=False, repr=False)

    def shared(self, key: Any, build: Callable[[], T]) -> T:
        """``build()`` once per event and key; later callers get the same object."""
        found: T | None = self.derived.get(key)
        if found is None:
            found = self.derived[key] = build()
        return found


def _events(row: asyncpg.Record, topics: set[str], kinds: tuple[str, ...]) -> list[ClusterEvent]:
    frozen = MappingProxyType(dict(row.items()))
    return [ClusterEvent(topic, row["cluster_id"], row["organization_id"], frozen, kinds)
            for topic in sorted(topics)]


async def compute_events(
    pool: asyncpg.Pool, notice: ChangeNotice, topics: set[str]
) -> list[ClusterEvent]:
    """The events ``notice`` produces for ``topics``: one statement, whatever the audience.

    The organization comes from the row, not from the payload, so a notice can never route a
    cluster's figures to another tenant.
    """
    row = await pool.fetchrow(_EVENT_SQL, notice.cluster_id)
    return _events(row, topics, notice.kinds) if row is not None else []


async def budget_alert_event(pool: asyncpg.Pool, payload: str) -> ClusterEvent | None:
    """The event of one budget-alert notice, with its organization read from the budget row
    (never trusted from the payload); None for a notice we cannot read or whose budget is gone.
    """
    try:
        body = orjson.loads(payload)
        budget_id = uuid.UUID(body["budget_id"])
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
        return None
    row = await pool.fetchrow(
        "SELECT organization_id, cluster_id FROM k8s_budgets WHERE id = $1", budget_id
    )
    if row is None:
        return None
    return ClusterEvent(BUDGET_ALERTS, row["cluster_id"], row["organization_id"],
                        MappingProxyType(body))


class ExpressDelivery(Protocol):
    """A subscriber's way to receive an event without its own task (``schema.express``):
    True if the event was delivered, False to have it queued for the task as usual."""

    def deliver(self, event: ClusterEvent) -> bool: ...


class EventSource(Protocol):
    """What the subscription resolvers need from the hub (``app.events.ChangeHub``)."""

    def subscribe(
        self, *, organization_id: uuid.UUID, topic: str, cluster_id: uuid.UUID | None,
        token_id: uuid.UUID | None = None, express: ExpressDelivery | None = None,
    ) -> contextlib.AbstractAsyncContextManager[AsyncIterator[ClusterEvent]]: ...


class SubscriberDropped(ApiError):
    code = "SUBSCRIBER_TOO_SLOW"


class TokenRevoked(ApiError):
    code = "UNAUTHENTICATED"


class EventsUnavailable(ApiError):
    code = "UNAVAILABLE"


async def stream(
    ctx: Context, *, topic: str, cluster_id: uuid.UUID | None, snapshot: bool = False,
    express: ExpressDelivery | None = None,
) -> AsyncIterator[ClusterEvent]:
    """The caller's events on ``topic`` (for one cluster, or all of its clusters).

    With ``snapshot``, the cluster's current state comes first, so a progress view does not
    wait for the next change to draw itself. With ``express``, the hub may deliver an event
    through it instead of through this stream (only while the stream waits for one).
    """
    principal = ctx.require()
    hub: EventSource | None = ctx.services.get("events")
    if hub is None:
        raise EventsUnavailable("live events are not available on this server")
    async with hub.subscribe(organization_id=principal.organization_id, topic=topic,
                             cluster_id=cluster_id, token_id=principal.token_id,
                             express=express) as events:
        if cluster_id is not None:
            row = await ctx.pool.fetchrow(_EVENT_SQL + " AND h.organization_id = $2",
                                          cluster_id, principal.organization_id)
            if row is None:
                raise NotFound("cluster not found")
            if snapshot:
                for event in _events(row, {topic}, ()):
                    yield event
        async for event in events:
            yield event
