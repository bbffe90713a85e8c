"""A relist of objects already handed over at the same resourceVersion maps and writes nothing.

The writer is driven against real PostgreSQL through a pool that records every statement, so
the no-op path is pinned statement by statement; the sync is driven against kubesim over HTTP,
and rows are compared by ``xmin`` (the transaction that last wrote each row version), so
"nothing rewritten" is checked on the stored rows themselves.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any, cast

import asyncpg

from app.vault import Vault
from kubesim import KubeSim
from sync.cluster_sync import ClusterSync
from sync.helm import decode_storage_secret
from sync.mappers import map_namespace, map_pod, map_resource_quota
from sync.writer import HELM, QUOTAS, TABLES, UNCHANGED, Batch, ClusterWriter
from tests.factories import make_cluster, make_org
from tests.sync.conftest import eventually, new_cluster, running_sync
from tests.sync.factories import helm_secret, make_vault
from tests.sync.test_writer import ns, pod


class RecordingConnection:
    """An acquired connection that notes each statement (its first two words) and COPY."""

    def __init__(self, conn: asyncpg.Connection, log: list[str]) -> None:
        self._conn = conn
        self._log = log

    def _note(self, query: str) -> None:
        self._log.append(" ".join(query.split()[:3]))

    async def execute(self, query: str, *args: Any, **kwargs: Any) -> Any:
        self._note(query)
        return await self._conn.execute(query, *args, **kwargs)

    async def fetch(self, query: str, *args: Any, **kwargs: Any) -> Any:
        self._note(query)
        return await self._conn.fetch(query, *args, **kwargs)

    async def fetchrow(self, query: str, *args: Any, **kwargs: Any) -> Any:
        self._note(query)
        return await self._conn.fetchrow(query, *args, **kwargs)

    async def fetchval(self, query: str, *args: Any, **kwargs: Any) -> Any:
        self._note(query)
        return await self._conn.fetchval(query, *args, **kwargs)

    async def copy_records_to_table(self, table: str, **kwargs: Any) -> Any:
        self._log.append(f"COPY {table}")
        return await self._conn.copy_records_to_table(table, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


class RecordingPool:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self.statements: list[str] = []

    @contextlib.asynccontextmanager
    async def acquire(self) -> AsyncIterator[RecordingConnection]:
        async with self._pool.acquire() as conn:
            yield RecordingConnection(conn, self.statements)


async def _recording_writer(pool: asyncpg.Pool) -> tuple[ClusterWriter, RecordingPool]:
    async with pool.acquire() as conn:
        org = await make_org(conn)
        cluster = await make_cluster(conn, org, status="active")
    recording = RecordingPool(pool)
    writer = ClusterWriter(pool=cast(asyncpg.Pool, recording), vault=make_vault(),
                           cluster_id=cluster, organization_id=org)
    return writer, recording


def _quota(uid: str, namespace: str, cpu: str) -> dict[str, Any]:
    return {"metadata": {"uid": uid, "name": uid, "namespace": namespace},
            "status": {"hard": {"requests.cpu": cpu}}}


async def test_an_all_unchanged_snapshot_issues_only_the_deletion_checks(
    db_pool: asyncpg.Pool,
) -> None:
    writer, recording = await _recording_writer(db_pool)
    release = helm_secret(namespace="web", release="shop", revision=1)
    first = Batch()
    first.replace("namespaces", {"ns-web": map_namespace(ns("web"))})
    first.replace("pods", {f"pod-p{i}": map_pod(pod(f"p{i}")) for i in range(3)})
    first.replace(QUOTAS, {"q1": map_resource_quota(_quota("q1", "web", "2"))})
    first.replace(HELM, {release["metadata"]["uid"]: decode_storage_secret(release)})
    assert (await writer.flush(first, health=False)).rows == 6

    recording.statements.clear()
    again = Batch()
    for kind, uids in (("namespaces", ["ns-web"]), ("pods", ["pod-p0", "pod-p1", "pod-p2"]),
                       (QUOTAS, ["q1"]), (HELM, [release["metadata"]["uid"]])):
        again.replace(kind, dict.fromkeys(uids, UNCHANGED))
    result = await writer.flush(again, health=False)

    assert (result.rows, result.kinds) == (0, frozenset())
    # Nothing staged, copied, upserted, folded or announced: one anti-join per table kind
    # and the cluster's last_synced_at.
    assert recording.statements == [
        "UPDATE k8s_namespaces t", "UPDATE k8s_pods t", "UPDATE k8s_clusters SET",
    ]
    stored = await db_pool.fetchrow(
        "SELECT quota_hard_cpu_cores, (SELECT count(*) FROM k8s_helm_releases h"
        "  WHERE h.cluster_id = n.cluster_id AND h.deleted_at IS NULL) AS releases"
        " FROM k8s_namespaces n WHERE cluster_id = $1", writer.cluster_id)
    assert (stored["quota_hard_cpu_cores"], stored["releases"]) == (2, 1)


async def test_a_snapshot_with_unchanged_rows_writes_only_what_changed_or_went(
    db_pool: asyncpg.Pool,
) -> None:
    writer, recording = await _recording_writer(db_pool)
    await writer.flush(Batch(items={"pods": {f"pod-p{i}": map_pod(pod(f"p{i}"))
                                             for i in range(3)}}, snapshots={"pods"}))
    recording.statements.clear()
    relist = Batch()
    relist.replace("pods", {"pod-p0": UNCHANGED,
                            "pod-p2": map_pod(pod("p2", phase="Succeeded"))})  # p1 is gone
    result = await writer.flush(relist, health=False)

    assert result.rows == 2 and result.kinds == {"pods"}
    assert [s for s in recording.statements if s.startswith(("COPY", "INSERT"))] == [
        "COPY fg_stage_k8s_pods", "INSERT INTO k8s_pods"]
    rows = await db_pool.fetch(
        "SELECT name, phase, deleted_at IS NOT NULL AS gone FROM k8s_pods"
        " WHERE cluster_id = $1 ORDER BY name", writer.cluster_id)
    assert [tuple(r) for r in rows] == [
        ("p0", "Running", False), ("p1", "Running", True), ("p2", "Succeeded", False)]


async def test_quotas_and_releases_of_a_relist_fold_only_what_changed(
    db_pool: asyncpg.Pool,
) -> None:
    writer, recording = await _recording_writer(db_pool)
    v1 = helm_secret(namespace="web", release="shop", revision=1)
    other = helm_secret(namespace="web", release="blog", revision=1)
    first = Batch()
    first.replace("namespaces", {"ns-web": map_namespace(ns("web"))})
    first.replace(QUOTAS, {"q1": map_resource_quota(_quota("q1", "web", "2")),
                           "q2": map_resource_quota(_quota("q2", "web", "1"))})
    first.replace(HELM, {s["metadata"]["uid"]: decode_storage_secret(s) for s in (v1, other)})
    await writer.flush(first, health=False)

    v2 = helm_secret(namespace="web", release="shop", revision=2)
    relist = Batch()
    relist.replace(QUOTAS, {"q1": UNCHANGED})  # q2 was deleted
    relist.replace(HELM, {v1["metadata"]["uid"]: UNCHANGED,  # blog was uninstalled
                          v2["metadata"]["uid"]: decode_storage_secret(v2)})
    recording.statements.clear()
    result = await writer.flush(relist, health=False)

    assert result.kinds == {QUOTAS, HELM}
    assert await db_pool.fetchval(
        "SELECT quota_hard_cpu_cores FROM k8s_namespaces WHERE cluster_id = $1",
        writer.cluster_id) == 2
    releases = await db_pool.fetch(
        "SELECT name, revision, deleted_at IS NOT NULL AS gone FROM k8s_helm_releases"
        " WHERE cluster_id = $1 ORDER BY name", writer.cluster_id)
    assert [tuple(r) for r in releases] == [("blog", 1, True), ("shop", 2, False)]


def test_unchanged_never_replaces_a_value_still_waiting_to_be_written() -> None:
    waiting = {"uid": "a", "phase": "Running"}
    batch = Batch()
    batch.put("pods", "a", waiting)
    batch.replace("pods", {"a": UNCHANGED, "b": UNCHANGED})
    assert batch.items["pods"] == {"a": waiting, "b": UNCHANGED}
    assert batch.snapshots == {"pods"}

    failed = Batch()
    failed.replace("pods", {"a": waiting, "c": {"uid": "c"}})
    newer = Batch()
    newer.replace("pods", {"a": UNCHANGED, "b": {"uid": "b"}})
    failed.absorb(newer)  # c went away meanwhile; a's write is still owed
    assert failed.items["pods"] == {"a": waiting, "b": {"uid": "b"}}


# --- the sync against kubesim ----------------------------------------------------------------


async def _row_versions(pool: asyncpg.Pool, cluster_id: Any) -> dict[str, list[tuple[Any, ...]]]:
    """Every row's uid, xmin and synced_at, per table kind."""
    return {
        kind: [tuple(r) for r in await pool.fetch(
            f"SELECT uid, xmin::text, synced_at FROM {spec.table}"
            " WHERE cluster_id = $1 ORDER BY uid", cluster_id)]
        for kind, spec in TABLES.items()
    }


