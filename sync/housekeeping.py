"""Partition upkeep and retention, daily and at start.

Partitions are created ahead of time relative to *now* (never from a calendar written in
code), so inserts never land in the DEFAULT partition in normal operation. Retention follows
the rule the README spells out: metrics are samples, so a metrics partition whose whole month
is older than the retention window is dropped whole; pods are inventory, so only pods that
*left* the cluster before the window are deleted, and a pod partition is dropped only once it
holds no row at all - a pod that is still running is never lost, however old its partition.

Every replica runs this job; a transaction-level advisory lock makes one of them do the work
at a time (creating the same partition concurrently would fail in the other).
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import asyncpg

from app.partitions import ensure_partitions

__all__ = ["HousekeepingReport", "partition_upper_bounds", "run_housekeeping"]

log = logging.getLogger(__name__)

_HOUSEKEEPING_LOCK = 0x46475F484B  # "FG_HK": one replica at a time
_UPPER_BOUND = re.compile(r"TO \('([^']+)'\)")


@dataclass(slots=True)
class HousekeepingReport:
    ran: bool = True
    partitions: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    pods_deleted: int = 0
    metrics_deleted: int = 0


async def partition_upper_bounds(conn: asyncpg.Connection, parent: str) -> dict[str, datetime]:
    """Each range partition of ``parent`` and the (exclusive) end of its range."""
    rows = await conn.fetch(
        """
        SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) AS bound
          FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
         WHERE i.inhparent = $1::regclass
        """,
        parent,
    )
    bounds: dict[str, datetime] = {}
    for row in rows:
        match = _UPPER_BOUND.search(row["bound"] or "")
        if match is None:
            continue  # the DEFAULT partition
        # The server renders timestamptz bounds as text; let it parse them back.
        bounds[row["relname"]] = await conn.fetchval("SELECT $1::text::timestamptz",
                                                     match.group(1))
    return bounds


@contextlib.asynccontextmanager
async def _step(conn: asyncpg.Connection) -> AsyncIterator[None]:
    """One step, one short transaction: partition DDL takes strong locks, so no step may hold
    them while the next one works; big deletes may outlast the request statement timeout."""
    async with conn.transaction():
        await conn.execute("SET LOCAL statement_timeout = 0")
        yield


async def _housekeep(
    conn: asyncpg.Connection,
    report: HousekeepingReport,
    *,
    now: datetime,
    months_ahead: int,
    metrics_retention_days: int,
    pod_retention_days: int,
) -> None:
    async with _step(conn):
        report.partitions = await ensure_partitions(conn, now, months_ahead)
    metrics_cutoff = now - timedelta(days=metrics_retention_days)
    for name, upper in sorted((await partition_upper_bounds(conn, "k8s_resource_metrics"))
                              .items()):
        if upper <= metrics_cutoff:
            async with _step(conn):
                await conn.execute(f'DROP TABLE "{name}"')
            report.dropped.append(name)
    async with _step(conn):
        report.metrics_deleted = int(
            (await conn.execute(
                "DELETE FROM k8s_resource_metrics_default WHERE sampled_at < $1", metrics_cutoff
            )).split()[-1]
        )
    pods_cutoff = now - timedelta(days=pod_retention_days)
    # Only pods that left the cluster before the window; live pods are never deleted.
    async with _step(conn):
        report.pods_deleted = int(
            (await conn.execute(
                "DELETE FROM k8s_pods WHERE deleted_at IS NOT NULL AND deleted_at < $1",
                pods_cutoff,
            )).split()[-1]
        )
    for name, upper in sorted((await partition_upper_bounds(conn, "k8s_pods")).items()):
        if upper > pods_cutoff:
            continue
        async with _step(conn):
            # Checked and dropped in one transaction, so a pod cannot slip in between.
            await conn.execute(f'LOCK TABLE "{name}" IN ACCESS EXCLUSIVE MODE')
            if not await conn.fetchval(f'SELECT EXISTS (SELECT 1 FROM "{name}")'):
                await conn.execute(f'DROP TABLE "{name}"')
                report.dropped.append(name)


async def run_housekeeping(
    pool: asyncpg.Pool,
    *,
    now: datetime,
    months_ahead: int = 3,
    metrics_retention_days: int = 90,
    pod_retention_days: int = 30,
) -> HousekeepingReport:
    report = HousekeepingReport()
    async with pool.acquire() as conn:
        if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", _HOUSEKEEPING_LOCK):
            report.ran = False
            return report
        try:
            await _housekeep(conn, report, now=now, months_ahead=months_ahead,
                             metrics_retention_days=metrics_retention_days,
                             pod_retention_days=pod_retention_days)
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", _HOUSEKEEPING_LOCK)
    log.info(
        "housekeeping: %d partitions ensured, dropped %s, %d old pods and %d old samples deleted",
        len(report.partitions), report.dropped or "none", report.pods_deleted,
        report.metrics_deleted,
    )
    return report

