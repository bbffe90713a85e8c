"""Prometheus metrics: the families FleetGraph exports, the small functions that feed them, and
the ``/metrics`` rendering.

Why one module: every family is declared once, here, with its help text, buckets and labels,
so what an operator can graph is readable in one place and no label can sneak in elsewhere.
Other modules never touch ``prometheus_client`` objects; they call one function per fact
(``sync_flushed``, ``graphql_error``…), which keeps their hot paths to a dictionary lookup and
lets this module enforce the label rules:

* per-cluster series are labelled by cluster **id** (a UUID the registry assigned), never by a
  name or label a tenant chose;
* every other label takes values from a small set fixed by our code (a kind, a reason, an
  operation type, a role); an error code is accepted only while fewer than
  ``MAX_ERROR_CODES`` distinct ones were seen, past that it is counted as ``OTHER``;
* no label ever carries query text, a variable, a token or a message.

Series of a cluster that is no longer registered are dropped at the next scrape, so a fleet
with churn does not grow the registry forever.

What already lives in the database (a cluster's ``status``, ``last_synced_at``,
``metrics_available``, ``sync_progress``) is read at scrape time rather than mirrored, so every
replica reports the same truth whichever replica syncs the cluster.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from importlib import metadata
from typing import Any, Final, Protocol

import aiohttp
import asyncpg
from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Histogram, Info
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from app.logs import bound_cluster

__all__ = [
    "REGISTRY",
    "LoopLagMonitor",
    "MetricsListener",
    "WatchRestart",
    "graphql_error",
    "graphql_request",
    "package_version",
    "refused_query_cost",
    "render_metrics",
    "sync_event_buffered",
    "sync_flush_started",
    "sync_flushed",
    "sync_relisted",
    "sync_snapshot_buffered",
    "sync_watch_restarted",
    "watch_restart_reason",
]

log = logging.getLogger(__name__)

MAX_ERROR_CODES: Final = 32
SCRAPE_DATABASE_TIMEOUT_S: Final = 2.0


def package_version() -> str:
    """The installed FleetGraph version (``--version`` and ``fleetgraph_build_info``)."""
    try:
        return metadata.version("fleetgraph")
    except metadata.PackageNotFoundError:  # a source tree that was never installed
        return "0+unknown"


# Our own registry, not prometheus_client's global one: a library that registers into the
# global registry cannot add series to our exposition, and tests that build several apps in
# one process never collide. The process, platform and GC collectors are the standard ones.
REGISTRY = CollectorRegistry(auto_describe=True)
# From a fast request (5 ms) to one at the request deadline (30 s).
_SECONDS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)
GCCollector(registry=REGISTRY)

_BUILD = Info("fleetgraph_build", "The running FleetGraph version.", registry=REGISTRY)
_BUILD.info({"version": package_version()})

# --- GraphQL -------------------------------------------------------------------------------

_GRAPHQL_DURATION = Histogram(
    "fleetgraph_graphql_request_duration_seconds",
    "GraphQL HTTP requests, from arrival to response, by operation type (query, mutation; "
    "'none' when the request never reached an operation, e.g. unparsable JSON).",
    ["operation"],
    buckets=_SECONDS_BUCKETS,
    registry=REGISTRY,
)
_GRAPHQL_ERRORS = Counter(
    "fleetgraph_graphql_errors",
    "GraphQL errors returned to clients, by extensions.code.",
    ["code"],
    registry=REGISTRY,
)
_REFUSED_COST = Histogram(
    "fleetgraph_graphql_refused_query_cost",
    "Static cost of operations refused for being over the caller's budget, by role.",
    ["role"],
    buckets=(10_000, 25_000, 50_000, 100_000, 250_000, 1_000_000, 10_000_000, 100_000_000),
    registry=REGISTRY,
)
_OPERATIONS: Final = frozenset({"query", "mutation", "subscription", "none"})
_ROLES: Final = frozenset({"viewer", "operator", "admin"})
_CODE = re.compile(r"^[A-Z][A-Z0-9_]{0,39}$")
_seen_codes: set[str] = set()


def _bounded_code(code: object) -> str:
    if not isinstance(code, str) or not _CODE.match(code):
        return "OTHER"
    if code not in _seen_codes:
        if len(_seen_codes) >= MAX_ERROR_CODES:
            return "OTHER"
        _seen_codes.add(code)
    return code


def graphql_request(operation: str, seconds: float) -> None:
    """One GraphQL HTTP request answered after ``seconds``."""
    _GRAPHQL_DURATION.labels(operation if operation in _OPERATIONS else "none").observe(seconds)


def graphql_error(code: object) -> None:
    """One error returned to a client, by its ``extensions.code``."""
    _GRAPHQL_ERRORS.labels(_bounded_code(code)).inc()


def refused_query_cost(cost: object, role: object) -> None:
    """An operation refused before execution for costing ``cost``."""
    if isinstance(cost, int | float) and not isinstance(cost, bool) and cost >= 0:
        _REFUSED_COST.labels(role if role in _ROLES else "unknown").observe(cost)


# --- the event loop ------------------------------------------------------------------------

_LOOP_LAG = Histogram(
    "fleetgraph_event_loop_lag_seconds",
    "How late the event loop woke a sleeping task: the API, sync and subscriptions share "
    "this loop, so lag here is latency for all of them.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
    registry=REGISTRY,
)


class LoopLagMonitor:
    """Sleeps ``interval`` seconds again and again and records the overshoot: a loop held by
    a long synchronous stretch (a huge JSON encode, a slow mapper) wakes it late."""

    def __init__(self, *, interval: float = 0.25) -> None:
        self.interval = interval
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._measure(), name="fleetgraph-loop-lag")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _measure(self) -> None:
        while True:
            before = time.perf_counter()
            await asyncio.sleep(self.interval)
            _LOOP_LAG.observe(max(0.0, time.perf_counter() - before - self.interval))


# --- cluster sync --------------------------------------------------------------------------


class WatchRestart(StrEnum):
    """Why a watch was started again."""

    GONE = "gone"  # 410: the version fell out of the watch history; the informer relists
    CUT = "cut"  # the stream ended (the server's timeout, a proxy, a dropped connection)
    ERROR = "error"  # the watch failed (a 5xx, a refused connection, a broken answer)


# A stream broken off mid-way (a proxy's idle timeout, a dropped connection, a server going
# away) rather than refused or answered with an error.
_CUT_STREAM: Final[tuple[type[BaseException], ...]] = (
    aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError, ConnectionResetError,
    asyncio.IncompleteReadError,
)


def watch_restart_reason(exc: BaseException) -> WatchRestart:
    """Why a watch that failed with ``exc`` is started again: a cut stream or an error."""
    return WatchRestart.CUT if isinstance(exc, _CUT_STREAM) else WatchRestart.ERROR


_WATCH_RESTARTS = Counter(
    "fleetgraph_sync_watch_restarts",
    "Watches started again, by cluster id, kind and reason (gone = 410, cut, error).",
    ["cluster_id", "kind", "reason"],
    registry=REGISTRY,
)
_RELISTS = Counter(
    "fleetgraph_sync_relists",
    "Full lists after the initial one (after 410 Gone or a requested resync).",
    ["cluster_id", "kind"],
    registry=REGISTRY,
)
_EVENTS = Counter(
    "fleetgraph_sync_events_applied",
    "Watch events (ADDED, MODIFIED, DELETED) applied to the cluster's write buffer, by kind.",
    ["cluster_id", "kind"],
    registry=REGISTRY,
)
_FLUSH_SIZE = Histogram(
    "fleetgraph_sync_flush_batch_size",
    "Changes written per flush (one transaction each).",
    ["cluster_id"],
    buckets=(0, 1, 5, 25, 100, 500, 1_000, 5_000, 20_000, 100_000),
    registry=REGISTRY,
)
_FLUSH_DURATION = Histogram(
    "fleetgraph_sync_flush_duration_seconds",
    "Duration of successful flushes (write, health, NOTIFY, commit).",
    ["cluster_id"],
    buckets=_SECONDS_BUCKETS,
    registry=REGISTRY,
)
_CHANGE_LAG = Histogram(
    "fleetgraph_sync_change_commit_lag_seconds",
    "From the oldest change of a flush arriving in the buffer to its commit: how stale the "
    "database is behind the cluster's API.",
    ["cluster_id"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0),
    registry=REGISTRY,
)
_PER_CLUSTER: Final = (_WATCH_RESTARTS, _RELISTS, _EVENTS, _FLUSH_SIZE, _FLUSH_DURATION,
                       _CHANGE_LAG)


@dataclass(eq=False)
class _ClusterSeries:
    """One cluster's label children (cached: ``labels()`` takes a lock each call) and its
    change clock."""

    cluster_id: str
    children: dict[tuple[Any, tuple[str, ...]], Any] = field(default_factory=dict)
    pending_since: float | None = None  # oldest change not yet taken by a flush
    flushing_since: float | None = None  # oldest change of the flush in progress (or failed)

    def child(self, metric: Any, *labels: str) -> Any:
        key = (metric, labels)
        found = self.children.get(key)
        if found is None:
            found = self.children[key] = metric.labels(self.cluster_id, *labels)
        return found

    def forget(self) -> None:
        for metric, labels in self.children:
            with contextlib.suppress(KeyError):
                metric.remove(self.cluster_id, *labels)
        self.children.clear()


_clusters: dict[str, _ClusterSeries] = {}


def _series(cluster_id: uuid.UUID | str | None) -> _ClusterSeries | None:
    key = str(cluster_id) if cluster_id is not None else bound_cluster()
    if key is None:
        return None  # an informer run outside a cluster's sync (a unit test): nothing to tag
    found = _clusters.get(key)
    if found is None:
        found = _clusters[key] = _ClusterSeries(key)
    return found


def sync_event_buffered(cluster_id: uuid.UUID | str, kind: str) -> None:
    """A watch event of ``kind`` reached the cluster's buffer."""
    series = _series(cluster_id)
    if series is not None:
        series.child(_EVENTS, kind).inc()
        if series.pending_since is None:
            series.pending_since = time.monotonic()


