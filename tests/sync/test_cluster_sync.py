"""One cluster synced from kubesim over HTTP into real PostgreSQL."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

from app.vault import Vault
from kubesim import KubeSim
from tests.sync.conftest import eventually, new_cluster, running_sync


def live(sim: KubeSim, resource: str, **kw: Any) -> list[dict[str, Any]]:
    return list(sim.store.list(resource, **kw))


async def counts(pool: asyncpg.Pool, cluster_id: uuid.UUID) -> dict[str, int]:
    row = await pool.fetchrow(
        """
        SELECT (SELECT count(*) FROM k8s_namespaces WHERE cluster_id = $1 AND deleted_at IS NULL) ns,
               (SELECT count(*) FROM k8s_nodes WHERE cluster_id = $1 AND deleted_at IS NULL) nodes,
               (SELECT count(*) FROM k8s_deployments WHERE cluster_id = $1 AND deleted_at IS NULL) dep,
               (SELECT count(*) FROM k8s_replicasets WHERE cluster_id = $1 AND deleted_at IS NULL) rs,
               (SELECT count(*) FROM k8s_pods WHERE cluster_id = $1 AND deleted_at IS NULL) pods,
               (SELECT count(*) FROM k8s_helm_releases WHERE cluster_id = $1 AND deleted_at IS NULL) helm
        """,
        cluster_id,
    )
    return dict(row)


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
            "helmreleases",
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
