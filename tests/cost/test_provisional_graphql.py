"""The running hour over GraphQL, as a dashboard polls it: provisional while open, then the
final figure in its place once the scheduler sees it settled (issue 14, "the provisional hour
turning final"), at each of the calendar's edge instants.

One 1-core node at 1.00 /core-hour (no memory), one pod requesting 0.5 core. H is the
instant's hour; the server's clock and the scheduler's read H + 20 min, then H + 1 h 10 min.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import asyncpg

from app.tenancy import create_token
from cost.allocation import floor_hour
from cost.scheduler import CostScheduler
from tests.api import Api
from tests.clock import FrozenClock, at_each_instant, serving_clock
from tests.cost.helpers import BOOK, one_node_cluster

HOUR = timedelta(hours=1)
COSTS = """query($from: DateTime!, $to: DateTime!) {
  costs(window: {from: $from, to: $to}, groupBy: [NAMESPACE]) {
    namespace provisional cpuCoreHours totalCost } }"""


@at_each_instant
async def test_the_running_hour_turns_final_over_graphql(
    api: Api, db_pool: asyncpg.Pool, instant: datetime
) -> None:
    h = floor_hour(instant)
    async with db_pool.acquire() as conn:
        org, cluster = await one_node_cluster(conn, created_at=h - timedelta(days=1))
        await conn.execute(
            """INSERT INTO k8s_pods (cluster_id, uid, namespace, name, node_name, phase,
                   requests_cpu_cores, created_at, start_time)
               VALUES ($1, 'p', 'app', 'p', 'n', 'Running', 0.5, $2, $2)""",
            cluster, h - timedelta(days=1))
        await conn.execute(
            """INSERT INTO k8s_resource_metrics (cluster_id, level, namespace, name, sampled_at,
                   cpu_cores) VALUES ($1, 'pod', 'app', 'p', $2, 0.8)""",
            cluster, h + timedelta(minutes=10))
        slug = await conn.fetchval("SELECT slug FROM organizations WHERE id = $1", org)
        viewer = (await create_token(conn, org_slug=slug, role="viewer")).token
    clock = FrozenClock(h + timedelta(minutes=20))
    scheduler = CostScheduler(db_pool, book=BOOK, backfill=HOUR, budget_alerts=False,
                              organization_ids=[org], clock=clock)
    window = {"from": h.isoformat(), "to": (h + HOUR).isoformat()}

    async def hour_h() -> dict[str, tuple[bool, str, str]]:
        with serving_clock(api.app, clock):
            body = await api.gql(COSTS, window, token=viewer)
        return {r["namespace"]: (r["provisional"], r["cpuCoreHours"], r["totalCost"])
                for r in body["data"]["costs"]}

    await scheduler.run_once()
    # 20 minutes in: the node 1.00 x 20/60 = 0.333333; the pod's one sample allocates
    # max(0.5 requested, 0.8 used) = 0.8 core x 20/60 = 0.266667 core-hours at 1.00; idle the
    # rest, 0.333333 - 0.266667 = 0.066666.
    assert await hour_h() == {"app": (True, "0.266667", "0.266667"),
                              "__idle__": (True, "0.066667", "0.066666")}

    async with db_pool.acquire() as conn:
        # A later sample in H: 0.2 core used, so the request (0.5) counts for it.
        await conn.execute(
            """INSERT INTO k8s_resource_metrics (cluster_id, level, namespace, name, sampled_at,
                   cpu_cores) VALUES ($1, 'pod', 'app', 'p', $2, 0.2)""",
            cluster, h + timedelta(minutes=40))
    clock.advance(timedelta(minutes=50))  # H + 1 h 10 min: H has closed and settled
    report = await scheduler.run_once()
    assert (cluster, h) in report.computed
    # Final: per sample max(0.5, 0.8) = 0.8 and max(0.5, 0.2) = 0.5, averaged 0.65 core for
    # the whole hour = 0.65 core-hours at 1.00; the node 1.00, idle 1.00 - 0.65 = 0.35.
    assert await hour_h() == {"app": (False, "0.650000", "0.650000"),
                              "__idle__": (False, "0.350000", "0.350000")}
