"""A cluster's status tells the truth: what is failing, how, for which kinds, and when it
retries; ACTIVE only once every kind is listed and watching; caught up at once when the fault
clears, however long the backoffs had grown.

Each test drives kubesim's faults over real HTTP against a real ClusterSync, reads the
cluster row the way every reader does, and ends by comparing the database with kubesim by
uid and resourceVersion.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from app.vault import Vault
from kubesim import KubeSim
from schema.relay import to_global_id
from tests.api import Api
from tests.graph.ws import next_payload, open_subscription
from tests.recovery.support import divergence
from tests.sync.conftest import FAST, eventually, new_cluster, running_sync
from tests.sync.factories import register_cluster
from tests.sync.test_cluster_sync import cluster_row, new_pod

KINDS = {"namespaces", "nodes", "replicasets", "deployments", "pods", "resourcequotas",
         "helmreleases", "persistentvolumeclaims", "persistentvolumes"}


def states(row: asyncpg.Record) -> dict[str, str]:
    return {kind: entry["state"] for kind, entry in (row["sync_progress"] or {}).items()}


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


def cut_next_event_of(sim: KubeSim, resource: str) -> None:
    """Cut the stream that carries the next change of ``resource`` (a label on one object),
    so its informer has to watch again, and meets whatever fault is switched on."""
    sim.faults.cut_watches(1)
    obj = sim.store.list(resource)[0]["metadata"]
    sim.store.patch(resource, obj["name"], {"metadata": {"labels": {"poke": uuid.uuid4().hex}}},
                    namespace=obj.get("namespace"))


async def converged(pool: asyncpg.Pool, cluster_id: uuid.UUID, sim: KubeSim) -> bool:
    return not await divergence(pool, cluster_id, sim)


async def test_server_errors_on_one_kind_are_degraded_with_the_kind_its_error_and_next_retry(
    db_pool: asyncpg.Pool, vault: Vault, sim: KubeSim
) -> None:
    cluster_id = await new_cluster(db_pool, vault, sim)
    async with running_sync(db_pool, vault, cluster_id):
        assert (await cluster_row(db_pool, cluster_id))["status"] == "active"
        sim.faults.inject_error(500, count=None, path_contains="/api/v1/pods")
        cut_next_event_of(sim, "pods")
        row = await eventually(lambda: cluster_row(db_pool, cluster_id),
                               lambda r: r["status"] == "degraded")
        # Reachable, answering, failing: its own status, the reason, and the kind it hits.
        assert row["last_sync_error"].startswith("API server error: HTTP 500"), row
        assert row["last_sync_error"].endswith("[pods]")
        pods = row["sync_progress"]["pods"]
        assert pods["state"] == "backoff" and "HTTP 500" in pods["error"]
        assert at(pods["retryAt"]) > at(pods["since"]) and pods["failures"] >= 1
        assert {k: s for k, s in states(row).items() if k != "pods"} == dict.fromkeys(
            KINDS - {"pods"}, "watching")
        assert row["health_status"] in {"degraded", "critical"}
        assert "sync degraded: API server error" in row["health_reason"]

        sim.faults.clear_errors()
        row = await eventually(lambda: cluster_row(db_pool, cluster_id),
                               lambda r: r["status"] == "active", within=10)
        assert row["last_sync_error"] is None
        assert states(row) == dict.fromkeys(KINDS, "watching")
        assert "error" not in row["sync_progress"]["pods"]
        await eventually(lambda: converged(db_pool, cluster_id, sim), within=5)


async def test_throttling_is_degraded_and_the_retry_waits_for_retry_after(
    db_pool: asyncpg.Pool, vault: Vault, sim: KubeSim
) -> None:
    cluster_id = await new_cluster(db_pool, vault, sim)
    async with running_sync(db_pool, vault, cluster_id):
        sim.faults.inject_error(429, count=None, retry_after=2, path_contains="/api/v1/nodes")
        cut_next_event_of(sim, "nodes")
        row = await eventually(lambda: cluster_row(db_pool, cluster_id),
                               lambda r: r["status"] == "degraded")
        assert row["last_sync_error"].startswith("throttled by the API server: HTTP 429")
        assert "(retry after 2 s) [nodes]" in row["last_sync_error"]
        nodes = row["sync_progress"]["nodes"]
        # FAST backs off at most 0.5 s: only Retry-After explains a retry 2 s out.
        assert at(nodes["retryAt"]) - at(nodes["since"]) >= timedelta(seconds=2)
        sim.faults.clear_errors()
        await eventually(lambda: cluster_row(db_pool, cluster_id),
                         lambda r: r["status"] == "active", within=10)
        await eventually(lambda: converged(db_pool, cluster_id, sim), within=5)


async def test_an_unreachable_cluster_catches_up_at_once_however_long_its_backoffs_grew(
    db_pool: asyncpg.Pool, vault: Vault, sim: KubeSim
) -> None:
    # Backoffs that grow to a minute, a heartbeat every 30 s: only the probe while in trouble
    # and the reset of every backoff when the server answers again can explain a fast return.
    options = replace(FAST, backoff_initial=1.0, backoff_max=60.0, heartbeat_interval=30.0,
                      probe_interval=0.3)
    cluster_id = await new_cluster(db_pool, vault, sim)
    async with running_sync(db_pool, vault, cluster_id, options=options) as sync:
        await sim.down()
        row = await eventually(lambda: cluster_row(db_pool, cluster_id),
                               lambda r: r["status"] == "unreachable")
        assert row["last_sync_error"].startswith("cannot connect: "), row["last_sync_error"]
        assert row["health_status"] == "unreachable"

        def grown() -> datetime | None:
            """The latest next try among the kinds, once backoffs have grown to many seconds
            (far more than catching up takes, even on a loaded machine)."""
            retries = [i.retry_at for i in sync.informers if i.retry_at is not None]
            latest = max(retries, default=None)
            ahead = latest is not None and latest - datetime.now(UTC) > timedelta(seconds=8)
            return latest if ahead and all(i.failures >= 3 for i in sync.informers) else None

        latest = await eventually(lambda: asyncio.sleep(0, grown()), within=60, interval=0.1)
        assert latest is not None
        for i in range(3):
            new_pod(sim, f"while-down-{i}")
        await sim.up()
        await eventually(lambda: converged(db_pool, cluster_id, sim), within=10)
        row = await eventually(lambda: cluster_row(db_pool, cluster_id),
                               lambda r: r["status"] == "active")
        # Caught up and watching before the backoffs would even have retried.
        assert datetime.now(UTC) < latest
        assert states(row) == dict.fromkeys(KINDS, "watching")


async def test_active_only_once_every_kind_is_listed_and_watching(
    db_pool: asyncpg.Pool, vault: Vault, sim: KubeSim
) -> None:
    sim.faults.inject_error(500, count=None, path_contains="/apis/apps/v1/deployments")
    cluster_id = await new_cluster(db_pool, vault, sim)
    seen: set[str] = set()

    async def status() -> asyncpg.Record:
        row = await cluster_row(db_pool, cluster_id)
        seen.add(row["status"])
        return row

    async with running_sync(db_pool, vault, cluster_id, wait=False) as sync:
        row = await eventually(status, lambda r: r["status"] == "degraded")
        assert row["last_sync_error"].endswith("[deployments]")
        # Kinds are listed one by one: those before the failing one are listed, those after
        # it are still waiting, and none of them watches before every kind is written.
        assert states(row) == {"namespaces": "listed", "nodes": "listed",
                               "replicasets": "listed", "deployments": "backoff",
                               "pods": "pending", "persistentvolumeclaims": "pending",
                               "persistentvolumes": "pending", "resourcequotas": "pending",
                               "helmreleases": "pending"}
        await asyncio.sleep(0.5)
        await status()
        assert not sync.synced.is_set()
        sim.faults.clear_errors()
        row = await eventually(status, lambda r: r["status"] == "active", within=10)
        assert states(row) == dict.fromkeys(KINDS, "watching")
        assert sync.synced.is_set()
        assert await converged(db_pool, cluster_id, sim)
    assert seen <= {"pending", "degraded", "active"}


async def test_an_optional_kind_the_cluster_refuses_holds_nothing_back(
    db_pool: asyncpg.Pool, vault: Vault, sim: KubeSim
) -> None:
    """Helm release Secrets need a grant of their own, which is optional: refused, the rest
    syncs and the cluster is ACTIVE; granted later, they are listed and watched."""
    rule = sim.faults.inject_error(403, count=None, path_contains="/api/v1/secrets")
    cluster_id = await new_cluster(db_pool, vault, sim)
    async with running_sync(db_pool, vault, cluster_id, wait=False):
        row = await eventually(lambda: cluster_row(db_pool, cluster_id),
                               lambda r: r["status"] != "pending", within=10)
        assert row["status"] == "active", row["last_sync_error"]
        assert row["last_sync_error"] is None
        helm = row["sync_progress"]["helmreleases"]
        assert helm["state"] == "refused" and helm["refused"].startswith("forbidden: HTTP 403")
        assert {k: s for k, s in states(row).items() if k != "helmreleases"} == dict.fromkeys(
            KINDS - {"helmreleases"}, "watching")
        assert await converged(db_pool, cluster_id, sim)
        assert rule.hits >= 1
        assert not await db_pool.fetchval(
            "SELECT count(*) FROM k8s_helm_releases WHERE cluster_id = $1", cluster_id)

        sim.faults.clear_errors()  # the grant is added
        row = await eventually(lambda: cluster_row(db_pool, cluster_id),
                               lambda r: states(r) == dict.fromkeys(KINDS, "watching"),
                               within=10)
        assert "refused" not in row["sync_progress"]["helmreleases"]
        assert await eventually(lambda: db_pool.fetchval(
            "SELECT count(*) FROM k8s_helm_releases WHERE cluster_id = $1", cluster_id))


SYNC = """subscription($id: ID!) { syncStatus(clusterId: $id) {
    status lastSyncError kinds { kind state detail } } }"""


async def test_the_sync_status_subscription_shows_each_kind_backing_off_and_recovering(
    api: Api, vault: Vault, sim: KubeSim
) -> None:
    async with api.pool.acquire() as conn:
        cluster_id = await register_cluster(conn, vault, server=sim.url, token=sim.token,
                                            org_id=api.a.org_id)
    gid = str(to_global_id("Cluster", cluster_id))
    async with running_sync(api.pool, vault, cluster_id):
        ws = await open_subscription(api.ws_url, api.a.tokens["viewer"], SYNC, {"id": gid})
        try:
            first = (await next_payload(ws))["data"]["syncStatus"]
            assert first["status"] == "ACTIVE"
            assert {k["kind"]: k["state"] for k in first["kinds"]} == dict.fromkeys(
                KINDS, "watching")
            sim.faults.inject_error(500, count=None, path_contains="/api/v1/pods")
            cut_next_event_of(sim, "pods")
            degraded = await _next_where(ws, lambda s: s["status"] == "DEGRADED")
            pods = next(k for k in degraded["kinds"] if k["kind"] == "pods")
            assert pods["state"] == "backoff" and pods["detail"]["retryAt"]
            assert degraded["lastSyncError"].endswith("[pods]")
            sim.faults.clear_errors()
            active = await _next_where(ws, lambda s: s["status"] == "ACTIVE")
            assert {k["kind"]: k["state"] for k in active["kinds"]} == dict.fromkeys(
                KINDS, "watching")
        finally:
            await ws.close()


async def _next_where(ws: Any, predicate: Any) -> dict[str, Any]:
    while True:
        status: dict[str, Any] = (await next_payload(ws, wait=10))["data"]["syncStatus"]
        if predicate(status):
            return status
