"""Bulk writer against real PostgreSQL: snapshots, skipped no-ops, deletions, folding."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import asyncpg
import orjson

from sync.helm import decode_storage_secret, values_aad
from sync.mappers import map_namespace, map_pod, map_replicaset, map_resource_quota
from sync.notify import CHANGES_CHANNEL
from sync.writer import HELM, QUOTAS, Batch, ClusterWriter
from tests.factories import make_cluster, make_org
from tests.sync.factories import helm_secret, make_vault


async def _writer(pool: asyncpg.Pool) -> ClusterWriter:
    async with pool.acquire() as conn:
        org = await make_org(conn)
        cluster = await make_cluster(conn, org, status="active")
    return ClusterWriter(pool=pool, vault=make_vault(), cluster_id=cluster, organization_id=org)


def ns(name: str, **labels: str) -> dict[str, Any]:
    return {"metadata": {"uid": f"ns-{name}", "name": name, "labels": labels,
                         "creationTimestamp": "2024-01-01T00:00:00Z"}}


def pod(name: str, *, namespace: str = "shop", rs: str | None = None, phase: str = "Running",
        created: str = "2024-05-01T10:00:00Z") -> dict[str, Any]:
    meta: dict[str, Any] = {"uid": f"pod-{name}", "name": name, "namespace": namespace,
                            "creationTimestamp": created}
    if rs:
        meta["ownerReferences"] = [{"kind": "ReplicaSet", "name": rs, "controller": True}]
    return {"metadata": meta, "spec": {"containers": [{"name": "c"}]},
            "status": {"phase": phase}}


def replicaset(name: str, deployment: str, namespace: str = "shop") -> dict[str, Any]:
    return {"metadata": {"uid": f"rs-{name}", "name": name, "namespace": namespace,
                         "ownerReferences": [{"kind": "Deployment", "name": deployment,
                                              "uid": f"d-{deployment}", "controller": True}]}}


def snapshot(kind: str, rows: list[dict[str, Any]]) -> Batch:
    batch = Batch()
    batch.replace(kind, {r["uid"]: r for r in rows})
    return batch


async def test_snapshot_then_identical_snapshot_changes_nothing(db_pool: asyncpg.Pool) -> None:
    writer = await _writer(db_pool)
    pods = [map_pod(pod(f"p{i}")) for i in range(5)]
    first = await writer.flush(snapshot("pods", pods))
    assert first.rows == 5 and first.kinds == {"pods"}
    again = await writer.flush(snapshot("pods", [map_pod(pod(f"p{i}")) for i in range(5)]))
    assert again.rows == 0 and again.kinds == frozenset()
    count = await db_pool.fetchval(
        "SELECT count(*) FROM k8s_pods WHERE cluster_id = $1 AND deleted_at IS NULL",
        writer.cluster_id,
    )
    assert count == 5


async def test_relist_marks_missing_rows_deleted_and_keeps_them(db_pool: asyncpg.Pool) -> None:
    writer = await _writer(db_pool)
    await writer.flush(snapshot("pods", [map_pod(pod(f"p{i}")) for i in range(3)]))
    result = await writer.flush(snapshot("pods", [map_pod(pod("p0")), map_pod(pod("p2"))]))
    assert result.rows == 1
    rows = await db_pool.fetch(
        "SELECT name, deleted_at IS NOT NULL AS gone FROM k8s_pods WHERE cluster_id = $1"
        " ORDER BY name",
        writer.cluster_id,
    )
    assert [(r["name"], r["gone"]) for r in rows] == [
        ("p0", False), ("p1", True), ("p2", False)
    ]


async def test_deleted_event_keeps_final_state_with_deleted_at(db_pool: asyncpg.Pool) -> None:
    writer = await _writer(db_pool)
    await writer.flush(snapshot("pods", [map_pod(pod("p0"))]))
    batch = Batch()
    final = map_pod(pod("p0", phase="Succeeded"))
    final["deleted_at"] = datetime.now(UTC)
    batch.put("pods", final["uid"], final)
    await writer.flush(batch)
    row = await db_pool.fetchrow(
        "SELECT phase, deleted_at FROM k8s_pods WHERE cluster_id = $1", writer.cluster_id
    )
    assert row["phase"] == "Succeeded" and row["deleted_at"] is not None


async def test_pods_reach_their_deployment_through_the_replicaset(db_pool: asyncpg.Pool) -> None:
    writer = await _writer(db_pool)
    # The pod arrives first, owned by a ReplicaSet whose name has no template hash.
    await writer.flush(snapshot("pods", [map_pod(pod("p0", rs="checkout-abc"))]))
    assert await db_pool.fetchval(
        "SELECT deployment_name FROM k8s_pods WHERE cluster_id = $1", writer.cluster_id
    ) is None
    result = await writer.flush(
        snapshot("replicasets", [map_replicaset(replicaset("checkout-abc", "checkout"))])
    )
    assert result.kinds == {"replicasets", "pods"}
    await writer.flush(snapshot("pods", [map_pod(pod("p0", rs="checkout-abc")),
                                         map_pod(pod("p1", rs="checkout-abc"))]))
    names = await db_pool.fetch(
        "SELECT deployment_name FROM k8s_pods WHERE cluster_id = $1", writer.cluster_id
    )
    assert [r["deployment_name"] for r in names] == ["checkout", "checkout"]


async def test_quotas_are_summed_into_their_namespace(db_pool: asyncpg.Pool) -> None:
    writer = await _writer(db_pool)
    quota = {"metadata": {"uid": "q1", "name": "q1", "namespace": "shop"},
             "status": {"hard": {"requests.cpu": "2", "pods": "10"},
                        "used": {"requests.cpu": "500m", "pods": "1"}}}
    second = {"metadata": {"uid": "q2", "name": "q2", "namespace": "shop"},
              "status": {"hard": {"requests.cpu": "1", "requests.memory": "1Gi"}}}
    batch = snapshot("namespaces", [map_namespace(ns("shop", team="web", **{
        "cost-center": "cc1"}))])
    batch.replace(QUOTAS, {"q1": map_resource_quota(quota), "q2": map_resource_quota(second)})
    result = await writer.flush(batch)
    assert result.kinds == {"namespaces", QUOTAS}
    row = await db_pool.fetchrow(
        "SELECT team, cost_center, quota_hard_cpu_cores, quota_hard_memory_bytes,"
        " quota_hard_pods, quota_used_cpu_cores FROM k8s_namespaces WHERE cluster_id = $1",
        writer.cluster_id,
    )
    assert tuple(row) == ("web", "cc1", Decimal(3), 2**30, 10, Decimal("0.5"))
    gone = Batch()
    gone.put(QUOTAS, "q1", None)
    await writer.flush(gone)
    assert await db_pool.fetchval(
        "SELECT quota_hard_cpu_cores FROM k8s_namespaces WHERE cluster_id = $1",
        writer.cluster_id,
    ) == Decimal(1)


async def test_helm_latest_revision_encrypted_values_and_uninstall(db_pool: asyncpg.Pool) -> None:
    writer = await _writer(db_pool)
    vault = make_vault()
    v1 = helm_secret(namespace="web", release="shop", revision=1, status="superseded",
                     values={"password": "hunter2-old"})
    v2 = helm_secret(namespace="web", release="shop", revision=2, values={"password": "hunter2"})
    batch = Batch()
    batch.replace(HELM, {s["metadata"]["uid"]: decode_storage_secret(s) for s in (v2, v1)})
    assert (await writer.flush(batch)).kinds == {HELM}
    row = await db_pool.fetchrow(
        "SELECT * FROM k8s_helm_releases WHERE cluster_id = $1", writer.cluster_id
    )
    assert (row["revision"], row["status"], row["chart_name"]) == (2, "deployed", "nginx")
    assert b"hunter2" not in row["values_encrypted"]
    plain = vault.decrypt(row["values_encrypted"], key_id=row["values_key_id"],
                          aad=values_aad(writer.cluster_id, "web", "shop"))
    assert orjson.loads(plain) == {"password": "hunter2"}
    # The same revisions again: nothing changes even though values are re-sealed.
    batch = Batch()
    batch.replace(HELM, {s["metadata"]["uid"]: decode_storage_secret(s) for s in (v2, v1)})
    assert (await writer.flush(batch)).rows == 0
    uninstall = Batch()
    uninstall.put(HELM, v1["metadata"]["uid"], None)
    uninstall.put(HELM, v2["metadata"]["uid"], None)
    await writer.flush(uninstall)
    assert await db_pool.fetchval(
        "SELECT deleted_at IS NOT NULL FROM k8s_helm_releases WHERE cluster_id = $1",
        writer.cluster_id,
    )


async def test_one_coalesced_notify_per_flush(db_pool: asyncpg.Pool, database_url: str) -> None:
    writer = await _writer(db_pool)
    heard: list[dict[str, Any]] = []
    listener = await asyncpg.connect(database_url)
    try:
        await listener.add_listener(
            CHANGES_CHANNEL, lambda *args: heard.append(orjson.loads(args[3]))
        )
        batch = snapshot("namespaces", [map_namespace(ns("shop"))])
        batch.replace("pods", {r["uid"]: r for r in [map_pod(pod("p0"))]})
        await writer.flush(batch)
        await writer.flush(snapshot("pods", [map_pod(pod("p0"))]))  # no-op: no notify
        await listener.execute("SELECT 1")
        await asyncio.sleep(0.1)
        mine = [h for h in heard if h["cluster_id"] == str(writer.cluster_id)]
        assert len(mine) == 1
        assert mine[0]["kinds"] == ["namespaces", "pods"]
        assert mine[0]["organization_id"] == str(writer.organization_id)
        assert mine[0]["health_changed"] is True
        assert uuid.UUID(mine[0]["cluster_id"]) == writer.cluster_id
    finally:
        await listener.close()
