"""The supervisor: which clusters this replica syncs, started and stopped with the server.

It runs on the server's own event loop (started from the Starlette lifespan). It keeps one
:class:`~sync.cluster_sync.ClusterSync` task per cluster it holds a lease for, and rescans the
registry periodically and whenever the API NOTIFYs ``fleetgraph_registry``, so a cluster that
is registered, re-keyed, disabled, deleted or asked to resync is handled without a restart:

* new (or freed by a dead replica) cluster → take its lease → start its sync;
* kubeconfig ciphertext, key id or context changed (re-keyed) → restart its sync;
* ``sync_requested_at`` moved forward (``triggerSync``) → its informers relist;
* disabled or deleted → stop its sync, release its lease.

One cluster's failure stays in its task (ClusterSync never raises but for cancellation); the
lease connection's loss stops every sync here first, so no cluster is ever synced twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg

from app.network_guard import NetworkPolicy
from app.settings import Settings
from app.vault import Vault
from sync.cluster_sync import TRANSIENT_DB_ERRORS, ClusterRecord, ClusterSync, SyncOptions
from sync.housekeeping import run_housekeeping
from sync.lease import ClusterLease
from sync.notify import REGISTRY_CHANNEL, notify_registry

__all__ = ["Supervisor", "options_from_settings", "request_resync"]

log = logging.getLogger(__name__)

STOP_TIMEOUT_S = 10.0

_CLUSTERS = """
SELECT id, organization_id, name, kubeconfig_encrypted, kubeconfig_key_id, context_name,
       sync_requested_at
  FROM k8s_clusters
 WHERE status <> 'disabled'
 ORDER BY created_at, id
