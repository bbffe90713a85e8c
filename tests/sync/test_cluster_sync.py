"""One cluster synced from kubesim over HTTP into real PostgreSQL."""

from __future__ import annotations

import uuid
from functools import partial
from typing import Any

import asyncpg
import orjson

from app.vault import Vault
from kubesim import KubeSim
from kubesim.helm import decode_release_secret
from sync.helm import values_aad
from tests.sync.conftest import eventually, new_cluster, running_sync


def live(sim: KubeSim, resource: str, **kw: Any) -> list[dict[str, Any]]:
    return list(sim.store.list(resource, **kw))


LIVE_TABLES = {
    "ns": "k8s_namespaces",
    "nodes": "k8s_nodes",
    "dep": "k8s_deployments",
    "rs": "k8s_replicasets",
    "pods": "k8s_pods",
    "helm": "k8s_helm_releases",
}


async def counts(pool: asyncpg.Pool, cluster_id: uuid.UUID) -> dict[str, int]:
    """Live (not deleted) rows per table for one cluster."""
    return {
        key: await pool.fetchval(
            f"SELECT count(*) FROM {table} WHERE cluster_id = $1 AND deleted_at IS NULL",
            cluster_id,
        )
        for key, table in LIVE_TABLES.items()
    }


def expected(sim: KubeSim) -> dict[str, int]:
    releases = {
        (s["metadata"]["namespace"], s["metadata"]["labels"]["name"])
        for s in live(sim, "secrets", label_selector="owner=helm")
    }
    return {
        "ns": len(live(sim, "namespaces")),
        "nodes": len(live(sim, "nodes")),
        "dep": len(live(sim, "deployments")),
        "rs": len(live(sim, "replicasets")),
        "pods": len(live(sim, "pods")),
        "helm": len(releases),
    }


async def test_fleet_is_listed_with_exact_counts(
    db_pool: asyncpg.Pool, vault: Vault, sim: KubeSim
) -> None:
    cluster_id = await new_cluster(db_pool, vault, sim)
    async with running_sync(db_pool, vault, cluster_id):
        assert await counts(db_pool, cluster_id) == expected(sim)
        cluster = await db_pool.fetchrow("SELECT * FROM k8s_clusters WHERE id = $1", cluster_id)
        assert cluster["status"] == "active"
        assert cluster["last_synced_at"] is not None and cluster["last_sync_error"] is None
        assert cluster["kubernetes_version"]
        assert set(cluster["sync_progress"]) == {
            "namespaces", "nodes", "replicasets", "deployments", "pods", "resourcequotas",
            "helmreleases", "persistentvolumeclaims", "persistentvolumes",
        }
        assert cluster["sync_progress"]["pods"]["items"] == len(live(sim, "pods"))
        assert cluster["health_status"] in {"healthy", "degraded", "critical"}
        linked = await db_pool.fetchval(
            "SELECT count(*) FROM k8s_pods WHERE cluster_id = $1 AND deployment_name IS NULL",
            cluster_id,
        )
        assert linked == sum(
            1 for p in live(sim, "pods")
            if not any(o["kind"] == "ReplicaSet" for o in p["metadata"].get("ownerReferences", []))
        )
        quotas = await db_pool.fetchval(
            "SELECT count(*) FROM k8s_namespaces WHERE cluster_id = $1"
            " AND quota_hard_cpu_cores IS NOT NULL",
            cluster_id,
        )
        assert quotas == len({q["metadata"]["namespace"] for q in live(sim, "resourcequotas")})


def new_pod(sim: KubeSim, name: str) -> dict[str, Any]:
    """A bare pod in the namespace of an existing one."""
    template = live(sim, "pods")[0]
    namespace = template["metadata"]["namespace"]
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": name}},
        "spec": template["spec"],
        "status": {"phase": "Pending"},
    }
    return sim.store.create("pods", pod, namespace=namespace)


async def pod_row(pool: asyncpg.Pool, cluster_id: uuid.UUID, name: str) -> Any:
    return await pool.fetchrow(
        "SELECT * FROM k8s_pods WHERE cluster_id = $1 AND name = $2", cluster_id, name
    )