async def _quiet(pool: asyncpg.Pool, sync: ClusterSync) -> None:
    """Wait until the metrics job has found metrics.k8s.io absent and the flusher is idle."""
    flusher = sync.flusher
    assert flusher is not None
    await eventually(lambda: pool.fetchval(
        "SELECT metrics_available FROM k8s_clusters WHERE id = $1", sync.cluster_id),
        lambda available: available is False)

    async def idle() -> bool:
        await asyncio.sleep(0)
        return not flusher.pending and not flusher.writer.lock.locked()

    await eventually(idle)


async def _relisted(sync: ClusterSync) -> None:
    """Ask every informer to relist and wait until each has, and its snapshot is written."""
    flusher = sync.flusher
    assert flusher is not None
    before = [i.relists for i in sync.informers]
    flushes = flusher.flushes
    sync.request_relist()

    async def done() -> bool:
        await asyncio.sleep(0)
        return (all(i.relists > b for i, b in zip(sync.informers, before, strict=True))
                and not flusher.pending and flusher.flushes > flushes)

    await eventually(done, within=10)


async def test_a_relist_of_an_unchanged_cluster_maps_nothing_and_rewrites_no_row(
    db_pool: asyncpg.Pool, vault: Vault, sim: KubeSim
) -> None:
    sim.faults.metrics_available = False  # nothing but the sync writes the rows
    cluster_id = await new_cluster(db_pool, vault, sim)
    async with running_sync(db_pool, vault, cluster_id) as sync:
        await _quiet(db_pool, sync)
        before = await _row_versions(db_pool, cluster_id)
        await _relisted(sync)
        listed = {i.spec.kind: i.listed_items for i in sync.informers}
        assert {i.spec.kind: i.unchanged for i in sync.informers} == listed
        assert listed["pods"] == len(sim.store.list("pods")) > 0
        assert await _row_versions(db_pool, cluster_id) == before