"""


def options_from_settings(settings: Settings, **overrides: Any) -> SyncOptions:
    """Sync options from the process settings, with keyword overrides."""
    values: dict[str, Any] = {
        "metrics_interval": settings.metrics_interval_s,
        "metrics_retention_days": settings.metrics_retention_days,
        "pod_retention_days": settings.pod_retention_days,
        "network": NetworkPolicy.from_settings(settings),
    }
    values.update(overrides)
    return SyncOptions(**values)


async def _stopped(tasks: list[asyncio.Task[None]]) -> None:
    """Wait (bounded) for cancelled syncs to finish; their outcome is already logged."""
    if not tasks:
        return
    done, pending = await asyncio.wait(tasks, timeout=STOP_TIMEOUT_S)
    for task in done:
        if not task.cancelled():
            task.exception()  # retrieved, so asyncio does not report it again
    if pending:
        log.warning("%d cluster syncs did not stop within %ss", len(pending), STOP_TIMEOUT_S)


async def request_resync(
    pool: asyncpg.Pool, cluster_id: uuid.UUID, *, organization_id: uuid.UUID | None = None
) -> bool:
    """``triggerSync``: stamp ``sync_requested_at`` and tell every supervisor. Returns False
    when no such cluster (in ``organization_id``, if given) exists or it is disabled."""
    async with pool.acquire() as conn, conn.transaction():
        found = await conn.fetchval(
            """
            UPDATE k8s_clusters SET sync_requested_at = now()
             WHERE id = $1 AND ($2::uuid IS NULL OR organization_id = $2)
               AND status <> 'disabled'
            RETURNING id
            """,
            cluster_id,
            organization_id,
        )
        if found is None:
            return False
        await notify_registry(conn, cluster_id=cluster_id, action="resync")
    return True


@dataclass(eq=False)
class _Running:
    sync: ClusterSync
    task: asyncio.Task[None]
    seen_resync: datetime | None = field(default=None)


class Supervisor:
    """Runs the sync of every cluster this replica holds a lease for.

    ``await supervisor.start()`` returns at once (the work runs in background tasks on the
    current loop); ``await supervisor.stop()`` cancels everything and gives the leases and
    connections back within 10 seconds.
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        vault: Vault,
        settings: Settings,
        *,
        options: SyncOptions | None = None,
        housekeeping: bool = True,
    ) -> None:
        self._pool = pool
        self._vault = vault
        self._options = options or options_from_settings(settings)
        self._housekeeping = housekeeping
        self._lease = ClusterLease(pool)
        self._running: dict[uuid.UUID, _Running] = {}
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.rescans = 0

    # --- public ----------------------------------------------------------------------

    @property
    def clusters(self) -> frozenset[uuid.UUID]:
        """Clusters this replica is syncing now."""
        return frozenset(self._running)

    def sync_for(self, cluster_id: uuid.UUID) -> ClusterSync | None:
        running = self._running.get(cluster_id)
        return running.sync if running else None

    async def start(self) -> None:
        if self._tasks:
            raise RuntimeError("supervisor already started")
        self._tasks.append(asyncio.create_task(self._supervise(), name="fleetgraph-supervisor"))
        if self._housekeeping:
            self._tasks.append(
                asyncio.create_task(self._housekeep(), name="fleetgraph-housekeeping")
            )

    async def stop(self) -> None:
        """Cancel every task, close every connection; bounded by 10 seconds."""
        deadline = time.monotonic() + STOP_TIMEOUT_S
        tasks = [*self._tasks, *(r.task for r in self._running.values())]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=max(0.1, deadline - time.monotonic() - 2))
        self._tasks.clear()
        self._running.clear()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._lease.close(), max(0.1, deadline - time.monotonic()))

    def wake(self) -> None:
        """Rescan now (the registry listener calls this)."""
        self._wake.set()

    # --- the loops -------------------------------------------------------------------

    def _on_registry(self, *args: object) -> None:
        self._wake.set()

    async def _supervise(self) -> None:
        while True:
            try:
                await self._rescan()
            except asyncio.CancelledError:
                raise
            except TRANSIENT_DB_ERRORS as exc:
                log.warning("supervisor rescan failed (%s); retrying", type(exc).__name__)
            except Exception:
                log.exception("supervisor rescan failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._options.rescan_interval)
            self._wake.clear()

    async def _housekeep(self) -> None:
        while True:
            try:
                await run_housekeeping(
                    self._pool,
                    now=datetime.now(UTC),
                    months_ahead=self._options.months_ahead,
                    metrics_retention_days=self._options.metrics_retention_days,
                    pod_retention_days=self._options.pod_retention_days,
                )
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("housekeeping failed; next run in %ss",
                              self._options.housekeeping_interval)
            await asyncio.sleep(self._options.housekeeping_interval)

    async def _rescan(self) -> None:
        self.rescans += 1
        if not await self._lease.alive():
            if self._running or self._lease.held:
                log.warning("lease connection lost: stopping %d cluster syncs", len(self._running))
            await self._stop_all()
            await self._lease.close()
            await self._lease.open(
                listen={REGISTRY_CHANNEL: self._on_registry}, on_lost=self.wake
            )
        records = {
            r.id: r for r in map(ClusterRecord.from_row, await self._pool.fetch(_CLUSTERS))
        }
        for cluster_id in set(self._running) - set(records):
            log.info("cluster %s disabled or deleted: stopping its sync", cluster_id)
            await self._stop(cluster_id)
            await self._lease.release(cluster_id)
        for cluster_id, record in records.items():
            running = self._running.get(cluster_id)
            if running is None:
                if await self._lease.try_acquire(cluster_id):
                    self._start(record)
                continue
            if running.task.done():  # never expected; restart rather than leave it dead
                await self._stop(cluster_id)
                self._start(record)
            elif record.fingerprint != running.sync.record.fingerprint:
                log.info("cluster %s re-keyed: restarting its sync", cluster_id)
                await self._stop(cluster_id)
                self._start(record)
            elif record.sync_requested_at and (
                running.seen_resync is None or record.sync_requested_at > running.seen_resync
            ):
                log.info("cluster %s: resync requested", cluster_id)
                running.seen_resync = record.sync_requested_at
                running.sync.request_relist()

    def _start(self, record: ClusterRecord) -> None:
        sync = ClusterSync(pool=self._pool, vault=self._vault, record=record,
                           options=self._options)
        task = asyncio.create_task(sync.run(), name=f"fleetgraph-sync-{record.id}")
        # A request made before this sync started is satisfied by its initial list.
        self._running[record.id] = _Running(sync, task, seen_resync=record.sync_requested_at)

    async def _stop(self, cluster_id: uuid.UUID) -> None:
        running = self._running.pop(cluster_id, None)
        if running is not None:
            running.task.cancel()
            await _stopped([running.task])

    async def _stop_all(self) -> None:
        """Cancel every sync at once, then wait: when the lease is lost, no sync may keep
        writing while another one is still winding down."""
        running, self._running = self._running, {}
        for entry in running.values():
            entry.task.cancel()
        await _stopped([entry.task for entry in running.values()])