async def test_pod_created_changed_deleted_shows_within_two_seconds(
    db_pool: asyncpg.Pool, vault: Vault, sim: KubeSim
) -> None:
    cluster_id = await new_cluster(db_pool, vault, sim)
    async with running_sync(db_pool, vault, cluster_id):
        pod = new_pod(sim, "fresh")
        namespace = pod["metadata"]["namespace"]
        row = await eventually(lambda: pod_row(db_pool, cluster_id, "fresh"), within=2.0)
        assert row["phase"] == "Pending" and row["deleted_at"] is None
        sim.store.patch("pods", "fresh", {"metadata": {"labels": {"tier": "gold"}}},
                        namespace=namespace)
        await eventually(
            lambda: pod_row(db_pool, cluster_id, "fresh"),
            lambda r: r is not None and r["labels"].get("tier") == "gold",
            within=2.0,
        )
        sim.store.delete("pods", "fresh", namespace=namespace)
        await eventually(
            lambda: pod_row(db_pool, cluster_id, "fresh"),
            lambda r: r is not None and r["deleted_at"] is not None,
            within=2.0,
        )
        assert (await counts(db_pool, cluster_id))["pods"] == len(live(sim, "pods"))


async def test_forced_410_loses_no_deletion(
    db_pool: asyncpg.Pool, vault: Vault, sim: KubeSim
) -> None:
    cluster_id = await new_cluster(db_pool, vault, sim)
    async with running_sync(db_pool, vault, cluster_id) as sync:
        victim = live(sim, "pods")[0]["metadata"]
        # The DELETED event is cut off mid-stream, history is compacted and the re-watch
        # is told 410: only a relist can reveal the deletion.
        sim.faults.cut_watches(1)
        sim.faults.force_410(1)
        sim.store.delete("pods", victim["name"], namespace=victim["namespace"])
        sim.store.compact()
        await eventually(
            lambda: pod_row(db_pool, cluster_id, victim["name"]),
            lambda r: r is not None and r["deleted_at"] is not None,
        )
        assert (await counts(db_pool, cluster_id))["pods"] == len(live(sim, "pods"))
        pods = next(i for i in sync.informers if i.spec.kind == "pods")
        assert pods.relists == 1


async def test_cutting_the_watch_mid_stream_loses_no_change(
    db_pool: asyncpg.Pool, vault: Vault, sim: KubeSim
) -> None:
    cluster_id = await new_cluster(db_pool, vault, sim)
    async with running_sync(db_pool, vault, cluster_id) as sync:
        sim.faults.cut_watches(1)
        new_pod(sim, "cut-1")  # this event is cut in half and the socket aborted
        new_pod(sim, "cut-2")
        victim = live(sim, "pods")[0]["metadata"]
        sim.store.patch("pods", victim["name"], {"metadata": {"labels": {"seen": "yes"}}},
                        namespace=victim["namespace"])
        for name in ("cut-1", "cut-2"):
            await eventually(partial(pod_row, db_pool, cluster_id, name), within=3.0)
        await eventually(
            lambda: pod_row(db_pool, cluster_id, victim["name"]),
            lambda r: r is not None and r["labels"].get("seen") == "yes",
        )
        assert (await counts(db_pool, cluster_id))["pods"] == len(live(sim, "pods"))
        pods = next(i for i in sync.informers if i.spec.kind == "pods")
        assert pods.relists == 0  # resumed from its resourceVersion, no relist needed


async def cluster_row(pool: asyncpg.Pool, cluster_id: uuid.UUID) -> asyncpg.Record:
    row = await pool.fetchrow("SELECT * FROM k8s_clusters WHERE id = $1", cluster_id)
    assert row is not None
    return row


async def test_unreachable_cluster_is_marked_and_recovers_while_another_keeps_syncing(
    db_pool: asyncpg.Pool, vault: Vault, sim: KubeSim
) -> None:
    async with KubeSim.start(fleet="small", seed=2) as other:
        down_id = await new_cluster(db_pool, vault, sim)
        up_id = await new_cluster(db_pool, vault, other)
        async with (
            running_sync(db_pool, vault, down_id),
            running_sync(db_pool, vault, up_id),
        ):
            await sim.down()
            row = await eventually(
                lambda: cluster_row(db_pool, down_id), lambda r: r["status"] == "unreachable"
            )
            assert row["health_status"] == "unreachable"
            assert row["last_sync_error"] and sim.token not in row["last_sync_error"]
            new_pod(other, "still-syncing")
            await eventually(lambda: pod_row(db_pool, up_id, "still-syncing"), within=2.0)
            assert (await cluster_row(db_pool, up_id))["status"] == "active"
            new_pod(sim, "made-while-down")
            await sim.up()
            row = await eventually(
                lambda: cluster_row(db_pool, down_id), lambda r: r["status"] == "active"
            )
            assert row["last_sync_error"] is None and row["health_status"] != "unreachable"
            await eventually(lambda: pod_row(db_pool, down_id, "made-while-down"))
            assert (await counts(db_pool, down_id))["pods"] == len(live(sim, "pods"))


