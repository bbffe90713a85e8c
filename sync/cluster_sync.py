"""Everything one cluster's sync does, from opening its kubeconfig to watching forever.

A :class:`ClusterSync` is the unit of isolation: it owns one API client, its informers, one
flusher and its metrics and heartbeat loops, and nothing it does can touch another cluster.
Its life, per attempt:

1. decrypt the kubeconfig from the vault (associated data binds it to this cluster's row),
   sanitize it (hostile fields refused), open a client with connect/read timeouts;
2. ``/version`` (reachability, ``kubernetes_version``);
3. list every kind, each retried on its own with backoff, and flush the snapshots;
4. watch every kind, flush in batches, sample metrics, heartbeat, until cancelled.

The cluster's ``status`` is derived from where its informers and its heartbeat stand, never
from one lucky request (a ``/version`` that answers says nothing of a pods watch in backoff):

* ``active`` only once every kind is listed and watching, and nothing is failing (an optional
  kind the cluster refuses, Helm releases without their grant, is shown as ``refused`` in
  ``sync_progress`` and holds nothing back);
* ``unreachable`` when FleetGraph cannot get at the cluster: no connection, a timeout,
  credentials refused (401/403), a kubeconfig it cannot use, and a server that redirects or
  answers something that is not a Kubernetes answer (it stays so until that kind watches
  properly: a server that is not a Kubernetes API server never looks healthy);
* ``degraded`` when the API server answers, but with errors of its own: 5xx, or 429 throttling;
* anything else (kinds still listing, a relist after a 410) keeps what it was.

``last_sync_error`` says why (scrubbed, with the kinds affected) and ``sync_progress`` has
each kind's state: listing, listed, watching, or backing off with its next try and its error.
While anything fails, the heartbeat probes at a short interval; the moment the cluster
answers again (the heartbeat, or a kind that watches again) every informer still backing off
retries at once, so a cleared fault is caught up within seconds, not after a backoff grown to
a minute. Database trouble is retried by the flusher without dropping buffered events.

Every connection goes through ``SyncOptions.network`` (:mod:`app.network_guard`), checked
where it is made; the default refuses everything local, so a caller that forgets to pass the
process policy fails closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
import re
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp
import asyncpg
import orjson
from kubernetes_asyncio.client import ApiClient

from app import metrics as prometheus
from app.db import CONNECTION_LOST, stop_if_cancelled
from app.kube_client import open_api_client
from app.kubeconfig import KubeconfigError, SanitizedKubeconfig, sanitize_kubeconfig
from app.logs import bind_cluster
from app.network_guard import NetworkPolicy, refusal_in
from app.vault import Vault, VaultError
from sync.health import update_cluster_health
from sync.helm import HELM_LABEL_SELECTOR, decode_storage_secret
from sync.informer import TRANSIENT_KUBE_ERRORS, Backoff, Informer, InformerState, KindSpec
from sync.kubeapi import KubeApiError, NotFound, Redirected, UnexpectedAnswer, get_version
from sync.mappers import (
    Row,
    map_deployment,
    map_namespace,
    map_node,
    map_pod,
    map_replicaset,
    map_resource_quota,
)
from sync.metrics import read_metrics, write_metrics
from sync.notify import notify_changes
from sync.storage_mappers import map_persistent_volume, map_persistent_volume_claim
from sync.writer import HELM, QUOTAS, Batch, ClusterWriter, OomLedger

__all__ = [
    "ACTIVE",
    "DEGRADED",
    "PENDING",
    "TRANSIENT_DB_ERRORS",
    "UNREACHABLE",
    "ClusterRecord",
    "ClusterSync",
    "Flusher",
    "SyncOptions",
    "kind_specs",
    "kubeconfig_aad",
    "status_for",
]

log = logging.getLogger(__name__)

# A dropped or restarting database: retry the same batch, keep everything buffered.
TRANSIENT_DB_ERRORS: tuple[type[BaseException], ...] = (
    *CONNECTION_LOST,
    asyncpg.exceptions.DeadlockDetectedError,
    asyncpg.exceptions.SerializationError,
)

# k8s_clusters.status values the sync writes ('disabled' is the API's).
PENDING, ACTIVE, DEGRADED, UNREACHABLE = "pending", "active", "degraded", "unreachable"
# Informer states in which a kind is fully synced: watching, or an optional kind refused.
_SYNCING = frozenset({InformerState.WATCHING, InformerState.REFUSED})


_CLUSTER_ERRORS: tuple[type[BaseException], ...] = (
    KubeconfigError,
    VaultError,
    UnicodeDecodeError,
    *TRANSIENT_KUBE_ERRORS,
)


def kubeconfig_aad(cluster_id: uuid.UUID | str) -> bytes:
    """Associated data of ``k8s_clusters.kubeconfig_encrypted`` (see app.vault)."""
    return f"k8s_clusters.kubeconfig:{cluster_id}".encode()


@dataclass(frozen=True, kw_only=True)
class SyncOptions:
    """Knobs of the sync engine; defaults are for production, tests shrink the times."""

    connect_timeout: float = 5.0
    read_timeout: float = 30.0
    page_size: int = 500
    watch_timeout_s: int = 300
    flush_interval: float = 0.2
    max_batch: int = 5_000
    backoff_initial: float = 1.0
    backoff_max: float = 60.0
    heartbeat_interval: float = 15.0
    # While anything fails, the heartbeat probes this often (and a sync that cannot reach its
    # cluster at all retries at most this far apart), so recovery is seen within seconds.
    probe_interval: float = 2.0
    metrics_interval: float = 30.0
    health_interval: float = 60.0
    health_min_interval: float = 1.0
    rescan_interval: float = 30.0
    # A rescan that failed on the database is retried at most this far apart.
    database_retry_max: float = 1.0
    # Lease holders prove they are alive this often and try free leases as often; the server
    # ends a lease session idle for lease_ttl (a replica that froze gives its clusters up).
    lease_interval: float = 1.0
    lease_ttl: float = 8.0
    housekeeping_interval: float = 86_400.0
    months_ahead: int = 3
    metrics_retention_days: int = 90
    pod_retention_days: int = 30
    network: NetworkPolicy = field(default_factory=NetworkPolicy)


@dataclass(frozen=True, kw_only=True)
class ClusterRecord:
    """The registry row a sync starts from; ``fingerprint`` changes when it is re-keyed."""

    id: uuid.UUID
    organization_id: uuid.UUID
    name: str
    kubeconfig_encrypted: bytes = field(repr=False)
    kubeconfig_key_id: str
    context_name: str | None
    sync_requested_at: datetime | None = None

    @property
    def fingerprint(self) -> tuple[bytes, str, str | None]:
        return (self.kubeconfig_encrypted, self.kubeconfig_key_id, self.context_name)

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> ClusterRecord:
        return cls(
            id=row["id"],
            organization_id=row["organization_id"],
            name=row["name"],
            kubeconfig_encrypted=bytes(row["kubeconfig_encrypted"]),
            kubeconfig_key_id=row["kubeconfig_key_id"],
            context_name=row["context_name"],
            sync_requested_at=row["sync_requested_at"],
        )


def open_kubeconfig(vault: Vault, record: ClusterRecord) -> SanitizedKubeconfig:
    """Decrypt and sanitize; errors carry no credential (vault and sanitizer guarantee it)."""
    text = vault.decrypt(
        record.kubeconfig_encrypted,
        key_id=record.kubeconfig_key_id,
        aad=kubeconfig_aad(record.id),
    ).decode("utf-8")
    return sanitize_kubeconfig(text, context=record.context_name)


_AUTH_VALUE = re.compile(r"(?i)\b(bearer|basic)\s+[^\s,;'\"]+")


def status_for(exc: BaseException) -> str:
    """The cluster status a failure means: ``degraded`` when the API server answered with an
    error of its own (5xx, 429 throttling, another 4xx), ``unreachable`` for everything that
    keeps FleetGraph from the cluster (see the module docstring)."""
    if (
        isinstance(exc, KubeApiError)
        and not isinstance(exc, Redirected | UnexpectedAnswer)
        and exc.status not in (401, 403)
    ):
        return DEGRADED
    return UNREACHABLE


def describe_error(
    exc: BaseException, kc: SanitizedKubeconfig | None, *, kinds: Sequence[str] = ()
) -> str:
    """A one-line error for ``last_sync_error``: no token, password or key, ever; ``kinds``
    (the kinds it affects) are named at the end."""
    refused = refusal_in(exc)
    if refused is not None:
        text = f"connection refused by FleetGraph: {refused.strerror}"
    elif isinstance(exc, Redirected):
        text = f"redirected (HTTP {exc.status}); FleetGraph never follows redirects"
    elif isinstance(exc, UnexpectedAnswer):
        text = f"not a Kubernetes API answer: {exc.message}"
    elif isinstance(exc, KubeApiError):
        meaning = {401: "credentials rejected", 403: "forbidden",
                   429: "throttled by the API server"}.get(exc.status)
        text = f"{meaning or ('API server error' if exc.status >= 500 else 'API error')}: {exc}"
        if exc.retry_after is not None:
            text += f" (retry after {exc.retry_after:g} s)"
    elif isinstance(exc, aiohttp.ClientConnectorError | ConnectionError):
        text = f"cannot connect: {type(exc).__name__}: {exc}"
    elif isinstance(exc, TimeoutError):
        text = "timed out talking to the API server"
    elif isinstance(exc, KubeconfigError):
        text = f"kubeconfig refused: {exc}"
    elif isinstance(exc, VaultError):
        text = f"kubeconfig cannot be decrypted: {exc}"
    else:
        text = f"{type(exc).__name__}: {exc}"
    if kinds:
        text += f" [{', '.join(kinds)}]"
    if kc is not None:
        for secret in sorted(kc.secret_values(), key=len, reverse=True):
            text = text.replace(secret, "[redacted]")
    text = _AUTH_VALUE.sub(lambda m: f"{m.group(1)} [redacted]", text)
    text = re.sub(r"[\x00-\x1f\x7f]+", " ", text).strip()
    return text if len(text) <= 300 else text[:299] + "…"


class Flusher:
    """The cluster's buffer and the loop that writes it in batches.

    Informers ``put``/``replace`` synchronously (no await, so no event can be lost between
    taking a batch and clearing it); the loop waits ``flush_interval`` after the first change
    to gather a batch, writes it with one transaction, and on a database error puts it back
    *under* whatever arrived meanwhile and retries with backoff.
    """

    def __init__(self, writer: ClusterWriter, *, options: SyncOptions) -> None:
        self.writer = writer
        self._options = options
        self._pending = Batch()
        self._wake = asyncio.Event()
        self._extra_kinds: set[str] = set()
        self._assess = False
        self._backoff = Backoff(initial=min(options.backoff_initial, 0.5), maximum=2.0)
        self.flushes = 0
        self.retries = 0
        self._last_health = 0.0
        self._busy = False  # a flush of the run loop is under way
        self._hurry = False  # someone waits in drain(): no flush_interval to gather more
        self._drained = asyncio.Event()

    def put(self, kind: str, uid: str, value: Any) -> None:
        self._pending.put(kind, uid, value)
        prometheus.sync_event_buffered(self.writer.cluster_id, kind)
        self._wake.set()

    def put_many(self, kind: str, values: dict[str, Any]) -> None:
        """A page of a list: its objects' new states (see ``Informer._hand_over_page``)."""
        self._pending.put_many(kind, values)
        prometheus.sync_snapshot_buffered(self.writer.cluster_id)
        self._wake.set()

    def replace(self, kind: str, values: dict[str, Any]) -> None:
        self._pending.replace(kind, values)
        prometheus.sync_snapshot_buffered(self.writer.cluster_id)
        self._wake.set()

    def touch(self, *, kinds: Iterable[str] = (), assess: bool = False) -> None:
        """Ask for a flush that announces ``kinds`` (written elsewhere) and/or re-assesses
        health even when no object changed."""
        self._extra_kinds.update(kinds)
        self._assess = self._assess or assess
        self._wake.set()

    @property
    def pending(self) -> int:
        return len(self._pending)

    async def flush(self) -> None:
        """Write everything pending now, retrying database errors until it lands."""
        while self._pending or self._extra_kinds or self._assess:
            batch, self._pending = self._pending, Batch()
            kinds, self._extra_kinds = self._extra_kinds, set()
            assess, self._assess = self._assess, False
            # Health is a scan of the cluster's rows: at most once per health_min_interval;
            # a change in between is assessed when the interval is up.
            wait = self._last_health + self._options.health_min_interval - time.monotonic()
            health_now = assess or wait <= 0
            started = prometheus.sync_flush_started(self.writer.cluster_id)
            try:
                result = await self.writer.flush(
                    batch, extra_kinds=kinds, assess=assess, health=health_now
                )
            except TRANSIENT_DB_ERRORS as exc:
                stop_if_cancelled()
                self.retries += 1
                batch.absorb(self._pending)
                self._pending = batch
                self._extra_kinds |= kinds
                self._assess = self._assess or assess
                log.warning(
                    "cluster %s: flush of %d changes failed (%s); retrying",
                    self.writer.cluster_id, len(batch), type(exc).__name__,
                )
                await self._backoff.wait()
                continue
            self._backoff.reset()
            prometheus.sync_flushed(self.writer.cluster_id, changes=len(batch), started=started)
            self.flushes += 1
            if health_now and (assess or result.kinds):
                self._last_health = time.monotonic()
            elif result.kinds:
                self._assess = True
                asyncio.get_running_loop().call_later(max(wait, 0.0), self._wake.set)
                return

    async def run(self) -> None:
        while True:
            await self._wake.wait()
            if len(self._pending) < self._options.max_batch and not self._hurry:
                await asyncio.sleep(self._options.flush_interval)
            self._wake.clear()
            self._busy = True
            try:
                await self.flush()
            finally:
                self._busy = False
            self._drained.set()

    async def drain(self) -> None:
        """Until the run loop has written everything handed over so far (and any health
        assessment asked for): how the first lists wait for their rows to land while the
        loop writes them page by page."""
        while self._pending or self._extra_kinds or self._assess or self._busy:
            self._hurry = True
            self._drained.clear()
            self._wake.set()
            try:
                await self._drained.wait()
            finally:
                self._hurry = False


