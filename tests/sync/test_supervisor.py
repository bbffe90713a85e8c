"""Supervisors against one database: leases, handover, registry changes, shutdown."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from app.settings import Settings
from app.vault import Vault
from kubesim import KubeSim
from sync.cluster_sync import SyncOptions
from sync.lease import lease_key
from sync.notify import notify_registry
from sync.supervisor import Supervisor, request_resync
from tests.sync.conftest import FAST, eventually, new_cluster
from tests.sync.factories import set_kubeconfig

# Rescans are slow here, so only NOTIFY (or a lost lease) can explain a fast reaction.
SLOW_RESCAN = SyncOptions(**{**FAST.__dict__, "rescan_interval": 30.0})
FAST_RESCAN = SyncOptions(**{**FAST.__dict__, "rescan_interval": 0.3})


@pytest.fixture
async def clean(own_pool: asyncpg.Pool) -> AsyncIterator[asyncpg.Pool]:
    yield own_pool
    await own_pool.execute("DELETE FROM organizations")


def supervisor(pool: asyncpg.Pool, vault: Vault, options: SyncOptions = FAST_RESCAN) -> Supervisor:
    return Supervisor(pool, vault, Settings(), options=options, housekeeping=False)


async def lock_holders(pool: asyncpg.Pool, cluster_ids: list[uuid.UUID]) -> dict[uuid.UUID, int]:
    """Which backend holds each cluster's advisory lock (from pg_locks)."""
    rows = await pool.fetch(
        "SELECT classid::bigint AS hi, objid::bigint AS lo, pid FROM pg_locks"
        " WHERE locktype = 'advisory' AND granted AND objsubid = 1"
    )
    by_key = {}
    for r in rows:
        unsigned = (r["hi"] << 32) | r["lo"]
        by_key[unsigned - (1 << 64) if unsigned >= 1 << 63 else unsigned] = r["pid"]
    return {c: by_key[lease_key(c)] for c in cluster_ids if lease_key(c) in by_key}


async def _crash(sup: Supervisor, pool: asyncpg.Pool, lease_pid: int) -> None:
    """What a replica's death looks like from the database: its tasks stop with no cleanup
    and its lease connection vanishes."""
    tasks = [*sup._tasks, *(r.task for r in sup._running.values())]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    sup._running.clear()
    await pool.execute("SELECT pg_terminate_backend($1)", lease_pid)


async def test_two_supervisors_sync_each_cluster_exactly_once_and_hand_over(
    clean: asyncpg.Pool, vault: Vault, sim: KubeSim
) -> None:
    pool = clean
    clusters = [await new_cluster(pool, vault, sim) for _ in range(4)]
    first, second = supervisor(pool, vault), supervisor(pool, vault)
    third = supervisor(pool, vault)
    await first.start()
    await second.start()

    def synced_once() -> bool:
        return (first.clusters.isdisjoint(second.clusters)
                and first.clusters | second.clusters == set(clusters))

    try:
        await eventually(lambda: asyncio.sleep(0, synced_once()), lambda ok: ok)
        holders = await lock_holders(pool, clusters)
        assert len(holders) == len(clusters) and len(set(holders.values())) <= 2
        await eventually(
            lambda: pool.fetchval(
                "SELECT count(*) FROM k8s_clusters WHERE status = 'active'"),
            lambda n: n == len(clusters),
            within=10,
        )
        # A replica that loses its lease connection but lives on stops every sync at once;
        # the clusters end up synced exactly once again, by whoever leases them first.
        await pool.execute("SELECT pg_terminate_backend($1)", holders[clusters[0]])
        await eventually(lambda: asyncio.sleep(0, synced_once()), lambda ok: ok, within=5)

        # A replica that dies: the other takes all of its clusters within a bounded time.
        holders = await eventually(lambda: lock_holders(pool, clusters),
                                   lambda h: len(h) == len(clusters))
        dead = first if clusters[0] in first.clusters else second
        survivor = second if dead is first else first
        started = time.monotonic()
        await _crash(dead, pool, holders[clusters[0]])
        await eventually(
            lambda: asyncio.sleep(0, survivor.clusters), lambda c: c == set(clusters), within=5
        )
        assert time.monotonic() - started < 5
        assert set((await lock_holders(pool, clusters)).values()) == {
            (await lock_holders(pool, clusters))[clusters[0]]}
        # An orderly stop hands over too.
        await third.start()
        await survivor.stop()
        await eventually(
            lambda: asyncio.sleep(0, third.clusters), lambda c: c == set(clusters), within=5
        )
    finally:
        await first.stop()
        await second.stop()
        await third.stop()


