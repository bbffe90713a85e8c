"""Sync fixtures: kubesim over real HTTP, a vault, fast options, and a DB poller."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import asyncpg
import pytest

from app.network_guard import NetworkPolicy
from app.vault import Vault
from kubesim import KubeSim
from sync.cluster_sync import ClusterRecord, ClusterSync, SyncOptions
from tests.sync.factories import make_vault, register_cluster

T = TypeVar("T")

FAST = SyncOptions(
    connect_timeout=2.0,
    read_timeout=5.0,
    page_size=20,
    watch_timeout_s=30,
    flush_interval=0.05,
    backoff_initial=0.1,
    backoff_max=0.5,
    heartbeat_interval=0.3,
    metrics_interval=3600.0,
    health_interval=3600.0,
    rescan_interval=0.3,
    network=NetworkPolicy(allow_local=True),  # kubesim and the stub servers are on loopback
)


@pytest.fixture
def vault() -> Vault:
    return make_vault()


@pytest.fixture
async def sim() -> AsyncIterator[KubeSim]:
    async with KubeSim.start(fleet="small", seed=1) as running:
        yield running


async def eventually(
    probe: Callable[[], Awaitable[T]],
    predicate: Callable[[T], bool] = bool,
    *,
    within: float = 5.0,
    interval: float = 0.05,
) -> T:
    """Poll ``probe`` until ``predicate`` holds; fail with the last value seen."""
    deadline = time.monotonic() + within
    while True:
        value = await probe()
        if predicate(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {within}s; last value: {value!r}")
        await asyncio.sleep(interval)


async def load_record(pool: asyncpg.Pool, cluster_id: uuid.UUID) -> ClusterRecord:
    row = await pool.fetchrow("SELECT * FROM k8s_clusters WHERE id = $1", cluster_id)
    assert row is not None
    return ClusterRecord.from_row(row)


@contextlib.asynccontextmanager
async def running_sync(
    pool: asyncpg.Pool,
    vault: Vault,
    cluster_id: uuid.UUID,
    *,
    options: SyncOptions = FAST,
    wait: bool = True,
) -> AsyncIterator[ClusterSync]:
    sync = ClusterSync(pool=pool, vault=vault, record=await load_record(pool, cluster_id),
                       options=options)
    task = asyncio.create_task(sync.run())
    try:
        if wait:
            await asyncio.wait_for(sync.synced.wait(), 20)
        yield sync
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def new_cluster(pool: asyncpg.Pool, vault: Vault, sim: KubeSim, **kw: Any) -> uuid.UUID:
    async with pool.acquire() as conn:
        return await register_cluster(conn, vault, server=sim.url, token=sim.token, **kw)


@pytest.fixture(scope="module")
async def own_database(server_url: str) -> AsyncIterator[str]:
    """A migrated database for one test module, for tests that act on *every* cluster
    (supervisors) or every partition (housekeeping)."""
    from app.migrations import upgrade_to_head
    from tests.databases import with_database

    name = f"fg_sync_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(server_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        url = with_database(server_url, name)
        await asyncio.to_thread(upgrade_to_head, url)
        yield url
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture(scope="module")
async def own_pool(own_database: str) -> AsyncIterator[asyncpg.Pool]:
    from app.db import close_pool, create_pool

    pool = await create_pool(own_database, max_size=12)
    yield pool
    await close_pool(pool)