async def test_oom_kill_raises_the_count_and_changes_health(
    db_pool: asyncpg.Pool, vault: Vault, sim: KubeSim
) -> None:
    cluster_id = await new_cluster(db_pool, vault, sim)
    async with running_sync(db_pool, vault, cluster_id):
        before = await cluster_row(db_pool, cluster_id)
        assert "OOMKilled" not in (before["health_reason"] or "")
        target = next(
            p["metadata"] for p in live(sim, "pods") if p["status"].get("phase") == "Running"
        )
        name, namespace = target["name"], target["namespace"]
        fleet = sim.fleet
        assert fleet is not None
        fleet.oom_kill(namespace, name)
        row = await eventually(
            lambda: pod_row(db_pool, cluster_id, name),
            lambda r: r is not None and r["oom_kill_count"] == 1,
        )
        assert row["restart_count"] >= 1 and row["last_oom_killed_at"] is not None
        assert row["containers"][0]["oomKills"] == 1
        cluster = await eventually(
            lambda: cluster_row(db_pool, cluster_id),
            lambda r: "OOMKilled" in (r["health_reason"] or ""),
        )
        assert cluster["health_status"] in {"degraded", "critical"}
        assert f"1 pod OOMKilled ({namespace}/{name})" in cluster["health_reason"]
        if before["health_status"] == "healthy":
            assert cluster["health_changed_at"] > (before["health_changed_at"] or
                                                   before["created_at"])
        fleet.oom_kill(namespace, name)  # same simulated instant, a second kill
        await eventually(
            lambda: pod_row(db_pool, cluster_id, name),
            lambda r: r is not None and r["oom_kill_count"] == 2,
        )
        deployment = row["deployment_name"]
        if deployment:
            health = await db_pool.fetchrow(
                "SELECT health_status, health_reason FROM k8s_deployments"
                " WHERE cluster_id = $1 AND namespace = $2 AND name = $3",
                cluster_id, namespace, deployment,
            )
            assert health["health_status"] in {"degraded", "critical"}
            assert "1 OOMKilled" in health["health_reason"]


async def test_helm_releases_are_decoded_and_values_never_stored_in_plaintext(
    db_pool: asyncpg.Pool, vault: Vault, sim: KubeSim
) -> None:
    cluster_id = await new_cluster(db_pool, vault, sim)
    async with running_sync(db_pool, vault, cluster_id):
        latest: dict[tuple[str, str], dict[str, Any]] = {}
        for secret in live(sim, "secrets", label_selector="owner=helm"):
            release = decode_release_secret(secret)
            key = (release["namespace"], release["name"])
            if key not in latest or release["version"] > latest[key]["version"]:
                latest[key] = release
        rows = await db_pool.fetch(
            "SELECT * FROM k8s_helm_releases WHERE cluster_id = $1", cluster_id
        )
        assert len(rows) == len(latest) > 0
        for row in rows:
            release = latest[(row["namespace"], row["name"])]
            assert row["revision"] == release["version"]
            assert row["chart_name"] == release["chart"]["metadata"]["name"]
            assert row["status"] == release["info"]["status"]
            if release.get("config"):
                plaintext = orjson.dumps(release["config"], option=orjson.OPT_SORT_KEYS)
                assert plaintext not in row["values_encrypted"]
                for leaf in _strings(release["config"]):
                    assert leaf.encode() not in row["values_encrypted"]
                opened = vault.decrypt(
                    row["values_encrypted"], key_id=row["values_key_id"],
                    aad=values_aad(cluster_id, row["namespace"], row["name"]),
                )
                assert orjson.loads(opened) == release["config"]


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value] if len(value) >= 6 else []
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


