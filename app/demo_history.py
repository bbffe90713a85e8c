"""The demo's past: a few days of the fleet's life, replayed through the sync's own paths.

A newcomer looks for cost, budgets and daily figures in the first minute, and all of them
need hours that have already happened. So before the demo serves, kubesim's simulator lives
those days at speed, from where its clock starts (a few days before now): it rolls out,
scales, crash-loops and OOM-kills pods, takes nodes away, and moves every workload's load.
What it does reaches the database the way a live cluster's changes do:

* every object it writes (kubesim's watch feed, decoded by the sync's own :func:`kind_specs`)
  is flushed by a :class:`~sync.writer.ClusterWriter`, with a deletion stamped at the
  simulated moment it happened (the live sync stamps the moment it hears of it, which is the
  same thing when it is listening);
* usage is read from kubesim's ``metrics.k8s.io`` over HTTP (:func:`~sync.metrics.read_metrics`)
  and written by :func:`~sync.metrics.write_metrics` at the simulated sampling time;
* the hours are then costed by one tick of the real :class:`~cost.scheduler.CostScheduler`:
  every finished hour final, the running one provisional.

Nothing here writes a cost row, a sample or an inventory row by itself. The cluster row's
``created_at`` is moved back to where the history starts, because the scheduler only costs
hours from a cluster's creation on: the simulated cluster did exist then.

Cost in time (small fleet, 3 days, a step every 5 simulated minutes and a sample every 15):
869 simulator steps, 291 flushes, 290 samples and 72 cluster-hours costed, about 20 s on a
busy 2-core machine (flushes and samples are two thirds of it; the simulator a fifth).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import asyncpg
from kubernetes_asyncio.client import ApiClient

from app.vault import Vault
from cost.pricing import PriceBook
from cost.scheduler import CostScheduler, TickReport
from sync.cluster_sync import kind_specs
from sync.informer import KindSpec
from sync.mappers import BadObject
from sync.metrics import read_metrics, write_metrics
from sync.writer import Batch, ClusterWriter, OomLedger

if TYPE_CHECKING:
    from kubesim import KubeSim
    from kubesim.store import Subscription, WatchEvent

log = logging.getLogger(__name__)

DEFAULT_DAYS = 3
STEP = timedelta(minutes=5)
SAMPLE_EVERY = timedelta(minutes=15)
PAGE_SIZE = 500
# Within this of the clock, the past is over: against the wall clock, every step takes some
# real time too, so chasing "now" to zero would never end; the real-time fleet carries on.
CAUGHT_UP_S = 1.0


@dataclass(frozen=True)
class History:
    """What building the history did (the demo logs it)."""

    started_at: datetime
    ended_at: datetime
    flushes: int
    samples: int
    costed: TickReport
    seconds: float


def _resource(spec: KindSpec) -> str:
    """kubesim's name for a kind the sync watches: the plural at the end of its path."""
    return spec.path.rsplit("/", 1)[-1]


class _Replay:
    """kubesim's writes of the replayed kinds, turned into one pending batch at a time."""

    def __init__(self, sim: KubeSim, specs: list[KindSpec]) -> None:
        self._sim = sim
        self._feeds: list[tuple[KindSpec, Subscription]] = [
            (spec, sim.store.subscribe(_resource(spec))) for spec in specs
        ]
        self.batch = Batch()
        for spec in specs:
            for entry in sim.store.iter_entries(_resource(spec)):
                self._put(spec, entry.obj, deleted=False)

    def _put(self, spec: KindSpec, obj: dict[str, Any], *, deleted: bool) -> None:
        uid = obj["metadata"]["uid"]
        try:
            value = spec.decode(obj)
        except BadObject as exc:
            log.warning("demo history: skipping %s: %s", spec.api_kind, exc)
            return
        if deleted:
            if spec.tombstone is None:
                value = None
            else:
                value["deleted_at"] = self._sim.clock.now()
        self.batch.put(spec.kind, uid, value)

    def drain(self) -> None:
        """Everything kubesim wrote since the last drain, into :attr:`batch`."""
        for spec, feed in self._feeds:
            while not feed.queue.empty():
                event: WatchEvent | None = feed.queue.get_nowait()
                if event is not None:
                    self._put(spec, event.entry.obj, deleted=event.type == "DELETED")

    def take(self) -> Batch:
        batch, self.batch = self.batch, Batch()
        return batch

    def close(self) -> None:
        for _spec, feed in self._feeds:
            self._sim.store.unsubscribe(feed)


async def _sample(pool: asyncpg.Pool, writer: ClusterWriter, api: ApiClient,
                  sampled_at: datetime) -> None:
    snapshot = await read_metrics(api, page_size=PAGE_SIZE)
    async with writer.lock, pool.acquire() as conn, conn.transaction():
        await write_metrics(conn, cluster_id=writer.cluster_id, snapshot=snapshot,
                            sampled_at=sampled_at.replace(microsecond=0))


async def build_history(
    pool: asyncpg.Pool,
    *,
    sim: KubeSim,
    vault: Vault,
    cluster_id: uuid.UUID,
    organization_id: uuid.UUID,
    clock: Callable[[], datetime],
    book: PriceBook | None = None,
) -> History:
    """Live ``sim``'s fleet from its clock's start up to ``clock()`` (the wall clock in the
    demo, a fixed instant in tests) and cost it.

    ``sim`` must not be running in real time yet, and its clock must start where the history
    should (``KubeSim(start_time=...)``); the cluster must be registered and not syncing."""
    if sim.fleet is None:
        raise ValueError("the demo's history needs a kubesim fleet")
    began = time.monotonic()
    started_at = sim.clock.now()
    async with pool.acquire() as conn:
        await conn.execute("UPDATE k8s_clusters SET created_at = $2 WHERE id = $1",
                           cluster_id, started_at)
    writer = ClusterWriter(pool=pool, vault=vault, cluster_id=cluster_id,
                           organization_id=organization_id)
    # Helm releases are left to the live sync: they are an optional kind, and cost nothing.
    replay = _Replay(sim, [s for s in kind_specs(OomLedger()) if not s.optional])
    flushes = samples = 0
    next_sample = started_at
    try:
        async with ApiClient(sim.client_configuration()) as api:
            while True:
                now = sim.clock.now()
                if now >= next_sample:
                    replay.drain()
                    # Health is a verdict on now: the last flush makes it, not the past ones.
                    await writer.flush(replay.take(), health=False)
                    flushes += 1
                    await _sample(pool, writer, api, now)
                    samples += 1
                    next_sample = now + SAMPLE_EVERY
                remaining = (clock() - now).total_seconds()
                if remaining < CAUGHT_UP_S:
                    break
                sim.fleet.step(min(STEP.total_seconds(), remaining))
            replay.drain()
            await writer.flush(replay.take(), assess=True)
            flushes += 1
    finally:
        replay.close()
    ended_at = sim.clock.now()
    scheduler = CostScheduler(pool, book=book, organization_ids=[organization_id],
                              max_hours_per_tick=int((ended_at - started_at) / timedelta(hours=1))
                              + 2, budget_alerts=False)
    costed = await scheduler.run_once(now=clock())
    history = History(started_at, ended_at, flushes, samples, costed,
                      round(time.monotonic() - began, 1))
    log.info("demo history: %s to %s, %d flushes, %d samples, %d hours costed in %.1f s",
             started_at.isoformat(), ended_at.isoformat(), flushes, samples,
             len(costed.computed) + len(costed.provisional), history.seconds)
    return history