def sync_snapshot_buffered(cluster_id: uuid.UUID | str) -> None:
    """A list snapshot reached the cluster's buffer (its lag clock starts, no event counted)."""
    series = _series(cluster_id)
    if series is not None and series.pending_since is None:
        series.pending_since = time.monotonic()


def sync_flush_started(cluster_id: uuid.UUID | str) -> float:
    """A flush took the buffer; returns its start time for :func:`sync_flushed`.

    A flush that fails is retried with its changes put back, so the oldest change of a failed
    flush stays the clock of the next one."""
    series = _series(cluster_id)
    if series is not None:
        times = [t for t in (series.flushing_since, series.pending_since) if t is not None]
        series.flushing_since = min(times) if times else None
        series.pending_since = None
    return time.monotonic()


def sync_flushed(cluster_id: uuid.UUID | str, *, changes: int, started: float) -> None:
    """A flush of ``changes`` committed (``started`` from :func:`sync_flush_started`)."""
    series = _series(cluster_id)
    if series is None:
        return
    now = time.monotonic()
    series.child(_FLUSH_SIZE).observe(changes)
    series.child(_FLUSH_DURATION).observe(now - started)
    if series.flushing_since is not None:
        series.child(_CHANGE_LAG).observe(now - series.flushing_since)
        series.flushing_since = None


