"""Keeps every finished hour costed: on the server's loop, shortly after each hour ends.

Each tick (every ``interval_s``) asks PostgreSQL which cluster-hours are missing from the
``k8s_cost_hours`` ledger — from ``backfill`` ago (7 days by default) or the cluster's
creation, to the last hour that ended at least ``settle`` ago (so the last samples of the hour
have arrived) — and computes them newest first, at most ``max_hours_per_tick`` per tick, so a
server that was down for a week catches up without starving the freshest hour. The same
query shape means a restart needs no memory of its own: the ledger is the memory.

Late samples: every sample carries ``ingested_at``. A tick looks at samples ingested since the
previous scan whose hour is already in the ledger, and recomputes the hours whose sample count
no longer matches what was costed. Counting (rather than comparing times) is immune to the
race where a sample's transaction started before the hour was computed but committed after.

Several replicas: a tick runs only while holding a session advisory lock, so one replica works
and the others skip; ``compute_hour`` also locks per cluster, so even overlapping ticks would
write the same rows. One cluster-hour failing is logged and skipped; the others go on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import asyncpg

from cost.allocation import HOUR, LOCK_CLASS, compute_hour, floor_hour
from cost.budgets import BudgetAlert, detect_all_budget_crossings
from cost.pricing import PriceBook

log = logging.getLogger(__name__)

# The leader lock's second key (compute_hour uses LOCK_CLASS with each cluster's hash).
_LEADER_KEY = 0
# Samples ingested this long before the previous scan are looked at again (clock skew margin).
_SCAN_MARGIN = timedelta(minutes=2)

_MISSING_SQL = """
SELECT c.id AS cluster_id, h.hour
  FROM k8s_clusters c
 CROSS JOIN LATERAL generate_series(
        GREATEST($1::timestamptz, date_trunc('hour', c.created_at, 'UTC')),
        $2::timestamptz, interval '1 hour') AS h(hour)
 WHERE c.status <> 'disabled'
   AND ($4::uuid[] IS NULL OR c.organization_id = ANY($4::uuid[]))
   AND NOT EXISTS (SELECT 1 FROM k8s_cost_hours x
                    WHERE x.cluster_id = c.id AND x.period_start = h.hour)
 ORDER BY h.hour DESC, c.id
 LIMIT $3
"""

_STALE_SQL = """
WITH candidates AS (
    SELECT DISTINCT m.cluster_id, date_trunc('hour', m.sampled_at, 'UTC') AS hour
      FROM k8s_resource_metrics m
     WHERE m.ingested_at >= $1 AND m.level = 'pod' AND m.sampled_at >= $2
)
SELECT c.cluster_id, c.hour
  FROM candidates c
  JOIN k8s_cost_hours h ON h.cluster_id = c.cluster_id AND h.period_start = c.hour
  JOIN k8s_clusters k ON k.id = c.cluster_id
 WHERE ($4::uuid[] IS NULL OR k.organization_id = ANY($4::uuid[]))
   AND h.sample_count <> (
        SELECT count(*) FROM k8s_resource_metrics m
         WHERE m.cluster_id = c.cluster_id AND m.level = 'pod'
           AND m.sampled_at >= c.hour AND m.sampled_at < c.hour + interval '1 hour')
 ORDER BY c.hour DESC
 LIMIT $3
