"""One informer per cluster and kind: list, then watch from the list's resourceVersion.

This is client-go's reflector loop, kept small:

1. a paged list (``limit``/``continue``) hands each page's objects to the cluster's buffer as
   it arrives (so the flusher writes them while later pages are fetched and mapped), and ends
   with a *snapshot* of every uid it saw (the flush marks deleted whatever of that kind the
   snapshot does not hold);
2. a watch from the list's ``resourceVersion`` with bookmarks feeds ADDED/MODIFIED/DELETED
   events into the same buffer, remembering the newest version it saw;
3. when the stream ends (server timeout, a cut connection) it re-watches from that version,
   so nothing between two streams is lost;
4. ``410 Gone`` sends it back to 1.

A relist of an unchanged cluster should cost the HTTP and the JSON, nothing more: the informer
remembers the ``resourceVersion`` of each object it handed over, and an object listed again at
the same version (the same object: every write gives it a new version) goes into the snapshot
as :data:`~sync.writer.UNCHANGED` instead of being mapped again. The memory lasts as long as
the informer, so a restarted process (or a new mapper) maps everything once more.

A bad object is logged by kind and name (never its body) and skipped; the informer goes on.

Each informer says where it stands (:class:`InformerState`: listing, listed, watching, backing
off with the time of its next try, and the failure that sent it there), because a cluster is
only really synced when every one of its informers is watching, whatever ``/version`` says.
Its backoff can be cut short from outside (:meth:`Informer.retry_now`): when the cluster is
seen healthy again, an informer that had backed off for a minute should not sleep on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol

import aiohttp
import orjson
from kubernetes_asyncio.client import ApiClient

from app.metrics import WatchRestart, sync_relisted, sync_watch_restarted, watch_restart_reason
from sync.collector import collector_paused
from sync.kubeapi import (
    EmptyWatch,
    Gone,
    KubeApiError,
    UnexpectedAnswer,
    list_pages,
    watch_events,
)
from sync.mappers import BadObject, describe
from sync.writer import UNCHANGED

__all__ = ["TRANSIENT_KUBE_ERRORS", "Backoff", "Informer", "InformerState", "KindSpec", "Sink"]

log = logging.getLogger(__name__)

# An API server shutting down ends each watch once; a server that does not implement watch
# ends every one. This many in a row (with backoff in between) is the latter.
EMPTY_WATCHES_BEFORE_FAILURE = 3
# A stream that worked at least this long and is then cut (a proxy's idle timeout, a server
# restart, a dropped connection) is re-watched at once from where it stood, as client-go does;
# a stream cut sooner than that is a failure and backs off, so a server that cuts every stream
# at once is never re-watched in a hot loop.
STREAM_WORKED_S = 1.0
QUICK_CUTS_BEFORE_FAILURE = 2

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
    # A kind the cluster may refuse (403: its RBAC grant is optional) or not serve (404)
    # without harm to the rest: Helm release Secrets. Refused, it waits (state ``refused``)
    # and tries again every ``backoff_max``; it never holds the cluster back.
    optional: bool = False


class Sink(Protocol):
    """Where informers put changes (the cluster's flusher)."""

    def put(self, kind: str, uid: str, value: Any) -> None: ...

    def put_many(self, kind: str, values: dict[str, Any]) -> None: ...

    def replace(self, kind: str, values: dict[str, Any]) -> None: ...


class InformerState(StrEnum):
    """Where an informer stands (``k8s_clusters.sync_progress[kind].state``)."""

    PENDING = "pending"  # not listed yet
    LISTING = "listing"
    LISTED = "listed"  # listed; its watch starts once every kind is listed and written
    WATCHING = "watching"  # the server accepted the watch from our resourceVersion
    BACKOFF = "backoff"  # waiting before the next try (``retry_at``)
    REFUSED = "refused"  # an optional kind the cluster refuses; asked again at ``retry_at``


class Backoff:
    """Exponential backoff with full jitter (0.5x-1.5x), reset by :meth:`reset`.

    A wait can be cut short by :meth:`retry_now` (the cluster was seen healthy again), but
    never to less than the initial delay, nor before a server's ``Retry-After``: a wake-up
    must not turn retries into a hot loop or ignore a throttling server."""

    def __init__(self, *, initial: float, maximum: float, rng: random.Random | None = None):
        self.initial = initial
        self.maximum = maximum
        self.failures = 0
        self._rng = rng or random.Random()
        self._cut = asyncio.Event()

    def next_delay(self, *, at_least: float = 0.0) -> float:
        self.failures += 1
        base = min(self.maximum, self.initial * 2 ** (self.failures - 1))
        return max(at_least, base * self._rng.uniform(0.5, 1.5))

    async def wait(self, *, at_least: float = 0.0) -> None:
        await self.sleep(self.next_delay(at_least=at_least), at_least=at_least)

    async def sleep(self, delay: float, *, at_least: float = 0.0) -> None:
        """Sleep ``delay`` (from :meth:`next_delay`), or less if :meth:`retry_now` is called
        meanwhile: then until ``max(initial, at_least)`` after the start at the earliest."""
        started = time.monotonic()
        self._cut.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._cut.wait(), delay)
        floor = min(delay, max(self.initial, at_least)) - (time.monotonic() - started)
        if floor > 0:
            await asyncio.sleep(floor)

    def retry_now(self) -> None:
        """Start again from the initial delay, and end the current wait (see :meth:`sleep`)."""
        self.failures = 0
        self._cut.set()

    def reset(self) -> None:
        self.failures = 0