def sync_watch_restarted(kind: str, reason: WatchRestart,
                         cluster_id: uuid.UUID | str | None = None) -> None:
    """A watch of ``kind`` is started again; the cluster is the one bound to this task unless
    given (informers do not know their cluster; ClusterSync binds it for them)."""
    series = _series(cluster_id)
    if series is not None:
        series.child(_WATCH_RESTARTS, kind, WatchRestart(reason).value).inc()


def sync_relisted(kind: str, cluster_id: uuid.UUID | str | None = None) -> None:
    """A full list of ``kind`` after the first (410 Gone, or a requested resync)."""
    series = _series(cluster_id)
    if series is not None:
        series.child(_RELISTS, kind).inc()


def forget_clusters_except(registered: Iterable[str]) -> None:
    """Drop the series of clusters no longer registered (deleted ones)."""
    keep = set(registered)
    for cluster_id in [c for c in _clusters if c not in keep]:
        _clusters.pop(cluster_id).forget()


# --- scrape time ---------------------------------------------------------------------------

CLUSTER_STATES: Final = ("pending", "active", "unreachable", "disabled")
_PROGRESS_KIND = re.compile(r"^[a-z][a-z_]{0,31}$")
_STATE = re.compile(r"^[a-z][a-z_]{0,23}$")
_CLUSTERS_SQL = """
SELECT id, status, metrics_available, EXTRACT(EPOCH FROM last_synced_at)::float8 AS synced,
       sync_progress
  FROM k8s_clusters
"""


class Counted(Protocol):
    """Anything that can say how many it holds (open subscriptions, open sockets)."""

    def __call__(self) -> int: ...


def pool_families(pool: asyncpg.Pool | None) -> Iterator[Metric]:
    """The pool's connections by state, its ceiling, and callers waiting for a connection."""
    if pool is None:
        return
    size, idle = pool.get_size(), pool.get_idle_size()
    connections = GaugeMetricFamily(
        "fleetgraph_db_pool_connections", "Database pool connections by state.",
        labels=["state"])
    connections.add_metric(["in_use"], size - idle)
    connections.add_metric(["idle"], idle)
    yield connections
    yield GaugeMetricFamily("fleetgraph_db_pool_max_connections",
                            "The pool's maximum size.",
                            value=pool.get_max_size())
    waiting = getattr(pool, "waiting", None)
    if isinstance(waiting, int):
        yield GaugeMetricFamily(
            "fleetgraph_db_pool_waiting",
            "Callers waiting for a pool connection (the API and every sync share the pool).",
            value=waiting)


def count_families(counts: dict[str, tuple[str, Counted | None]]) -> Iterator[Metric]:
    for name, (help_text, count) in counts.items():
        if count is not None:
            yield GaugeMetricFamily(name, help_text, value=count())


