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

Recovery is measured in seconds, not rescan intervals:

* a rescan that fails on the database (down, restarting) is retried with a short capped
  backoff, so the first attempt after PostgreSQL answers again reopens the lease connection
  and restarts the syncs (they relist, so nothing written meanwhile in a cluster is missed);
* every ``lease_interval`` the lease connection proves this replica alive and takes any free
  lease of a registered cluster not synced here: a dead replica's clusters are taken over
  within about that interval, and a frozen one's once the server ends its idle session.
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

from app.db import stop_if_cancelled
from app.network_guard import NetworkPolicy
from app.settings import Settings
from app.vault import Vault
from sync.cluster_sync import TRANSIENT_DB_ERRORS, ClusterRecord, ClusterSync, SyncOptions
from sync.housekeeping import run_housekeeping
from sync.informer import Backoff
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
        self._lease = ClusterLease(pool, ttl=self._options.lease_ttl)
        self._running: dict[uuid.UUID, _Running] = {}
        self._registered: frozenset[uuid.UUID] = frozenset()  # as of the last rescan
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

    @property
    def lease_pid(self) -> int | None:
        """The PostgreSQL backend whose advisory locks are this replica's leases."""
        return self._lease.pid

    async def start(self) -> None:
        if self._tasks:
            raise RuntimeError("supervisor already started")
        self._tasks.append(asyncio.create_task(self._supervise(), name="fleetgraph-supervisor"))
        self._tasks.append(asyncio.create_task(self._keep_leases(), name="fleetgraph-leases"))
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
        retry_max = self._options.database_retry_max
        retry = Backoff(initial=min(0.2, retry_max), maximum=retry_max)
        down_since: float | None = None
        while True:
            delay = self._options.rescan_interval
            try:
                await self._rescan()
            except asyncio.CancelledError:
                raise
            except TRANSIENT_DB_ERRORS as exc:
                stop_if_cancelled()
                # The database is down or restarting: try again within a second or so, so the
                # syncs resume as soon as it answers (NOTIFY cannot wake us: it rides on the
                # very connection that is gone).
                if down_since is None:
                    down_since = time.monotonic()
                    log.warning("supervisor: database unavailable (%s); retrying every %.1f s"
                                " at most", type(exc).__name__, retry_max)
                delay = retry.next_delay()
            except Exception:
                stop_if_cancelled()
                log.exception("supervisor rescan failed")
            else:
                retry.reset()
                if down_since is not None:
                    log.info("supervisor: database answers again after %.1f s; syncing %d"
                             " clusters", time.monotonic() - down_since, len(self._running))
                    down_since = None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)
            self._wake.clear()

    async def _keep_leases(self) -> None:
        """Every lease interval: prove this replica alive (see :mod:`sync.lease`) and take the
        free lease of any registered cluster nobody syncs (a dead replica's); the rescan it
        wakes starts those syncs."""
        while True:
            await asyncio.sleep(self._options.lease_interval)
            if not self._lease.connected:
                continue  # the rescan reopens it (a lost connection has woken it already)
            taken = await self._lease.renew(lambda: self._registered - set(self._running))
            if taken:
                log.info("took over %d free cluster leases", len(taken))
                self.wake()

    async def _housekeep(self) -> None:
        # Partitions ahead of time matter: a run the database was down for is tried again
        # within a minute, not a day later.
        retry = Backoff(initial=5.0, maximum=min(60.0, self._options.housekeeping_interval))
        while True:
            delay = self._options.housekeeping_interval
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
            except TRANSIENT_DB_ERRORS as exc:
                stop_if_cancelled()
                delay = retry.next_delay()
                log.warning("housekeeping: database unavailable (%s); next try in %.0f s",
                            type(exc).__name__, delay)
            except Exception:
                stop_if_cancelled()
                log.exception("housekeeping failed; next run in %ss",
                              self._options.housekeeping_interval)
            else:
                retry.reset()
            await asyncio.sleep(delay)

    async def _rescan(self) -> None:
        self.rescans += 1
        if not self._lease.connected:
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
        self._registered = frozenset(records)
        for cluster_id in set(self._running) - set(records):
            log.info("cluster %s disabled or deleted: stopping its sync", cluster_id)
            await self._stop(cluster_id, release=True)
        for cluster_id in self._lease.held - set(records):  # leased meanwhile, gone since
            await self._lease.release(cluster_id)
        await self._lease.renew(lambda: [c for c in records if c not in self._running])
        if not self._lease.connected:
            return  # lost on the way: it has woken the next rescan, which stops everything
        for cluster_id, record in records.items():
            running = self._running.get(cluster_id)
            if running is None:
                if cluster_id in self._lease.held:
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

    async def _stop(self, cluster_id: uuid.UUID, *, release: bool = False) -> None:
        """Stop a sync (and give its lease back if ``release``); it counts as synced here
        until both are done, so no one sees it free while it still winds down."""
        running = self._running.get(cluster_id)
        if running is not None:
            running.task.cancel()
            await _stopped([running.task])
        if release:
            await self._lease.release(cluster_id)
        if self._running.get(cluster_id) is running:
            self._running.pop(cluster_id, None)

    async def _stop_all(self) -> None:
        """Cancel every sync at once, then wait: when the lease is lost, no sync may keep
        writing while another one is still winding down."""
        running, self._running = self._running, {}
        for entry in running.values():
            entry.task.cancel()
        await _stopped([entry.task for entry in running.values()])