async def test_registry_changes_are_picked_up_without_restart(
    clean: asyncpg.Pool, vault: Vault, sim: KubeSim
) -> None:
    pool = clean
    sup = supervisor(pool, vault, SLOW_RESCAN)
    await sup.start()
    try:
        await eventually(lambda: asyncio.sleep(0, sup.rescans), lambda n: n >= 1)
        cluster_id = await new_cluster(pool, vault, sim)
        async with pool.acquire() as conn:
            await notify_registry(conn, cluster_id=cluster_id, action="registered")
        await eventually(lambda: asyncio.sleep(0, sup.clusters), lambda c: cluster_id in c,
                         within=3)
        sync = sup.sync_for(cluster_id)
        assert sync is not None
        await asyncio.wait_for(sync.synced.wait(), 10)

        # triggerSync: every informer relists.
        assert await request_resync(pool, cluster_id)
        await eventually(
            lambda: asyncio.sleep(0, [i.relists for i in sync.informers]),
            lambda relists: len(relists) == 9 and all(n >= 1 for n in relists),
            within=5,
        )

        # Re-keyed: a new ciphertext means a fresh sync with the new kubeconfig.
        async with pool.acquire() as conn:
            await set_kubeconfig(conn, vault, cluster_id=cluster_id, server=sim.url,
                                 token=sim.token)
            await notify_registry(conn, cluster_id=cluster_id, action="rotated")
        await eventually(lambda: asyncio.sleep(0, sup.sync_for(cluster_id)),
                         lambda s: s is not None and s is not sync, within=3)

        # Disabled: stopped and its lease released.
        async with pool.acquire() as conn:
            await conn.execute("UPDATE k8s_clusters SET status = 'disabled' WHERE id = $1",
                               cluster_id)
            await notify_registry(conn, cluster_id=cluster_id, action="updated")
        await eventually(lambda: asyncio.sleep(0, sup.clusters), lambda c: cluster_id not in c,
                         within=3)
        assert await lock_holders(pool, [cluster_id]) == {}
        assert not await request_resync(pool, cluster_id)
        assert not await request_resync(pool, uuid.uuid4())
    finally:
        await sup.stop()


async def test_shutdown_leaves_no_task_or_connection_behind(
    clean: asyncpg.Pool, vault: Vault, sim: KubeSim
) -> None:
    pool = clean
    clusters = [await new_cluster(pool, vault, sim) for _ in range(2)]
    before = asyncio.all_tasks()
    sup = Supervisor(pool, vault, Settings(), options=FAST_RESCAN, housekeeping=True)
    await sup.start()
    await eventually(lambda: asyncio.sleep(0, sup.clusters), lambda c: c == set(clusters))
    for cluster_id in clusters:
        sync = sup.sync_for(cluster_id)
        assert sync is not None
        await asyncio.wait_for(sync.synced.wait(), 10)
    started = time.monotonic()
    await sup.stop()
    assert time.monotonic() - started < 10
    await asyncio.sleep(0.1)
    # kubesim serves on this loop too: its handlers of the (now closed) watches are its own.
    leftovers = [t for t in asyncio.all_tasks() - before
                 if not t.done() and t is not asyncio.current_task() and not _serving(t)]
    assert leftovers == []
    assert await lock_holders(pool, clusters) == {}
    assert pool.get_idle_size() == pool.get_size()  # every connection is back in the pool


def _serving(task: asyncio.Task[object]) -> bool:
    """A task of kubesim's HTTP server (aiohttp.web request handlers and their helpers)."""
    frames = task.get_stack()
    files = {f.f_code.co_filename for f in frames}
    coro = task.get_coro()
    code = getattr(coro, "cr_code", None)
    if code is not None:
        files.add(code.co_filename)
    return any("/kubesim/" in f or "aiohttp/web" in f or "asyncio/queues" in f for f in files)
