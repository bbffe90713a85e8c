"""The two NOTIFY channels FleetGraph uses, and the exact payloads on them.

PostgreSQL is the only coordinator between replicas, so change fan-out rides on LISTEN/NOTIFY:
the replica that syncs a cluster writes, and every replica's GraphQL subscriptions hear it.

``fleetgraph_changes`` (sent by the sync engine, inside each flush's transaction, so a listener
never hears of a change it cannot yet read; at most one per flush)::

    {"cluster_id": "<uuid>", "organization_id": "<uuid>",
     "kinds": ["deployments", "pods"],          # tables that changed, sorted; may be []
     "health_changed": true,                    # the cluster's health_status changed
     "health_status": "degraded"}               # the cluster's health_status after the flush

``kinds`` uses the names ``namespaces``, ``nodes``, ``deployments``, ``replicasets``, ``pods``,
``resourcequotas`` (the namespace quota columns), ``helmreleases``, ``persistentvolumeclaims``,
``persistentvolumes``, ``metrics`` (usage columns
and k8s_resource_metrics rows) and ``cluster`` (status/error/version columns of k8s_clusters).

``fleetgraph_registry`` (sent by the API on register/update/rotate/delete/triggerSync, heard
by every replica's supervisor so a cluster is picked up without a restart)::

    {"cluster_id": "<uuid>", "action": "registered|updated|rotated|deleted|resync"}
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

import asyncpg
import orjson

__all__ = [
    "CHANGES_CHANNEL",
    "REGISTRY_ACTIONS",
    "REGISTRY_CHANNEL",
    "changes_payload",
    "notify_changes",
    "notify_registry",
]

CHANGES_CHANNEL = "fleetgraph_changes"
REGISTRY_CHANNEL = "fleetgraph_registry"
REGISTRY_ACTIONS = frozenset({"registered", "updated", "rotated", "deleted", "resync"})


def changes_payload(
    *,
    cluster_id: uuid.UUID,
    organization_id: uuid.UUID,
    kinds: Iterable[str],
    health_changed: bool,
    health_status: str | None,
) -> str:
    body: dict[str, Any] = {
        "cluster_id": str(cluster_id),
        "organization_id": str(organization_id),
        "kinds": sorted(set(kinds)),
        "health_changed": health_changed,
        "health_status": health_status,
    }
    return orjson.dumps(body).decode()


async def notify_changes(
    conn: asyncpg.Connection,
    *,
    cluster_id: uuid.UUID,
    organization_id: uuid.UUID,
    kinds: Iterable[str],
    health_changed: bool = False,
    health_status: str | None = None,
) -> None:
    payload = changes_payload(
        cluster_id=cluster_id,
        organization_id=organization_id,
        kinds=kinds,
        health_changed=health_changed,
        health_status=health_status,
    )
    await conn.execute("SELECT pg_notify($1, $2)", CHANGES_CHANNEL, payload)


async def notify_registry(conn: asyncpg.Connection, *, cluster_id: uuid.UUID, action: str) -> None:
    if action not in REGISTRY_ACTIONS:
        raise ValueError(f"unknown registry action {action!r}")
    payload = orjson.dumps({"cluster_id": str(cluster_id), "action": action}).decode()
    await conn.execute("SELECT pg_notify($1, $2)", REGISTRY_CHANNEL, payload)