class ClusterSync:
    """One cluster's sync; ``run()`` until cancelled (it never raises anything else)."""

    def __init__(
        self,
        *,
        pool: asyncpg.Pool,
        vault: Vault,
        record: ClusterRecord,
        options: SyncOptions,
        rng: random.Random | None = None,
    ) -> None:
        self.record = record
        self._pool = pool
        self._vault = vault
        self._options = options
        self._rng = rng or random.Random()
        self._informers: list[Informer] = []
        self._flusher: Flusher | None = None
        self._kubeconfig: SanitizedKubeconfig | None = None
        # What the status is derived from (see _verdict): a failure before any informer could
        # run, the last heartbeat's failure, and kinds whose last watch was answered with
        # something that is not a watch (or a redirect): until each of those watches properly
        # again, the cluster is not reachable, whatever /version says.
        self._setup_error: BaseException | None = None
        self._heartbeat_error: BaseException | None = None
        self._answer_faults: dict[str, BaseException] = {}
        self._failed_kinds: set[str] = set()
        self._status_changed = asyncio.Event()
        self._trouble = asyncio.Event()
        self._written: tuple[str, str | None, str | None] | None = None
        self.status: str | None = None  # the status last written to k8s_clusters
        self.synced = asyncio.Event()  # set once the cluster was first written ACTIVE

    @property
    def cluster_id(self) -> uuid.UUID:
        return self.record.id

    def _backoff(self, *, maximum: float | None = None) -> Backoff:
        return Backoff(
            initial=self._options.backoff_initial,
            maximum=self._options.backoff_max if maximum is None else maximum,
            rng=self._rng,
        )

    @property
    def flusher(self) -> Flusher | None:
        return self._flusher

    @property
    def informers(self) -> tuple[Informer, ...]:
        return tuple(self._informers)

    def request_relist(self) -> None:
        """``triggerSync``: every informer lists again (rows gone meanwhile get deleted_at)."""
        for informer in self._informers:
            informer.request_relist()

    # --- the loop --------------------------------------------------------------------

    async def run(self) -> None:
        bind_cluster(self.cluster_id)  # its log lines and metrics, and its tasks', carry the id
        reporter = asyncio.create_task(self._report(), name=f"fleetgraph-status-{self.cluster_id}")
        try:
            await self._attempts()
        finally:
            reporter.cancel()
            await asyncio.gather(reporter, return_exceptions=True)

    async def _attempts(self) -> None:
        # An attempt that fails before listing costs one /version: it is retried at the probe
        # interval at most, so an API server that comes back is synced within seconds. One that
        # fails later (a bug, the database) would relist everything: it backs off fully.
        setup = self._backoff(maximum=min(self._options.backoff_max, self._options.probe_interval))
        backoff = self._backoff()
        while True:
            listing = False
            try:
                self._kubeconfig = open_kubeconfig(self._vault, self.record)
                async with open_api_client(
                    self._kubeconfig,
                    connect_timeout=self._options.connect_timeout,
                    read_timeout=self._options.read_timeout,
                    network=self._options.network,
                ) as api:
                    await self._set_version(await get_version(api))
                    listing = True
                    await self._sync(api, backoff, setup)
            except asyncio.CancelledError:
                raise
            except _CLUSTER_ERRORS as exc:
                stop_if_cancelled()
                self._setup_failed(exc)
            except TRANSIENT_DB_ERRORS as exc:
                stop_if_cancelled()
                log.warning("cluster %s: database error (%s); retrying", self.cluster_id,
                            type(exc).__name__)
            except Exception as exc:  # a bug here must not take other clusters down
                stop_if_cancelled()
                log.exception("cluster %s: sync failed", self.cluster_id)
                self._setup_failed(exc)
            finally:
                self._informers = []
                self._answer_faults.clear()
                self._failed_kinds.clear()
                self._heartbeat_error = None
            await (backoff if listing else setup).wait()

    def _setup_failed(self, exc: BaseException) -> None:
        self._setup_error = exc
        self._changed()

    def _specs(self, ledger: OomLedger) -> list[KindSpec]:
        return kind_specs(ledger)

    async def _sync(self, api: ApiClient, backoff: Backoff, setup: Backoff) -> None:
        # /version answered like Kubernetes: whatever failed before is over.
        self._setup_error = None
        self._changed()
        writer = ClusterWriter(
            pool=self._pool,
            vault=self._vault,
            cluster_id=self.cluster_id,
            organization_id=self.record.organization_id,
        )
        ledger = OomLedger()
        async with self._pool.acquire() as conn:
            await ledger.load(conn, self.cluster_id)
        flusher = self._flusher = Flusher(writer, options=self._options)
        self._informers = [
            Informer(
                api=api,
                spec=spec,
                sink=flusher,
                page_size=self._options.page_size,
                watch_timeout_s=self._options.watch_timeout_s,
                connect_timeout=self._options.connect_timeout,
                backoff=self._backoff(),
                on_contact=functools.partial(self._watch_contact, spec.kind),
                on_failure=functools.partial(self._watch_failed, spec.kind),
                on_state=self._informer_changed,
            )
            for spec in self._specs(ledger)
        ]
        self._changed()
        try:
            async with asyncio.TaskGroup() as tasks:
                # The heartbeat runs from the start: a server that goes away during the first
                # lists is noticed, and so is its return.
                tasks.create_task(self._heartbeat(api))
                # The flusher writes each page as the lists hand it over: the database
                # inserts one page while the next is fetched and mapped.
                tasks.create_task(flusher.run())
                for informer in self._informers:
                    # An optional kind the cluster refuses is asked again by its run().
                    await informer.list_with_retry(wait_if_refused=False)
                flusher.touch(assess=True)  # the whole picture is in: its verdict now
                await flusher.drain()
                tasks.create_task(self._analyze())
                backoff.reset()
                setup.reset()
                log.info("cluster %s listed; watching", self.cluster_id)
                for informer in self._informers:
                    tasks.create_task(informer.run())
                tasks.create_task(self._metrics(api))
                tasks.create_task(self._assess_periodically())
        except ExceptionGroup as group:
            # The TaskGroup wraps what failed; ``run`` classifies the failure itself (an
            # unreachable cluster, a database blip, a bug), so hand it the first one.
            raise _first_failure(group) from group

    async def _analyze(self) -> None:
        """Statistics for the freshly loaded rows: plans for the per-flush statements need
        them, which a bulk load lacks. Beside the watches, not before them: it takes a
        third of a second on a 10,000-pod cluster, and nothing it does is needed to write.

        Being beside them, it may be running when the sync is stopped: the connection is
        then released before the task ends (asyncpg shields a release from the cancellation,
        so ``pool.execute`` would end first and leave the connection busy behind it)."""
        try:
            conn = await self._pool.acquire()
            try:
                await conn.execute(
                    "ANALYZE k8s_pods, k8s_replicasets, k8s_deployments, k8s_nodes,"
                    " k8s_namespaces"
                )
            finally:
                await self._pool.release(conn)
        except (*TRANSIENT_DB_ERRORS, asyncpg.PostgresError):
            stop_if_cancelled()

    # --- loops -----------------------------------------------------------------------

    async def _heartbeat(self, api: ApiClient) -> None:
        """``/version`` on an interval: how an idle cluster's outage becomes visible. While
        the cluster is in trouble it runs at the probe interval, so that the moment the server
        answers again is seen within seconds, and every informer backing off retries then."""
        while True:
            await self._heartbeat_pause()
            try:
                await get_version(api)
            except TRANSIENT_KUBE_ERRORS as exc:
                self._heartbeat_error = exc
                self._changed()
            else:
                if self._heartbeat_error is not None:
                    self._heartbeat_error = None
                    self._changed()
                    self._seen_healthy("the API server answers again")

    def _in_trouble(self) -> bool:
        return self._heartbeat_error is not None or any(
            i.error is not None for i in self._informers
        )

    async def _heartbeat_pause(self) -> None:
        started = time.monotonic()
        while True:
            interval = self._options.heartbeat_interval
            if self._in_trouble():
                interval = min(interval, self._options.probe_interval)
            remaining = started + interval - time.monotonic()
            if remaining <= 0:
                return
            self._trouble.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._trouble.wait(), remaining)

    def _seen_healthy(self, why: str) -> None:
        """The cluster answered after a failure: every informer backing off tries again now
        (its backoff starts over), instead of sleeping out a delay grown during the fault."""
        woken = [i.spec.kind for i in self._informers if i.state is InformerState.BACKOFF]
        for informer in self._informers:
            informer.retry_now()
        if woken:
            log.info("cluster %s: %s; retrying %s now", self.cluster_id, why, ", ".join(woken))

    async def _assess_periodically(self) -> None:
        """Time alone changes some verdicts (a pod Pending for too long)."""
        while True:
            await asyncio.sleep(self._options.health_interval)
            if self._flusher is not None:
                self._flusher.touch(assess=True)

    async def _metrics(self, api: ApiClient) -> None:
        while True:
            await self.sample_metrics(api)
            await asyncio.sleep(self._options.metrics_interval)

    async def sample_metrics(self, api: ApiClient) -> None:
        sampled_at = datetime.now(UTC).replace(microsecond=0)
        try:
            snapshot = await read_metrics(api, page_size=self._options.page_size)
        except NotFound:
            await self._set_metrics_available(False)
            return
        except (Redirected, UnexpectedAnswer) as exc:
            # metrics.k8s.io is optional; one that does not answer like metrics-server is
            # treated as absent, and the rest of the cluster keeps syncing.
            log.warning("cluster %s: metrics.k8s.io unusable (%s)", self.cluster_id,
                        describe_error(exc, self._kubeconfig))
            await self._set_metrics_available(False)
            return
        except TRANSIENT_KUBE_ERRORS as exc:
            log.info("cluster %s: metrics unavailable this round (%s)", self.cluster_id,
                     type(exc).__name__)
            return
        lock = self._flusher.writer.lock if self._flusher is not None else asyncio.Lock()
        try:
            async with lock, self._pool.acquire() as conn, conn.transaction():
                await write_metrics(
                    conn, cluster_id=self.cluster_id, snapshot=snapshot, sampled_at=sampled_at
                )
        except TRANSIENT_DB_ERRORS as exc:
            stop_if_cancelled()
            log.warning("cluster %s: metrics not written (%s)", self.cluster_id,
                        type(exc).__name__)
            return
        await self._set_metrics_available(True)
        if self._flusher is not None:
            self._flusher.touch(kinds=["metrics"])

    # --- what informers report -------------------------------------------------------

    def _informer_changed(self, informer: Informer) -> None:
        self._changed()
        if informer.error is not None:
            self._trouble.set()  # the heartbeat goes to the probe interval

    async def _watch_contact(self, kind: str) -> None:
        """A watch of ``kind`` delivered events (or ran its course): it works again."""
        self._answer_faults.pop(kind, None)
        if kind in self._failed_kinds:
            self._failed_kinds.discard(kind)
            self._seen_healthy(f"{kind} watches again")
        self._changed()

    async def _watch_failed(self, kind: str, exc: BaseException) -> None:
        # An answer that is not a watch means this is not a Kubernetes API server, and it stays
        # so until that kind watches properly (see _verdict for what the rest mean).
        if isinstance(exc, Redirected | UnexpectedAnswer):
            self._answer_faults[kind] = exc
        self._failed_kinds.add(kind)
        self._changed()

    # --- status ----------------------------------------------------------------------

    def _changed(self) -> None:
        self._status_changed.set()

    def _verdict(self) -> tuple[str, str | None] | None:
        """The status the cluster is in and its ``last_sync_error``, or None while nothing
        decides it (kinds still listing, or relisting after a 410): it keeps what it was."""
        kc = self._kubeconfig
        if self._setup_error is not None:
            return status_for(self._setup_error), describe_error(self._setup_error, kc)
        if self._answer_faults:
            return UNREACHABLE, describe_error(next(iter(self._answer_faults.values())), kc)
        failures: list[tuple[str | None, BaseException]] = [
            (i.spec.kind, i.error) for i in self._informers if i.error is not None
        ]
        if self._heartbeat_error is not None:
            failures.append((None, self._heartbeat_error))
        if failures:
            statuses = {status_for(exc) for _, exc in failures}
            worst = UNREACHABLE if UNREACHABLE in statuses else DEGRADED
            chosen = [(kind, exc) for kind, exc in failures if status_for(exc) == worst]
            kinds = [kind for kind, _ in chosen if kind is not None]
            return worst, describe_error(chosen[0][1], kc, kinds=kinds)
        if self._informers and all(i.state in _SYNCING for i in self._informers):
            return ACTIVE, None
        return None

    def _progress(self) -> dict[str, Any] | None:
        """``sync_progress``: each kind's state, when it entered it, its last list, and while
        it backs off the next try and why."""
        if not self._informers:
            return None
        progress: dict[str, Any] = {}
        for informer in self._informers:
            entry: dict[str, Any] = {
                "state": informer.state.value,
                "since": informer.since.isoformat(),
                "startedAt": _iso(informer.list_started_at),
                "listedAt": _iso(informer.listed_at),
                "items": informer.listed_items if informer.listed_at else None,
                "resourceVersion": informer.listed_version,
            }
            if informer.state in (InformerState.BACKOFF, InformerState.REFUSED):
                entry["retryAt"] = _iso(informer.retry_at)
            if informer.error is not None:
                entry["error"] = describe_error(informer.error, self._kubeconfig)
                entry["failures"] = informer.failures
            if informer.refusal is not None:
                entry["refused"] = describe_error(informer.refusal, self._kubeconfig)
            progress[informer.spec.kind] = {k: v for k, v in entry.items() if v is not None}
        return progress

    async def _report(self) -> None:
        """Write status and progress whenever they change, a burst of changes at a time; a
        database error is retried (the change stays pending) without disturbing the sync."""
        retry = Backoff(initial=0.1, maximum=2.0, rng=self._rng)
        while True:
            await self._status_changed.wait()
            await asyncio.sleep(self._options.flush_interval)
            self._status_changed.clear()
            try:
                await self._write_status()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                stop_if_cancelled()
                self._status_changed.set()
                if isinstance(exc, TRANSIENT_DB_ERRORS):
                    log.warning("cluster %s: status not written (%s); retrying",
                                self.cluster_id, type(exc).__name__)
                else:
                    log.exception("cluster %s: status not written", self.cluster_id)
                await retry.wait()
            else:
                retry.reset()

    async def _write_status(self) -> None:
        verdict = self._verdict()
        progress = self._progress()
        encoded = dumps(progress) if progress is not None else None
        status: str
        error: str | None
        if verdict is not None:
            status, error = verdict
        elif self._written is not None:
            status, error = self._written[0], self._written[1]
        else:
            # A sync starting over (a new replica, a database back, a re-keyed cluster) is not
            # synced until its kinds are listed and watched again, whatever the row said.
            status, error = PENDING, None
        key = (status, error, encoded)
        if key == self._written:
            return
        moved = self._written is None or (status, error) != self._written[:2]
        # Take turns with the flusher: a flush holds key-share locks on the cluster row (its
        # rows' foreign keys) and then updates it; this updates it and then locks it for the
        # health verdict. Overlapping, the two would deadlock.
        lock = self._flusher.writer.lock if self._flusher is not None else asyncio.Lock()
        async with lock, self._pool.acquire() as conn, conn.transaction():
            await conn.execute(
                """
                UPDATE k8s_clusters
                   SET status = $2,
                       last_sync_error = $3,
                       last_synced_at = CASE WHEN $2 = 'active' AND $4 THEN now()
                                             ELSE last_synced_at END,
                       sync_progress = COALESCE($5::jsonb, sync_progress),
                       updated_at = now()
                 WHERE id = $1 AND status <> 'disabled'
                """,
                self.cluster_id, status, error, moved, progress,
            )
            changed, health = False, None
            if moved:
                report, changed = await update_cluster_health(conn, self.cluster_id)
                health = report.status.value
            await notify_changes(
                conn,
                cluster_id=self.cluster_id,
                organization_id=self.record.organization_id,
                kinds=["cluster"],
                health_changed=changed,
                health_status=health,
            )
        self._written = key
        if moved and status != self.status:
            self._log_status(status, error)
        self.status = status
        if status == ACTIVE:
            self.synced.set()

    def _log_status(self, status: str, error: str | None) -> None:
        if status == ACTIVE:
            log.info("cluster %s active: every kind listed and watching", self.cluster_id)
        elif status == PENDING:
            log.info("cluster %s pending: listing every kind", self.cluster_id)
        else:
            log.warning("cluster %s %s: %s", self.cluster_id, status, error)

    # --- cluster row -----------------------------------------------------------------

    async def _set_version(self, version: object) -> None:
        if isinstance(version, str) and version:
            await self._pool.execute(
                "UPDATE k8s_clusters SET kubernetes_version = $2 WHERE id = $1"
                " AND kubernetes_version IS DISTINCT FROM $2",
                self.cluster_id,
                version[:64],
            )

    async def _set_metrics_available(self, available: bool) -> None:
        status = await self._pool.execute(
            "UPDATE k8s_clusters SET metrics_available = $2 WHERE id = $1"
            " AND metrics_available IS DISTINCT FROM $2",
            self.cluster_id,
            available,
        )
        if status != "UPDATE 0" and self._flusher is not None:
            self._flusher.touch(kinds=["cluster"])


