"""The demo starts with days of history: kubesim's fleet lives them at speed, through the sync's
writer and metrics paths and one tick of the cost scheduler, so cost, daily rollups and the
running hour show over GraphQL before the first live sample.

The history is built against a fixed instant (tests/clock.py), never today's date.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from decimal import Decimal

import asyncpg

from app.demo_history import build_history
from kubesim import KubeSim
from schema.relay import to_global_id
from tests.api import Api, make_tenant
from tests.clock import MID_MONTH, FrozenClock, serving_clock
from tests.sync.factories import make_vault, register_cluster

HOUR = timedelta(hours=1)
NOW = MID_MONTH + timedelta(minutes=25)  # 15 March 12:25
START = MID_MONTH - timedelta(days=3)  # 12 March 12:00
COSTS = """query($from: DateTime!, $to: DateTime!) {
  costs(window: {from: $from, to: $to}, groupBy: [NAMESPACE]) {
    namespace isIdle provisional cpuCost memoryGibHours totalCost } }"""
NAMESPACE_COST = """query($id: ID!) { cluster(id: $id) {
  namespaces(first: 50) { nodes { name cost { daysWithCost totalCost30d } } } } }"""


async def test_history_gives_yesterdays_costs_daily_rollups_and_a_provisional_hour(
    api: Api, db_pool: asyncpg.Pool
) -> None:
    vault = make_vault()
    # A tenant of its own: the session's tenants are expected to hold no clusters.
    tenant = await make_tenant(db_pool, f"history-{uuid.uuid4().hex[:8]}")
    async with KubeSim.start(fleet="small", seed=7, start_time=START) as sim:
        async with db_pool.acquire() as conn:
            cluster = await register_cluster(conn, vault, server=sim.url, token=sim.token,
                                             org_id=tenant.org_id)
        history = await build_history(db_pool, sim=sim, vault=vault, cluster_id=cluster,
                                      organization_id=tenant.org_id, clock=lambda: NOW)

    # 12 Mar 12:00 to 15 Mar 12:25 is 72 h 25 min = 4345 min: a sample every 15 minutes from
    # the start, the last at 12:15 (12:30 is past the end) = 4335 / 15 + 1 = 290 samples, each
    # with a flush before it, and one final flush of what changed after the last sample.
    assert (history.started_at, history.ended_at) == (START, NOW)
    assert (history.samples, history.flushes) == (290, 291)
    sampled = await db_pool.fetchval(
        "SELECT count(DISTINCT sampled_at) FROM k8s_resource_metrics WHERE cluster_id = $1",
        cluster)
    assert sampled == 290
    # Every finished hour from the cluster's (moved-back) creation is final: 12 Mar 12:00 to
    # 15 Mar 11:00 = 72 hours; the running hour, 12:00, is costed provisionally.
    assert len(history.costed.computed) == 72 and history.costed.failed == []
    assert history.costed.provisional == [(cluster, MID_MONTH)]
    # The simulator churned pods meanwhile; their ends are the simulated moments.
    churned = await db_pool.fetchval(
        """SELECT count(*) FROM k8s_pods
            WHERE cluster_id = $1 AND deleted_at > $2 AND deleted_at < $3""",
        cluster, START, NOW)
    assert churned > 0

    viewer = tenant.tokens["viewer"]
    with serving_clock(api.app, FrozenClock(NOW)):
        yesterday = await api.gql(COSTS, {"from": (MID_MONTH - timedelta(hours=36)).isoformat(),
                                          "to": (MID_MONTH - timedelta(hours=12)).isoformat()},
                                  token=viewer)
        rows = yesterday["data"]["costs"]
        assert {"kube-system", "__idle__"} <= {r["namespace"] for r in rows}
        assert all(not r["provisional"] for r in rows)
        assert sum(Decimal(r["cpuCost"]) for r in rows if not r["isIdle"]) > 0
        # Pods were allocated less memory than the nodes have (three 16 GiB nodes, some
        # forty pods asking 64Mi-1Gi): the idle row keeps the rest, as a real fleet would.
        [idle] = [r for r in rows if r["isIdle"]]
        assert Decimal(idle["memoryGibHours"]) > 0

        running = await api.gql(COSTS, {"from": MID_MONTH.isoformat(),
                                        "to": (MID_MONTH + HOUR).isoformat()}, token=viewer)
        assert running["data"]["costs"] and all(r["provisional"]
                                                for r in running["data"]["costs"])

        # Daily rollups: kube-system ran every day of the history, 12 to 15 March = 4 days.
        namespaces = await api.gql(NAMESPACE_COST, {"id": to_global_id("Cluster", cluster)},
                                   token=viewer)
        costs = {n["name"]: n["cost"]
                 for n in namespaces["data"]["cluster"]["namespaces"]["nodes"]}
        assert costs["kube-system"]["daysWithCost"] == 4
        assert Decimal(costs["kube-system"]["totalCost30d"]) > 0