async def cluster_families(pool: asyncpg.Pool | None) -> list[Metric]:
    """Per-cluster state as the database has it; also prunes deleted clusters' series."""
    up = GaugeMetricFamily("fleetgraph_metrics_database_up",
                           "1 when this scrape could read cluster state from the database.")
    if pool is None:
        up.add_metric([], 0)
        return [up]
    try:
        async with asyncio.timeout(SCRAPE_DATABASE_TIMEOUT_S):
            rows = await pool.fetch(_CLUSTERS_SQL)
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        log.info("metrics scrape: cluster state unavailable (%s)", type(exc).__name__)
        up.add_metric([], 0)
        return [up]
    up.add_metric([], 1)
    state = GaugeMetricFamily(
        "fleetgraph_cluster_sync_state",
        "1 for the cluster's current sync state (pending, active, unreachable, disabled, and "
        "any state a later migration adds), 0 for the others.",
        labels=["cluster_id", "state"])
    synced = GaugeMetricFamily(
        "fleetgraph_cluster_last_successful_sync_timestamp_seconds",
        "When the cluster last synced successfully (Unix time).", labels=["cluster_id"])
    metrics_api = GaugeMetricFamily(
        "fleetgraph_cluster_metrics_api_available",
        "1 when the cluster serves metrics.k8s.io, 0 when it does not (absent: not yet known).",
        labels=["cluster_id"])
    listed = GaugeMetricFamily(
        "fleetgraph_cluster_listed_objects",
        "Objects in the last full list, by kind (from sync_progress).",
        labels=["cluster_id", "kind"])
    # The status column's CHECK constraint keeps its values a small fixed set; a state added
    # by a later migration is reported too (and still has to look like a state name).
    states = list(dict.fromkeys([*CLUSTER_STATES, *(
        r["status"] for r in rows if isinstance(r["status"], str) and _STATE.match(r["status"]))]))
    for row in rows:
        cluster_id = str(row["id"])
        for name in states:
            state.add_metric([cluster_id, name], 1.0 if row["status"] == name else 0.0)
        if row["synced"] is not None:
            synced.add_metric([cluster_id], row["synced"])
        if row["metrics_available"] is not None:
            metrics_api.add_metric([cluster_id], 1.0 if row["metrics_available"] else 0.0)
        progress = row["sync_progress"]
        for kind, entry in (progress.items() if isinstance(progress, dict) else ()):
            items = entry.get("items") if isinstance(entry, dict) else None
            if (_PROGRESS_KIND.match(kind) and isinstance(items, int | float)
                    and math.isfinite(items)):
                listed.add_metric([cluster_id, kind], items)
    forget_clusters_except(str(row["id"]) for row in rows)
    return [up, state, synced, metrics_api, listed]


class _Exposition(Collector):
    """The process-wide families followed by this scrape's own."""

    def __init__(self, scraped: list[Metric]) -> None:
        self._scraped = scraped

    def collect(self) -> Iterable[Metric]:
        yield from REGISTRY.collect()
        yield from self._scraped


async def render_metrics(
    *, pool: asyncpg.Pool | None, subscriptions: Counted | None = None,
    sockets: Counted | None = None, accept: str | None = None,
) -> tuple[bytes, str]:
    """The exposition body and its content type (OpenMetrics when the scraper asks for it)."""
    scraped: list[Metric] = [
        *pool_families(pool),
        *count_families({
            "fleetgraph_graphql_subscriptions_open": (
                "GraphQL subscriptions open on this replica.", subscriptions),
            "fleetgraph_websockets_open": ("Authenticated GraphQL WebSockets open.", sockets),
        }),
        *await cluster_families(pool),
    ]
    encoder, content_type = choose_encoder(accept or "")
    return encoder(_Exposition(scraped)), content_type


Scrape = Callable[[str | None], Awaitable[tuple[bytes, str]]]


class MetricsListener:
    """``/metrics`` on a port of its own (``FLEETGRAPH_PROMETHEUS=[HOST:]PORT``), for operators
    who keep the API port public and the metrics port inside the cluster network.

    aiohttp (already a dependency, for the Kubernetes client) serves it on the server's own
    loop, so the same scrape runs against the same pool; a second uvicorn would fight the
    first for the process's signal handlers."""

    def __init__(self, *, host: str, port: int, scrape: Scrape) -> None:
        self.host = host
        self.requested_port = port
        self._scrape = scrape
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/metrics", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self.requested_port).start()
        log.info("metrics served on http://%s:%d/metrics", self.host, self.port)

    @property
    def port(self) -> int:
        """The bound port (the requested one, or the one chosen for port 0)."""
        addresses = self._runner.addresses if self._runner is not None else []
        return int(addresses[0][1]) if addresses else self.requested_port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _handle(self, request: web.Request) -> web.Response:
        body, content_type = await self._scrape(request.headers.get("Accept"))
        return web.Response(body=body, headers={"Content-Type": content_type})