async def test_a_relist_maps_exactly_the_objects_that_changed_while_unwatched(
    db_pool: asyncpg.Pool, vault: Vault, sim: KubeSim
) -> None:
    sim.faults.metrics_available = False  # nothing but the sync writes the rows
    cluster_id = await new_cluster(db_pool, vault, sim)
    async with running_sync(db_pool, vault, cluster_id) as sync:
        await _quiet(db_pool, sync)
        before = await _row_versions(db_pool, cluster_id)
        pods = sorted(sim.store.list("pods"), key=lambda p: p["metadata"]["uid"])
        changed, deleted = pods[0]["metadata"], pods[1]["metadata"]
        # The events are cut off mid-stream and the re-watch is told 410: only the relist
        # can see that one pod changed and another went.
        sim.faults.cut_watches(1)
        sim.faults.force_410(1)
        sim.store.patch("pods", changed["name"], {"metadata": {"labels": {"moved": "1"}}},
                        namespace=changed["namespace"])
        sim.store.delete("pods", deleted["name"], namespace=deleted["namespace"])
        sim.store.compact()
        informer = next(i for i in sync.informers if i.spec.kind == "pods")

        async def relists() -> int:
            await asyncio.sleep(0)
            return informer.relists

        await eventually(relists, lambda n: n == 1)
        await eventually(lambda: db_pool.fetchval(
            "SELECT count(*) FROM k8s_pods WHERE cluster_id = $1 AND (labels ? 'moved'"
            " OR deleted_at IS NOT NULL)", cluster_id), lambda n: n == 2)

        assert informer.unchanged == informer.listed_items - 1 == len(pods) - 2
        after = await _row_versions(db_pool, cluster_id)
        assert after["pods"] != before["pods"]
        rewritten = {r[0] for r in set(after["pods"]) - set(before["pods"])}
        assert rewritten == {changed["uid"], deleted["uid"]}
        assert {k: v for k, v in after.items() if k != "pods"} == {
            k: v for k, v in before.items() if k != "pods"}