def _uid(obj: dict[str, Any]) -> str | None:
    metadata = obj.get("metadata")
    uid = metadata.get("uid") if isinstance(metadata, dict) else None
    return uid if isinstance(uid, str) and uid else None


def _identity(obj: dict[str, Any]) -> tuple[str | None, str | None]:
    """``(uid, resourceVersion)``, each None unless a non-empty string."""
    metadata = obj.get("metadata")
    if not isinstance(metadata, dict):
        return None, None
    uid, version = metadata.get("uid"), metadata.get("resourceVersion")
    return (uid if isinstance(uid, str) and uid else None,
            version if isinstance(version, str) and version else None)


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
        on_state: Callable[[Informer], None] | None = None,
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
        self._on_state = on_state
        self._relist = asyncio.Event()
        self.resource_version: str | None = None
        self.listed_items = 0
        self.relists = 0
        self.skipped = 0
        # Objects of the last list that were already handed over at that resourceVersion.
        self.unchanged = 0
        # uid -> resourceVersion of every object handed to the sink (see the module docstring)
        self._handed: dict[str, str] = {}
        self._empty_watches = 0
        self._quick_cuts = 0  # streams in a row cut before they worked (see STREAM_WORKED_S)
        # Where it stands, for sync_progress and the cluster's status.
        self.state = InformerState.PENDING
        self.since = now_utc()
        # The failure it has not yet recovered from (None once it lists or watches again).
        self.error: BaseException | None = None
        # Why an optional kind is refused (while state is REFUSED; never a failure).
        self.refusal: BaseException | None = None
        self.retry_at: datetime | None = None
        self.list_started_at: datetime | None = None
        self.listed_at: datetime | None = None
        self.listed_version: str | None = None
        self._stream_opened_at: float | None = None  # when the current watch stream opened

    # --- state -----------------------------------------------------------------------

    def _enter(
        self, state: InformerState, *, retry_at: datetime | None = None,
        now: datetime | None = None,
    ) -> None:
        if state is self.state and retry_at == self.retry_at:
            return
        self.state, self.retry_at, self.since = state, retry_at, now or now_utc()
        if self._on_state is not None:
            self._on_state(self)

    def _recovered(self) -> None:
        """A list or watch worked: the failure is over."""
        if self.error is not None:
            self.error = None
            if self._on_state is not None:
                self._on_state(self)

    @property
    def failures(self) -> int:
        """Failures in a row (the backoff's count; 0 once it works again)."""
        return self._backoff.failures

    def retry_now(self) -> None:
        """End a backoff early (the cluster was seen healthy); no-op when not backing off."""
        if self.state is InformerState.BACKOFF:
            self._backoff.retry_now()

    def _refused(self, exc: BaseException) -> bool:
        return (self.spec.optional and isinstance(exc, KubeApiError)
                and not isinstance(exc, UnexpectedAnswer) and exc.status in (403, 404))

    def _note_refusal(self, exc: BaseException, *, retry_in: float | None) -> None:
        if self.refusal is None:
            log.warning("%s refused (%s); it is optional, everything else syncs without it",
                        self.spec.kind, exc)
        self.refusal, self.error = exc, None
        now = now_utc()
        retry_at = now + timedelta(seconds=retry_in) if retry_in is not None else None
        self._enter(InformerState.REFUSED, retry_at=retry_at, now=now)

    async def _pause_refused(self, exc: BaseException) -> None:
        """An optional kind refused: not a failure; ask again after the longest backoff."""
        self._note_refusal(exc, retry_in=self._backoff.maximum)
        await self._backoff.sleep(self._backoff.maximum)

    async def _pause(self, error: BaseException | None, *, at_least: float = 0.0) -> None:
        """Back off after a failure (``error``; None for a pause that is not one yet)."""
        delay = self._backoff.next_delay(at_least=at_least)
        self.error = error
        now = now_utc()
        self._enter(InformerState.BACKOFF, retry_at=now + timedelta(seconds=delay), now=now)
        await self._backoff.sleep(delay, at_least=at_least)

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
                self._handed.pop(uid, None)
                self._sink.put(self.spec.kind, uid, tombstone)
        elif kind in ("ADDED", "MODIFIED"):
            decoded = self._decode(obj)
            if decoded is not None:
                self._remember(decoded[0], version)
                self._sink.put(self.spec.kind, *decoded)
        self.resource_version = version or self.resource_version

    def _remember(self, uid: str, version: object) -> None:
        if isinstance(version, str) and version:
            self._handed[uid] = version
        else:  # no version to compare: map it again next time
            self._handed.pop(uid, None)

    # --- list ------------------------------------------------------------------------

    def _take_page(
        self, items: list[dict[str, Any]], values: dict[str, Any], handed: dict[str, str]
    ) -> int:
        """Decode one page into ``values`` (an object already handed over at its version is
        UNCHANGED) and ``handed``; returns how many were unchanged."""
        known = self._handed
        unchanged = 0
        for obj in items:
            uid, version = _identity(obj)
            if uid is not None and version is not None and known.get(uid) == version:
                values[uid] = UNCHANGED
                handed[uid] = version
                unchanged += 1
                continue
            decoded = self._decode(obj)
            if decoded is not None:
                values[decoded[0]] = decoded[1]
                if version is not None:
                    handed[decoded[0]] = version
        return unchanged

    def _hand_over_page(
        self, items: list[dict[str, Any]], values: dict[str, Any], handed: dict[str, str]
    ) -> int:
        """Decode one page and hand its new states to the sink at once, so that they are
        written while the next pages are fetched and mapped; ``values`` gets every uid of
        the page as UNCHANGED, for the snapshot the whole list ends with (which then only
        marks deleted what no page held). Returns how many were unchanged."""
        page: dict[str, Any] = {}
        unchanged = self._take_page(items, page, handed)
        if len(page) > unchanged:
            self._sink.put_many(self.spec.kind,
                                {uid: v for uid, v in page.items() if v is not UNCHANGED})
        values.update(dict.fromkeys(page, UNCHANGED))
        return unchanged

    async def list(self) -> str:
        """A full paged list into the buffer as a snapshot; returns its resourceVersion."""
        self.list_started_at = now_utc()
        self._enter(InformerState.LISTING)
        while True:
            try:
                values: dict[str, Any] = {}
                handed: dict[str, str] = {}
                unchanged = 0
                version: str | None = None
                async for page in list_pages(
                    self._api,
                    self.spec.path,
                    limit=self._page_size,
                    label_selector=self.spec.label_selector,
                ):
                    with collector_paused():  # see sync.collector
                        unchanged += self._hand_over_page(page.items, values, handed)
                    version = page.resource_version or version
            except Gone:
                # A continue token expired between pages (history compacted meanwhile):
                # the only consistent answer is a fresh list from the start.
                log.info("%s list continue token expired; listing again", self.spec.kind)
                continue
            self._sink.replace(self.spec.kind, values)
            self._handed = handed
            self.unchanged = unchanged
            self.refusal = None
            self.listed_items = len(values)
            self.resource_version = self.listed_version = version or "0"
            self.listed_at = now_utc()
            self._recovered()
            self._enter(InformerState.LISTED)
            return self.resource_version

    # --- watch -----------------------------------------------------------------------

    def request_relist(self) -> None:
        """Stop watching and list again (``triggerSync``)."""
        self._relist.set()

    async def _contact(self) -> None:
        self._backoff.reset()
        self._empty_watches = 0
        self._quick_cuts = 0
        if self._on_contact is not None:
            await self._on_contact()

    def _opened(self) -> None:
        """The server accepted the watch: this kind is being watched (events may be far off
        on a quiet cluster)."""
        self._stream_opened_at = time.monotonic()
        self._recovered()
        self._enter(InformerState.WATCHING)

    async def _watch_until_gone(self) -> None:
        """Watch, re-watching from the last version seen, until 410 Gone."""
        while True:
            assert self.resource_version is not None
            contacted = False
            self._stream_opened_at = None
            try:
                async for event in watch_events(
                    self._api,
                    self.spec.path,
                    resource_version=self.resource_version,
                    timeout_seconds=self._watch_timeout_s,
                    connect_timeout=self._connect_timeout,
                    label_selector=self.spec.label_selector,
                    on_open=self._opened,
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
                failed = self._empty_watches >= EMPTY_WATCHES_BEFORE_FAILURE
                if failed and self._on_failure:
                    await self._on_failure(exc)
                await self._pause(exc if failed else None)
            except TRANSIENT_KUBE_ERRORS as exc:
                sync_watch_restarted(self.spec.kind, watch_restart_reason(exc))
                if self._refused(exc):  # its grant was withdrawn meanwhile
                    await self._pause_refused(exc)
                    continue
                opened_at = self._stream_opened_at
                if (
                    not isinstance(exc, KubeApiError)
                    and opened_at is not None
                    and time.monotonic() - opened_at >= STREAM_WORKED_S
                ):
                    # A stream that worked was cut: carry on from its resourceVersion at once.
                    log.info("%s watch interrupted (%s); watching again", self.spec.kind,
                             type(exc).__name__)
                    continue
                if not isinstance(exc, KubeApiError) and opened_at is not None:
                    # Cut before it worked: back off, but once is not yet a failure (a server
                    # or proxy restarting cuts every stream once); twice in a row is.
                    self._quick_cuts += 1
                    if self._quick_cuts < QUICK_CUTS_BEFORE_FAILURE:
                        await self._pause(None)
                        continue
                if self._on_failure is not None:
                    await self._on_failure(exc)
                retry_after = exc.retry_after if isinstance(exc, KubeApiError) else None
                await self._pause(exc, at_least=retry_after or 0.0)

    async def run(self) -> None:
        """Watch forever from the last list; relist on 410 or when asked. Call :meth:`list`
        first (an optional kind it refused is listed here, once the cluster grants it). Only
        cancellation ends it."""
        if self.listed_at is None:
            await self.list_with_retry()
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
        await self.list_with_retry()
        self.relists += 1
        sync_relisted(self.spec.kind)

    async def list_with_retry(self, *, wait_if_refused: bool = True) -> bool:
        """:meth:`list`, retried with backoff until it succeeds (only cancellation ends it
        otherwise); each failure is reported to ``on_failure`` first. An optional kind the
        cluster refuses returns False at once when not ``wait_if_refused``."""
        while True:
            try:
                await self.list()
                self._backoff.reset()
                return True
            except TRANSIENT_KUBE_ERRORS as exc:
                if self._refused(exc):
                    if not wait_if_refused:
                        self._note_refusal(exc, retry_in=None)
                        return False
                    await self._pause_refused(exc)
                    continue
                if self._on_failure is not None:
                    await self._on_failure(exc)
                retry_after = exc.retry_after if isinstance(exc, KubeApiError) else None
                await self._pause(exc, at_least=retry_after or 0.0)


def now_utc() -> datetime:
    return datetime.now(UTC)
