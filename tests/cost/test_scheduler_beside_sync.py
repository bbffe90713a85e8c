"""The cost scheduler and a live cluster sync, side by side, never deadlock (issue 14).

tests/cost/test_lock_order.py replays the two sides' transactions by hand; this runs the real
ones: a :class:`~sync.cluster_sync.ClusterSync` of a kubesim fleet that churns every few
milliseconds (each flush writes rows and the cluster's health), reassesses health every 50 ms,
samples metrics, and drops off the network and comes back (each status change is written with
a health verdict), while the :class:`~cost.scheduler.CostScheduler` ticks 300 times (each tick
costs the running and the unsettled hour, both locking the cluster row, and checks budgets).

What would show a deadlock, all asserted: a tick reporting a failed cluster-hour (the
scheduler catches per hour), any log line naming one (the sync catches and retries), the
server's deadlock counter for this database, and, where the test server's log can be read
(the embedded PostgreSQL's, or one named by ``pg_current_logfile()``), "deadlock detected"
in what it logged meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import replace
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import asyncpg
import pytest

from cost.budgets import set_budget
from cost.scheduler import CostScheduler
from kubesim import KubeSim
from tests.clock import MID_MONTH
from tests.cost.helpers import BOOK
from tests.factories import make_org
from tests.sync.conftest import FAST, new_cluster, running_sync
from tests.sync.factories import make_vault

TICKS = 300
OPTIONS = replace(FAST, health_interval=0.05, health_min_interval=0.0, metrics_interval=0.2,
                  heartbeat_interval=0.1, probe_interval=0.1)


async def _server_log(conn: asyncpg.Connection) -> Path | None:
    """The file the test server logs to, when this process can read it."""
    with contextlib.suppress(asyncpg.PostgresError):
        directory = Path(await conn.fetchval("SELECT current_setting('data_directory')"))
        current = await conn.fetchval("SELECT pg_current_logfile()")
        for candidate in ([directory / current] if current else []) + [directory / "log"]:
            if candidate.is_file():
                with contextlib.suppress(OSError):
                    candidate.open("rb").close()
                    return candidate
    return None


async def _deadlocks(conn: asyncpg.Connection) -> int:
    await conn.execute("SELECT pg_stat_clear_snapshot()")
    count: int = await conn.fetchval(
        "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()")
    return count


async def test_cost_ticks_beside_a_flapping_churning_sync_never_deadlock(
    db_pool: asyncpg.Pool, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    vault = make_vault()
    created = MID_MONTH - timedelta(hours=3)  # 09:00
    async with KubeSim.start(fleet="small", seed=5, start_time=created) as sim:
        fleet = sim.fleet
        assert fleet is not None
        async with db_pool.acquire() as conn:
            org = await make_org(conn)
        cluster = await new_cluster(db_pool, vault, sim, org_id=org)
        async with db_pool.acquire() as conn:
            await conn.execute("UPDATE k8s_clusters SET created_at = $2 WHERE id = $1",
                               cluster, created)
            await set_budget(conn, organization_id=org, scope_kind="namespace",
                             scope_value="kube-system", amount_monthly=Decimal("0.01"))
            log_file = await _server_log(conn)
            log_offset = log_file.stat().st_size if log_file else 0
            deadlocks_before = await _deadlocks(conn)
        scheduler = CostScheduler(db_pool, book=BOOK, organization_ids=[org])
        statuses: set[str | None] = set()

        async with running_sync(db_pool, vault, cluster, options=OPTIONS) as sync:
            stop = asyncio.Event()

            async def churn() -> None:
                while not stop.is_set():
                    fleet.step(60)  # a simulated minute: rollouts, scaling, restarts
                    await asyncio.sleep(0.01)

            async def flap() -> None:
                while not stop.is_set():
                    await asyncio.sleep(0.4)
                    async with sim.outage():
                        await asyncio.sleep(0.4)

            async def watch_status() -> None:
                while not stop.is_set():
                    statuses.add(sync.status)
                    await asyncio.sleep(0.02)

            helpers = [asyncio.create_task(f()) for f in (churn, flap, watch_status)]
            reports = []
            try:
                for _ in range(TICKS):
                    reports.append(await scheduler.run_once(now=MID_MONTH))
                    await asyncio.sleep(0)
            finally:
                stop.set()
                await asyncio.gather(*helpers)

    # From the cluster's creation at 09:00: the first tick costs the settled hours 09:00 and
    # 10:00 final; every tick costs 11:00 (it ended at 12:00, still inside the 5-minute
    # settle) and the running 12:00 provisionally, each time locking the cluster row.
    assert len(reports[0].computed) == 2
    assert all(len(r.provisional) == 2 and r.failed == [] and not r.skipped for r in reports)
    # The sync really went through reachability changes meanwhile (each written with health).
    assert {"active", "unreachable"} <= statuses
    assert [r.getMessage() for r in caplog.records
            if "deadlock" in r.getMessage().lower() or "Deadlock" in str(r.exc_info)] == []
    await asyncio.sleep(1.1)  # past the statistics flush interval
    async with db_pool.acquire() as conn:
        assert await _deadlocks(conn) == deadlocks_before
    if log_file is not None:
        with log_file.open("rb") as handle:
            handle.seek(log_offset)
            assert b"deadlock detected" not in handle.read()
