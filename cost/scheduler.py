"""Keeps every finished hour costed, and the running hour costed so far: on the server's loop.

Each tick (every ``interval_s``) asks PostgreSQL which cluster-hours have no final row in the
``k8s_cost_hours`` ledger — from ``backfill`` ago (7 days by default) or the cluster's
creation, to the last hour that ended at least ``settle`` ago (so the last samples of the hour
have arrived) — and computes them newest first, at most ``max_hours_per_tick`` per tick, so a
server that was down for a week catches up without starving the freshest hour. The same
query shape means a restart needs no memory of its own: the ledger is the memory.

The hours after that — the running hour, and one that has ended but not yet settled — are
computed every tick from the samples so far and marked provisional, so cost shows from a
cluster's first minute. Once such an hour has settled, its provisional ledger row counts as
missing and the final figure replaces it.

Late samples: every sample carries ``ingested_at``. A tick looks at the samples ingested since
the previous scan, finds the final hours they can change (their own hour, and the hours a
network-counter interval through them spans: ``cost.samples``), and recomputes those whose
sample count no longer matches what was costed. Counting (rather than comparing times) is
immune to the race where a sample's transaction started before the hour was computed but
committed after.

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
from cost.samples import COUNTER_MAX_GAP, hour_sample_count

log = logging.getLogger(__name__)

# The leader lock's second key (compute_hour uses LOCK_CLASS with each cluster's hash).
_LEADER_KEY = 0
# Samples ingested this long before the previous scan are looked at again (clock skew margin).
_SCAN_MARGIN = timedelta(minutes=2)

# $1 first hour, $2 last hour, $3 limit, $4 organizations (or NULL), $5 only hours without a
# final ledger row.
_HOURS_SQL = """
SELECT c.id AS cluster_id, h.hour
  FROM k8s_clusters c
 CROSS JOIN LATERAL generate_series(
        GREATEST($1::timestamptz, date_trunc('hour', c.created_at, 'UTC')),
        $2::timestamptz, interval '1 hour') AS h(hour)
 WHERE c.status <> 'disabled'
   AND ($4::uuid[] IS NULL OR c.organization_id = ANY($4::uuid[]))
   AND NOT ($5 AND EXISTS (SELECT 1 FROM k8s_cost_hours x
                            WHERE x.cluster_id = c.id AND x.period_start = h.hour
                              AND NOT x.provisional))
 ORDER BY h.hour DESC, c.id
 LIMIT $3
"""

# The final hours that samples ingested since $1 (and taken at or after $2) can change: per
# pod name, the span from the sample before the earliest fresh one to the sample after the
# latest (within the counter gap $5), hour by hour.
_STALE_CANDIDATES_SQL = """
WITH fresh AS (
    SELECT m.cluster_id, m.namespace, m.name, min(m.sampled_at) AS first_at,
           max(m.sampled_at) AS last_at
      FROM k8s_resource_metrics m
     WHERE m.ingested_at >= $1 AND m.level = 'pod' AND m.sampled_at >= $2
     GROUP BY m.cluster_id, m.namespace, m.name, date_trunc('hour', m.sampled_at, 'UTC')
),
spans AS (
    SELECT f.cluster_id, COALESCE(before.sampled_at, f.first_at) AS lo,
           COALESCE(after.sampled_at, f.last_at) AS hi
      FROM fresh f
      LEFT JOIN LATERAL (
            SELECT m.sampled_at FROM k8s_resource_metrics m
             WHERE m.cluster_id = f.cluster_id AND m.level = 'pod'
               AND m.namespace = f.namespace AND m.name = f.name
               AND m.sampled_at < f.first_at AND m.sampled_at >= f.first_at - $5::interval
             ORDER BY m.sampled_at DESC LIMIT 1) before ON true
      LEFT JOIN LATERAL (
            SELECT m.sampled_at FROM k8s_resource_metrics m
             WHERE m.cluster_id = f.cluster_id AND m.level = 'pod'
               AND m.namespace = f.namespace AND m.name = f.name
               AND m.sampled_at > f.last_at AND m.sampled_at <= f.last_at + $5::interval
             ORDER BY m.sampled_at LIMIT 1) after ON true
),
candidates AS (
    SELECT DISTINCT s.cluster_id, h.hour
      FROM spans s
     CROSS JOIN LATERAL generate_series(date_trunc('hour', s.lo, 'UTC'),
                                        date_trunc('hour', s.hi, 'UTC'),
                                        interval '1 hour') AS h(hour)
)
SELECT c.cluster_id, c.hour, h.sample_count
  FROM candidates c
  JOIN k8s_cost_hours h
    ON h.cluster_id = c.cluster_id AND h.period_start = c.hour AND NOT h.provisional
  JOIN k8s_clusters k ON k.id = c.cluster_id
 WHERE ($4::uuid[] IS NULL OR k.organization_id = ANY($4::uuid[]))
   AND c.hour >= $2
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
    """Settled cluster-hours without a final ledger row within the backfill bound, newest
    first."""
    last_ready = floor_hour(now - settle) - HOUR
    first = floor_hour(now) - backfill
    if last_ready < first:
        return []
    rows = await conn.fetch(_HOURS_SQL, first, last_ready, limit, organization_ids, True)
    return [(r["cluster_id"], r["hour"]) for r in rows]


async def open_hours(
    conn: asyncpg.Connection,
    *,
    now: datetime,
    settle: timedelta,
    organization_ids: Sequence[uuid.UUID] | None = None,
) -> list[tuple[uuid.UUID, datetime]]:
    """The cluster-hours not settled yet (the running hour, and the one before it while its
    last samples may still arrive): costed provisionally, newest first."""
    first = floor_hour(now - settle)
    last = floor_hour(now)
    rows = await conn.fetch(_HOURS_SQL, first, last, None, organization_ids, False)
    return [(r["cluster_id"], r["hour"]) for r in rows]


async def stale_hours(
    conn: asyncpg.Connection,
    *,
    ingested_since: datetime,
    not_before: datetime,
    limit: int,
    organization_ids: Sequence[uuid.UUID] | None = None,
) -> list[tuple[uuid.UUID, datetime]]:
    """Final cluster-hours whose samples changed after they were costed."""
    candidates = await conn.fetch(
        _STALE_CANDIDATES_SQL, ingested_since, not_before, limit, organization_ids,
        COUNTER_MAX_GAP,
    )
    return [
        (r["cluster_id"], r["hour"]) for r in candidates
        if await hour_sample_count(conn, cluster_id=r["cluster_id"], hour=r["hour"])
        != r["sample_count"]
    ]


@dataclass
class TickReport:
    """What one tick did; ``skipped`` when another replica held the lead. ``computed`` and
    ``recomputed`` are final hours, ``provisional`` the open ones costed so far."""

    computed: list[tuple[uuid.UUID, datetime]] = field(default_factory=list)
    provisional: list[tuple[uuid.UUID, datetime]] = field(default_factory=list)
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
        """One tick: missing hours, late-sample recomputes, open hours, budget crossings."""
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
        open_now = await open_hours(
            conn, now=now, settle=self.settle, organization_ids=self.organization_ids
        )
        for batch, done, provisional in (
            (missing, report.computed, False),
            (stale, report.recomputed, False),
            (open_now, report.provisional, True),
        ):
            for cluster_id, hour in batch:
                try:
                    await compute_hour(
                        conn, cluster_id=cluster_id, hour=hour, book=self.book, now=now,
                        provisional=provisional,
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