"""


async def missing_hours(
    conn: asyncpg.Connection,
    *,
    now: datetime,
    backfill: timedelta,
    settle: timedelta,
    limit: int,
    organization_ids: Sequence[uuid.UUID] | None = None,
) -> list[tuple[uuid.UUID, datetime]]:
    """Cluster-hours not yet in the ledger within the backfill bound, newest first."""
    last_ready = floor_hour(now - settle) - HOUR
    first = floor_hour(now) - backfill
    if last_ready < first:
        return []
    rows = await conn.fetch(_MISSING_SQL, first, last_ready, limit, organization_ids)
    return [(r["cluster_id"], r["hour"]) for r in rows]


async def stale_hours(
    conn: asyncpg.Connection,
    *,
    ingested_since: datetime,
    not_before: datetime,
    limit: int,
    organization_ids: Sequence[uuid.UUID] | None = None,
) -> list[tuple[uuid.UUID, datetime]]:
    """Computed cluster-hours that received samples after they were costed."""
    rows = await conn.fetch(_STALE_SQL, ingested_since, not_before, limit, organization_ids)
    return [(r["cluster_id"], r["hour"]) for r in rows]


@dataclass
class TickReport:
    """What one tick did; ``skipped`` when another replica held the lead."""

    computed: list[tuple[uuid.UUID, datetime]] = field(default_factory=list)
    recomputed: list[tuple[uuid.UUID, datetime]] = field(default_factory=list)
    failed: list[tuple[uuid.UUID, datetime]] = field(default_factory=list)
    alerts: list[BudgetAlert] = field(default_factory=list)
    skipped: bool = False


class CostScheduler:
    """Runs cost ticks on the current event loop until stopped."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        book: PriceBook | None = None,
        interval_s: float = 60.0,
        settle: timedelta = timedelta(minutes=5),
        backfill: timedelta = timedelta(days=7),
        max_hours_per_tick: int = 200,
        budget_alerts: bool = True,
        clock: Callable[[], datetime] | None = None,
        organization_ids: Sequence[uuid.UUID] | None = None,
    ) -> None:
        self.pool = pool
        self.book = book or PriceBook.from_env()
        self.interval_s = interval_s
        self.settle = settle
        self.backfill = backfill
        self.max_hours_per_tick = max_hours_per_tick
        self.budget_alerts = budget_alerts
        self.clock = clock or (lambda: datetime.now(UTC))
        # None: every organization. A list confines this scheduler (tests, tenant shards).
        self.organization_ids = list(organization_ids) if organization_ids is not None else None
        self._scanned_at: datetime | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()

    async def start(self) -> None:
        if self._task is None:
            self._stopping.clear()
            self._task = asyncio.create_task(self._run(), name="fleetgraph-cost-scheduler")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        self._stopping.set()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                report = await self.run_once()
                if report.computed or report.recomputed or report.failed:
                    log.info(
                        "cost: computed %d, recomputed %d, failed %d cluster-hours",
                        len(report.computed), len(report.recomputed), len(report.failed),
                    )
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("cost tick failed; retrying next interval")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.interval_s)

    async def run_once(self, now: datetime | None = None) -> TickReport:
        """One tick: missing hours, late-sample recomputes, budget crossings."""
        moment = now or self.clock()
        report = TickReport()
        async with self.pool.acquire() as conn:
            if not await conn.fetchval(
                "SELECT pg_try_advisory_lock($1, $2)", LOCK_CLASS, _LEADER_KEY
            ):
                report.skipped = True
                return report
            try:
                await self._tick(conn, moment, report)
            finally:
                await conn.execute("SELECT pg_advisory_unlock($1, $2)", LOCK_CLASS, _LEADER_KEY)
        return report

    async def _tick(self, conn: asyncpg.Connection, now: datetime, report: TickReport) -> None:
        scan_started: datetime = await conn.fetchval("SELECT clock_timestamp()")
        missing = await missing_hours(
            conn, now=now, backfill=self.backfill, settle=self.settle,
            limit=self.max_hours_per_tick, organization_ids=self.organization_ids,
        )
        since = (self._scanned_at - _SCAN_MARGIN) if self._scanned_at else now - self.backfill
        stale = await stale_hours(
            conn, ingested_since=since, not_before=floor_hour(now) - self.backfill,
            limit=self.max_hours_per_tick, organization_ids=self.organization_ids,
        )
        for batch, done in ((missing, report.computed), (stale, report.recomputed)):
            for cluster_id, hour in batch:
                try:
                    await compute_hour(
                        conn, cluster_id=cluster_id, hour=hour, book=self.book, now=now
                    )
                    done.append((cluster_id, hour))
                except Exception:
                    log.exception("cost of cluster %s at %s failed", cluster_id, hour)
                    report.failed.append((cluster_id, hour))
        self._scanned_at = scan_started
        if self.budget_alerts:
            report.alerts = await detect_all_budget_crossings(
                conn, now=now, organization_ids=self.organization_ids
            )
