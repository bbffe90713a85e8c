"""Live health and sync status over graphql-transport-ws, fed by NOTIFY through the hub."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import Any

import orjson

from tests.api import Tenant
from tests.graph import rows
from tests.graph.ws import change_health, next_payload, open_subscription, until_live

HEALTH = """subscription($id: ID) { clusterHealth(clusterId: $id) {
    clusterId clusterName status reason figures { podsTotal nodesTotal status } } }"""
SYNC = """subscription($id: ID!) { syncStatus(clusterId: $id) {
    clusterId status lastSyncedAt kinds { kind state items } changedKinds } }"""


def _gid(cluster_id: uuid.UUID) -> str:
    from schema.relay import to_global_id

    return str(to_global_id("Cluster", cluster_id))


async def _cluster(api: Any, tenant: Tenant, name: str) -> uuid.UUID:
    async with api.pool.acquire() as conn:
        cid = await rows.cluster(conn, tenant.org_id, name)
        await rows.pod(conn, cid, "default", "web-1")
    return cid


async def test_health_change_arrives_within_two_seconds_and_other_tenants_hear_nothing(
    api: Any, tenant: Tenant, other: Tenant
) -> None:
    mine = await _cluster(api, tenant, "live")
    theirs = await _cluster(api, other, "live")
    ws = await open_subscription(api.ws_url, tenant.tokens["viewer"], HEALTH)
    spy = await open_subscription(api.ws_url, other.tokens["admin"], HEALTH)
    try:
        async def poke_mine() -> None:
            await change_health(api.pool, mine, tenant.org_id, "degraded", "warming up")

        await until_live(ws, poke_mine)
        started = time.monotonic()
        await change_health(api.pool, mine, tenant.org_id, "critical", "2/3 nodes NotReady")
        event = (await next_payload(ws, wait=2.0))["data"]["clusterHealth"]
        assert time.monotonic() - started < 2.0
        assert event == {"clusterId": _gid(mine), "clusterName": "live", "status": "CRITICAL",
                         "reason": "2/3 nodes NotReady",
                         "figures": {"podsTotal": 1, "nodesTotal": 0, "status": "CRITICAL"}}

        # The other tenant's subscriber is live (it hears its own cluster) but heard none of
        # the events above.
        async def poke_theirs() -> None:
            await change_health(api.pool, theirs, other.org_id, "healthy", "fine")

        seen = await until_live(spy, poke_theirs)
        assert seen["data"]["clusterHealth"]["clusterId"] == _gid(theirs)
    finally:
        await ws.close()
        await spy.close()


async def test_sync_status_starts_with_the_current_state(api: Any, tenant: Tenant) -> None:
    cid = await _cluster(api, tenant, "syncing")
    await api.pool.execute(
        """UPDATE k8s_clusters SET sync_progress = '{"pods": {"state": "listing", "items": 120},
           "nodes": {"state": "watching", "items": 3}}', status = 'active' WHERE id = $1""", cid)
    ws = await open_subscription(api.ws_url, tenant.tokens["viewer"], SYNC, {"id": _gid(cid)})
    try:
        first = (await next_payload(ws))["data"]["syncStatus"]
        assert first["status"] == "ACTIVE" and first["changedKinds"] == []
        assert first["kinds"] == [{"kind": "nodes", "state": "watching", "items": 3},
                                  {"kind": "pods", "state": "listing", "items": 120}]
        await change_health(api.pool, cid, tenant.org_id, "healthy", "ok")
        second = (await next_payload(ws))["data"]["syncStatus"]
        assert second["changedKinds"] == ["pods"]
    finally:
        await ws.close()


async def test_another_tenants_cluster_id_is_not_found(
    api: Any, tenant: Tenant, other: Tenant
) -> None:
    theirs = await _cluster(api, other, "private")
    ws = await open_subscription(api.ws_url, tenant.tokens["admin"], SYNC, {"id": _gid(theirs)})
    try:
        payload = await next_payload(ws)
        errors = payload if isinstance(payload, list) else payload.get("errors", [payload])
        assert errors[0]["extensions"]["code"] == "NOT_FOUND", payload
    finally:
        await ws.close()


async def test_a_subscription_the_server_ends_is_completed_without_a_server_error(
    api: Any, tenant: Tenant, other: Tenant, caplog: Any
) -> None:
    """The server ends this one (its cluster is not the caller's): the client hears why, then
    ``complete``, and the server logs no failure of its own (the statement-count header is
    for HTTP answers; a socket's headers are the handshake's, which cannot change)."""
    theirs = await _cluster(api, other, "ended")
    ws = await open_subscription(api.ws_url, tenant.tokens["admin"], SYNC, {"id": _gid(theirs)})
    try:
        messages = [orjson.loads(await asyncio.wait_for(ws.recv(), 5)) for _ in range(2)]
        assert [m["type"] for m in messages] == ["next", "complete"], messages
        assert messages[0]["payload"]["errors"][0]["extensions"]["code"] == "NOT_FOUND"
    finally:
        await ws.close()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text


async def test_five_hundred_subscribers_all_receive_the_event(api: Any, tenant: Tenant) -> None:
    cid = await _cluster(api, tenant, "crowd")
    gate = asyncio.Semaphore(50)

    async def subscriber() -> Any:
        async with gate:
            ws = await open_subscription(api.ws_url, tenant.tokens["viewer"], SYNC,
                                         {"id": _gid(cid)})
            await next_payload(ws, wait=30)  # the snapshot: registered with the hub
            return ws

    sockets = await asyncio.gather(*(subscriber() for _ in range(500)))
    try:
        await change_health(api.pool, cid, tenant.org_id, "degraded", "crowded")
        events = await asyncio.gather(*(next_payload(ws, wait=10) for ws in sockets))
        assert all(e["data"]["syncStatus"]["changedKinds"] == ["pods"] for e in events)
    finally:
        await asyncio.gather(*(ws.close() for ws in sockets))


async def test_a_stalled_subscriber_does_not_delay_the_others(api: Any, tenant: Tenant) -> None:
    cid = await _cluster(api, tenant, "stall")
    stalled = await open_subscription(api.ws_url, tenant.tokens["viewer"], SYNC,
                                      {"id": _gid(cid)})
    await next_payload(stalled)
    stalled.transport.pause_reading()  # never reads again
    healthy = await open_subscription(api.ws_url, tenant.tokens["viewer"], SYNC,
                                      {"id": _gid(cid)})
    await next_payload(healthy)
    try:
        started = time.monotonic()
        for i in range(150):
            await change_health(api.pool, cid, tenant.org_id,
                                "degraded" if i % 2 else "healthy", f"flap {i}")
        for _ in range(150):
            await next_payload(healthy, wait=2.0)
        assert time.monotonic() - started < 10.0
    finally:
        stalled.transport.abort()  # a dead client: no closing handshake to wait for
        await healthy.close()
