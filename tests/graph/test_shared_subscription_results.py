"""Subscribers who would receive the same answer share one execution of each event: same
payload, operation text, variables, organization and role. Anything that could change the
answer gets its own execution, and every subscriber still receives exactly its own answer."""

from __future__ import annotations

from typing import Any

from schema.relay import to_global_id
from schema.shared_results import STATS
from tests.api import Tenant
from tests.graph import rows
from tests.graph.ws import change_health, next_payload, open_subscription, until_live

SAME = "subscription { clusterHealth { clusterName status reason } }"
OTHER_SELECTION = "subscription { clusterHealth { status } }"
ONE_CLUSTER = "subscription($id: ID) { clusterHealth(clusterId: $id) { clusterName status } }"


async def test_identical_subscribers_share_one_execution_per_event(
    api: Any, tenant: Tenant
) -> None:
    async with api.pool.acquire() as conn:
        cluster_id = await rows.cluster(conn, tenant.org_id, "shared")
    gid = str(to_global_id("Cluster", cluster_id))
    viewer, admin = tenant.tokens["viewer"], tenant.tokens["admin"]
    same = [await open_subscription(api.ws_url, viewer, SAME) for _ in range(4)]
    other = await open_subscription(api.ws_url, viewer, OTHER_SELECTION)
    by_id = await open_subscription(api.ws_url, viewer, ONE_CLUSTER, {"id": gid})
    as_admin = await open_subscription(api.ws_url, admin, SAME)
    sockets = [*same, other, by_id, as_admin]
    try:
        for i, ws in enumerate(sockets):  # every socket proven live before counting
            async def poke(i: int = i) -> None:
                await change_health(api.pool, cluster_id, tenant.org_id, "degraded", f"w{i}")
            await until_live(ws, poke)
        for ws in sockets:  # drain what the warm-up pokes left queued
            while True:
                try:
                    await next_payload(ws, wait=0.3)
                except TimeoutError:
                    break
        executed, reused = STATS.executed, STATS.reused
        await change_health(api.pool, cluster_id, tenant.org_id, "critical", "counted")
        answers = [(await next_payload(ws, wait=5))["data"]["clusterHealth"] for ws in sockets]
        # 4 identical viewers: 1 execution + 3 reuses; the other selection, the variables
        # and the admin role: 1 execution each.
        assert (STATS.executed - executed, STATS.reused - reused) == (4, 3)
        full = {"clusterName": "shared", "status": "CRITICAL", "reason": "counted"}
        assert answers == [full, full, full, full, {"status": "CRITICAL"},
                           {"clusterName": "shared", "status": "CRITICAL"}, full]
    finally:
        for ws in sockets:
            await ws.close()
