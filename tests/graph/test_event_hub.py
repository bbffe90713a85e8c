"""The LISTEN hub itself: one computation per notice whatever the audience, slow subscribers
dropped without holding anyone up, and nothing for organizations that do not own the cluster."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import asyncpg
import pytest

from app.events import ChangeHub
from resolvers.events import CLUSTER_HEALTH, ClusterEvent, SubscriberDropped
from tests.factories import make_cluster, make_org
from tests.graph.ws import change_health


async def _collect(stream: Any, into: list[ClusterEvent], count: int) -> None:
    async for event in stream:
        into.append(event)
        if len(into) == count:
            return


async def test_slow_subscribers_are_dropped_and_the_rest_get_everything(
    database_url: str, db_pool: asyncpg.Pool
) -> None:
    async with db_pool.acquire() as conn:
        org = await make_org(conn)
        stranger = await make_org(conn)
        cluster_id = await make_cluster(conn, org)
    hub = ChangeHub(database_url, db_pool, queue_size=4)
    await hub.start()
    try:
        async with (
            hub.subscribe(organization_id=org, topic=CLUSTER_HEALTH, cluster_id=None) as fast,
            hub.subscribe(organization_id=org, topic=CLUSTER_HEALTH,
                          cluster_id=cluster_id) as stalled,
            hub.subscribe(organization_id=stranger, topic=CLUSTER_HEALTH,
                          cluster_id=None) as foreign,
            hub.subscribe(organization_id=org, topic=CLUSTER_HEALTH,
                          cluster_id=uuid.uuid4()) as elsewhere,
        ):
            received: list[ClusterEvent] = []
            reader = asyncio.create_task(_collect(fast, received, 10))
            for i in range(10):
                await change_health(db_pool, cluster_id, org, "degraded", f"change {i}")
            await asyncio.wait_for(reader, timeout=5)
            # An event carries the state when it was computed, so the last is the newest.
            assert len(received) == 10 and received[-1].row["health_reason"] == "change 9"
            assert hub.stats.computed == 10  # once per notice, not per subscriber
            assert hub.stats.dropped == 1
            with pytest.raises(SubscriberDropped):
                async for _ in stalled:
                    pass
            for idle in (foreign, elsewhere):
                with pytest.raises(TimeoutError):
                    await asyncio.wait_for(anext(idle), timeout=0.2)
    finally:
        await hub.stop()
    assert hub.subscriber_count() == 0


async def test_unreadable_notices_are_ignored(database_url: str, db_pool: asyncpg.Pool) -> None:
    hub = ChangeHub(database_url, db_pool)
    await hub.start()
    try:
        for payload in ("not json", "{}", '{"cluster_id": "x", "organization_id": "y"}'):
            await hub.publish(payload)
        assert hub.stats.notices == 3 and hub.stats.computed == 0
    finally:
        await hub.stop()