async def test_metrics_are_sampled_and_rolled_up(
    db_pool: asyncpg.Pool, vault: Vault, sim: KubeSim
) -> None:
    cluster_id = await new_cluster(db_pool, vault, sim)
    async with running_sync(db_pool, vault, cluster_id):
        await eventually(
            lambda: cluster_row(db_pool, cluster_id), lambda r: r["metrics_available"] is True
        )
        levels = dict(
            await db_pool.fetch(
                "SELECT level, count(*) FROM k8s_resource_metrics WHERE cluster_id = $1"
                " GROUP BY level",
                cluster_id,
            )
        )
        pods = live(sim, "pods")
        assert levels["pod"] == len(pods)
        assert levels["node"] == len(live(sim, "nodes"))
        assert levels["namespace"] == len({p["metadata"]["namespace"] for p in pods})
        assert levels["cluster"] == 1
        assert levels["deployment"] == len(live(sim, "deployments"))
        same_instant = await db_pool.fetchval(
            "SELECT count(DISTINCT sampled_at) FROM k8s_resource_metrics WHERE cluster_id = $1",
            cluster_id,
        )
        assert same_instant == 1
        rollup = await db_pool.fetchrow(
            """
            SELECT (SELECT sum(cpu_cores) FROM k8s_resource_metrics
                     WHERE cluster_id = $1 AND level = 'pod') AS pods,
                   (SELECT sum(cpu_cores) FROM k8s_resource_metrics
                     WHERE cluster_id = $1 AND level = 'namespace') AS namespaces,
                   (SELECT count(*) FROM k8s_pods WHERE cluster_id = $1
                     AND usage_cpu_cores IS NOT NULL) AS pods_with_usage
            """,
            cluster_id,
        )
        assert rollup["pods"] == rollup["namespaces"] and rollup["pods"] > 0
        running = [p for p in pods if p["status"].get("phase") == "Running"]
        assert rollup["pods_with_usage"] == len(running)


async def test_absent_metrics_api_is_reported_and_everything_else_syncs(
    db_pool: asyncpg.Pool, vault: Vault, sim: KubeSim
) -> None:
    sim.faults.metrics_available = False
    cluster_id = await new_cluster(db_pool, vault, sim)
    async with running_sync(db_pool, vault, cluster_id):
        row = await eventually(
            lambda: cluster_row(db_pool, cluster_id), lambda r: r["metrics_available"] is False
        )
        assert row["status"] == "active"
        assert await counts(db_pool, cluster_id) == expected(sim)
        assert await db_pool.fetchval(
            "SELECT count(*) FROM k8s_resource_metrics WHERE cluster_id = $1", cluster_id
        ) == 0


async def test_dropped_database_connections_are_retried_without_losing_events(
    db_pool: asyncpg.Pool, vault: Vault, sim: KubeSim
) -> None:
    cluster_id = await new_cluster(db_pool, vault, sim)
    async with running_sync(db_pool, vault, cluster_id) as sync:
        assert sync.flusher is not None
        # Let the first metrics sample land so only the flusher touches k8s_pods now.
        await eventually(
            lambda: cluster_row(db_pool, cluster_id), lambda r: r["metrics_available"] is True
        )
        async with db_pool.acquire() as blocker:
            # Hold the flush inside its transaction, then kill its connection mid-write.
            tx = blocker.transaction()
            await tx.start()
            await blocker.execute("LOCK TABLE k8s_pods IN ACCESS EXCLUSIVE MODE")
            for i in range(5):
                new_pod(sim, f"during-outage-{i}")
            waiting = await eventually(
                lambda: db_pool.fetch(
                    "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
                    " AND wait_event_type = 'Lock' AND query LIKE '%fg_stage_k8s_pods%'"
                ),
                within=5,
            )
            await db_pool.execute("SELECT pg_terminate_backend($1)", waiting[0]["pid"])
            await tx.rollback()
        for i in range(5):
            await eventually(partial(pod_row, db_pool, cluster_id, f"during-outage-{i}"))
        assert sync.flusher.retries >= 1
        assert (await counts(db_pool, cluster_id))["pods"] == len(live(sim, "pods"))


async def test_nul_characters_in_an_object_do_not_stop_the_cluster(
    db_pool: asyncpg.Pool, vault: Vault, sim: KubeSim
) -> None:
    # PostgreSQL refuses NUL in text and jsonb; one object carrying one (a real API server
    # lets it through in annotations) must not fail the whole flush.
    pod = new_pod(sim, "nul-before-sync")
    namespace = pod["metadata"]["namespace"]
    sim.store.patch("pods", "nul-before-sync",
                    {"metadata": {"labels": {"note": "a\x00b"}}}, namespace=namespace)
    cluster_id = await new_cluster(db_pool, vault, sim)
    async with running_sync(db_pool, vault, cluster_id):
        row = await eventually(lambda: pod_row(db_pool, cluster_id, "nul-before-sync"),
                               within=5.0)
        assert row is not None
        new_pod(sim, "after-nul")
        await eventually(lambda: pod_row(db_pool, cluster_id, "after-nul"), within=2.0)
        status = await db_pool.fetchval(
            "SELECT status FROM k8s_clusters WHERE id = $1", cluster_id)
        assert status == "active"