def kind_specs(ledger: OomLedger) -> list[KindSpec]:
    """What the sync lists and watches, in order, and how each object becomes a buffer
    value (the demo's history replays its fleet through the same decoders)."""
    def tombstone(row: Row) -> Row:
        row["deleted_at"] = datetime.now(UTC)
        return row

    def pod(obj: dict[str, Any]) -> Row:
        return ledger.apply(map_pod(obj))

    def table(
        kind: str, api_kind: str, path: str, mapper: Any, **extra: Any
    ) -> KindSpec:
        return KindSpec(kind=kind, api_kind=api_kind, path=path, decode=mapper,
                        tombstone=tombstone, **extra)

    return [
        table("namespaces", "Namespace", "/api/v1/namespaces", map_namespace),
        table("nodes", "Node", "/api/v1/nodes", map_node),
        table("replicasets", "ReplicaSet", "/apis/apps/v1/replicasets", map_replicaset),
        table("deployments", "Deployment", "/apis/apps/v1/deployments", map_deployment),
        table("pods", "Pod", "/api/v1/pods", pod),
        table("persistentvolumeclaims", "PersistentVolumeClaim",
              "/api/v1/persistentvolumeclaims", map_persistent_volume_claim),
        table("persistentvolumes", "PersistentVolume", "/api/v1/persistentvolumes",
              map_persistent_volume),
        KindSpec(kind=QUOTAS, api_kind="ResourceQuota", path="/api/v1/resourcequotas",
                 decode=map_resource_quota),
        # Optional: its grant (deploy/watched-cluster-helm-rbac.yaml) may be left out.
        KindSpec(kind=HELM, api_kind="Secret", path="/api/v1/secrets",
                 decode=decode_storage_secret, label_selector=HELM_LABEL_SELECTOR,
                 optional=True),
    ]


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def _first_failure(group: BaseExceptionGroup[Any]) -> BaseException:
    """The first leaf exception of a (possibly nested) exception group."""
    first: BaseException = group
    while isinstance(first, BaseExceptionGroup):
        first = first.exceptions[0]
    return first


def dumps(value: Any) -> str:
    return orjson.dumps(value).decode()
