"""One informer per cluster and kind: list, then watch from the list's resourceVersion.

This is client-go's reflector loop, kept small:

1. a paged list (``limit``/``continue``) becomes a *snapshot* in the cluster's buffer (the
   flush marks deleted whatever of that kind the snapshot does not hold);
2. a watch from the list's ``resourceVersion`` with bookmarks feeds ADDED/MODIFIED/DELETED
   events into the same buffer, remembering the newest version it saw;
3. when the stream ends (server timeout, a cut connection) it re-watches from that version,
   so nothing between two streams is lost;
4. ``410 Gone`` sends it back to 1.

A bad object is logged by kind and name (never its body) and skipped; the informer goes on.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import aiohttp
import orjson
from kubernetes_asyncio.client import ApiClient

from app.metrics import WatchRestart, sync_relisted, sync_watch_restarted, watch_restart_reason
from sync.kubeapi import EmptyWatch, Gone, KubeApiError, list_pages, watch_events
from sync.mappers import BadObject, describe

__all__ = ["TRANSIENT_KUBE_ERRORS", "Backoff", "Informer", "KindSpec", "Sink"]

log = logging.getLogger(__name__)

# An API server shutting down ends each watch once; a server that does not implement watch
# ends every one. This many in a row (with backoff in between) is the latter.
EMPTY_WATCHES_BEFORE_FAILURE = 3

# Failures worth retrying: the network, the server's 5xx/429, a stream cut mid-JSON, and an
# answer that is not Kubernetes (a KubeApiError too: retried with backoff, never in a hot loop).
TRANSIENT_KUBE_ERRORS: tuple[type[BaseException], ...] = (
    aiohttp.ClientError,
    OSError,
    TimeoutError,
    KubeApiError,
    orjson.JSONDecodeError,
)


@dataclass(frozen=True, slots=True)
class KindSpec:
    """What to list and watch for one kind, and how its objects become buffer values."""

    kind: str  # the buffer's kind, e.g. "pods"
    api_kind: str  # Kubernetes kind for log lines, e.g. "Pod"
    path: str  # e.g. "/api/v1/pods"
    decode: Callable[[dict[str, Any]], Any]  # raises BadObject
    # The value a DELETED event stores (default: nothing but the uid's removal).
    tombstone: Callable[[dict[str, Any]], Any] | None = None
    label_selector: str | None = None


class Sink(Protocol):
    """Where informers put changes (the cluster's flusher)."""

    def put(self, kind: str, uid: str, value: Any) -> None: ...

    def replace(self, kind: str, values: dict[str, Any]) -> None: ...


class Backoff:
    """Exponential backoff with full jitter (0.5x-1.5x), reset by :meth:`reset`."""

    def __init__(self, *, initial: float, maximum: float, rng: random.Random | None = None):
        self.initial = initial
        self.maximum = maximum
        self.failures = 0
        self._rng = rng or random.Random()

    def next_delay(self, *, at_least: float = 0.0) -> float:
        self.failures += 1
        base = min(self.maximum, self.initial * 2 ** (self.failures - 1))
        return max(at_least, base * self._rng.uniform(0.5, 1.5))

    async def wait(self, *, at_least: float = 0.0) -> None:
        await asyncio.sleep(self.next_delay(at_least=at_least))

    def reset(self) -> None:
        self.failures = 0


def _uid(obj: dict[str, Any]) -> str | None:
    metadata = obj.get("metadata")
    uid = metadata.get("uid") if isinstance(metadata, dict) else None
    return uid if isinstance(uid, str) and uid else None


class Informer:
    """List + watch for one kind of one cluster."""

    def __init__(
        self,
        *,
        api: ApiClient,
        spec: KindSpec,
        sink: Sink,
        page_size: int,
        watch_timeout_s: int,
        connect_timeout: float,
        backoff: Backoff,
        on_contact: Callable[[], Awaitable[None]] | None = None,
        on_failure: Callable[[BaseException], Awaitable[None]] | None = None,
    ) -> None:
        self.spec = spec
        self._api = api
        self._sink = sink
        self._page_size = page_size
        self._watch_timeout_s = watch_timeout_s
        self._connect_timeout = connect_timeout
        self._backoff = backoff
        self._on_contact = on_contact
        self._on_failure = on_failure
        self._relist = asyncio.Event()
        self.resource_version: str | None = None
        self.listed_items = 0
        self.relists = 0
        self.skipped = 0
        self._empty_watches = 0

    # --- decoding --------------------------------------------------------------------

    def _decode(self, obj: dict[str, Any]) -> tuple[str, Any] | None:
        uid = _uid(obj)
        try:
            if uid is None:
                raise BadObject("no metadata.uid")
            return uid, self.spec.decode(obj)
        except BadObject as exc:
            self.skipped += 1
            log.warning("skipping %s: %s", describe(obj, kind=self.spec.api_kind), exc)
        except Exception:  # a mapper bug must not stop the cluster; the body is never logged
            self.skipped += 1
            log.exception("skipping %s: unexpected error", describe(obj, kind=self.spec.api_kind))
        return None

    def _apply(self, event: dict[str, Any]) -> None:
        obj = event.get("object")
        if not isinstance(obj, dict):
            return
        version = (obj.get("metadata") or {}).get("resourceVersion")
        kind = event.get("type")
        if kind == "BOOKMARK":
            self.resource_version = version or self.resource_version
            return
        if kind == "DELETED":
            uid = _uid(obj)
            if uid is not None:
                tombstone = None
                if self.spec.tombstone is not None:
                    decoded = self._decode(obj)
                    # An undecodable final state is skipped (and logged by _decode): the row
                    # keeps its last good state until the next relist marks it deleted.
                    if decoded is None:
                        self.resource_version = version or self.resource_version
                        return
                    tombstone = self.spec.tombstone(decoded[1])
                self._sink.put(self.spec.kind, uid, tombstone)
        elif kind in ("ADDED", "MODIFIED"):
            decoded = self._decode(obj)
            if decoded is not None:
                self._sink.put(self.spec.kind, *decoded)
        self.resource_version = version or self.resource_version

    # --- list ------------------------------------------------------------------------

    async def list(self) -> str:
        """A full paged list into the buffer as a snapshot; returns its resourceVersion."""
        while True:
            try:
                values: dict[str, Any] = {}
                version: str | None = None
                async for page in list_pages(
                    self._api,
                    self.spec.path,
                    limit=self._page_size,
                    label_selector=self.spec.label_selector,
                ):
                    for obj in page.items:
                        decoded = self._decode(obj)
                        if decoded is not None:
                            values[decoded[0]] = decoded[1]
                    version = page.resource_version or version
            except Gone:
                # A continue token expired between pages (history compacted meanwhile):
                # the only consistent answer is a fresh list from the start.
                log.info("%s list continue token expired; listing again", self.spec.kind)
                continue
            self._sink.replace(self.spec.kind, values)
            self.listed_items = len(values)
            self.resource_version = version or "0"
            return self.resource_version

    # --- watch -----------------------------------------------------------------------

    def request_relist(self) -> None:
        """Stop watching and list again (``triggerSync``)."""
        self._relist.set()

    async def _contact(self) -> None:
        self._backoff.reset()
        self._empty_watches = 0
        if self._on_contact is not None:
            await self._on_contact()

    async def _watch_until_gone(self) -> None:
        """Watch, re-watching from the last version seen, until 410 Gone."""
        while True:
            assert self.resource_version is not None
            contacted = False
            try:
                async for event in watch_events(
                    self._api,
                    self.spec.path,
                    resource_version=self.resource_version,
                    timeout_seconds=self._watch_timeout_s,
                    connect_timeout=self._connect_timeout,
                    label_selector=self.spec.label_selector,
                ):
                    self._apply(event)
                    if not contacted:
                        contacted = True
                        await self._contact()
                if not contacted:
                    # A quiet stream that ran its course is a working watch too (one that ends
                    # at once without events is refused by watch_events).
                    await self._contact()
                sync_watch_restarted(self.spec.kind, WatchRestart.CUT)
            except Gone:
                # 410 is normal: our version fell out of the server's watch history (etcd
                # compaction, or we were away too long). client-go relists; so do we.
                sync_watch_restarted(self.spec.kind, WatchRestart.GONE)
                return
            except EmptyWatch as exc:
                sync_watch_restarted(self.spec.kind, WatchRestart.ERROR)
                self._empty_watches += 1
                if self._empty_watches >= EMPTY_WATCHES_BEFORE_FAILURE and self._on_failure:
                    await self._on_failure(exc)
                await self._backoff.wait()
            except TRANSIENT_KUBE_ERRORS as exc:
                sync_watch_restarted(self.spec.kind, watch_restart_reason(exc))
                if self._on_failure is not None:
                    await self._on_failure(exc)
                retry_after = exc.retry_after if isinstance(exc, KubeApiError) else None
                await self._backoff.wait(at_least=retry_after or 0.0)

    async def run(self) -> None:
        """Watch forever from the last list; relist on 410 or when asked. Call :meth:`list`
        first. Only cancellation ends it."""
        while True:
            self._relist.clear()
            watcher = asyncio.ensure_future(self._watch_until_gone())
            relist = asyncio.ensure_future(self._relist.wait())
            try:
                await asyncio.wait({watcher, relist}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in (watcher, relist):
                    task.cancel()
                await asyncio.gather(watcher, relist, return_exceptions=True)
            if watcher.done() and not watcher.cancelled() and watcher.exception() is not None:
                raise watcher.exception()  # type: ignore[misc]
            await self._list_with_retry()

    async def _list_with_retry(self) -> None:
        while True:
            try:
                await self.list()
                self.relists += 1
                sync_relisted(self.spec.kind)
                self._backoff.reset()
                return
            except TRANSIENT_KUBE_ERRORS as exc:
                if self._on_failure is not None:
                    await self._on_failure(exc)
                retry_after = exc.retry_after if isinstance(exc, KubeApiError) else None
                await self._backoff.wait(at_least=retry_after or 0.0)


def now_utc() -> datetime:
    return datetime.now(UTC)
