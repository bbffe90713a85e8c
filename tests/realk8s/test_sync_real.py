"""The sync against a real kube-apiserver (with etcd, controller manager, scheduler and KWOK).

Every expected value comes from kubectl asking the same apiserver, never from our own idea of
what the server holds: rows are compared with kubectl's objects by uid. The objects are made
by kubectl too, and the controllers do the rest (ReplicaSets and Pods of Deployments, pods
rescheduled, namespaces finalized), so what the sync sees is what a real cluster does.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import uuid
from collections.abc import Callable
from dataclasses import replace
from decimal import Decimal
from typing import Any

import aiohttp
import asyncpg
import pytest

from app.vault import Vault
from sync.cluster_sync import ClusterSync
from sync.helm import values_aad
from sync.informer import Informer
from tests.realk8s.conftest import (
    HELM_SECRET_VALUE,
    bare_pod,
    deployment,
    helm_release_secret,
    namespace,
    quota,
    register_real_cluster,
)
from tests.realk8s.controlplane import ControlPlane, TcpGate, tier_versions
from tests.sync.conftest import FAST, eventually, running_sync

pytestmark = pytest.mark.timeout(300)

# kubectl resource -> our table.
TABLES = {
    "namespaces": "k8s_namespaces",
    "nodes": "k8s_nodes",
    "deployments.apps": "k8s_deployments",
    "replicasets.apps": "k8s_replicasets",
    "pods": "k8s_pods",
}
SETTLE_S = 30.0  # controllers and KWOK act within seconds; two cores shared with others


async def kube_items(plane: ControlPlane, resource: str, *args: str) -> list[dict[str, Any]]:
    document = await plane.kubectl_json("get", resource, "-A", *args)
    items: list[dict[str, Any]] = document["items"]
    return items


async def kube_uids(plane: ControlPlane, resource: str, *args: str) -> set[str]:
    return {i["metadata"]["uid"] for i in await kube_items(plane, resource, *args)}


async def live_uids(pool: asyncpg.Pool, cluster_id: uuid.UUID, table: str,
                    where: str = "", *args: Any) -> set[str]:
    rows = await pool.fetch(
        f"SELECT uid FROM {table} WHERE cluster_id = $1 AND deleted_at IS NULL {where}",
        cluster_id, *args)
    return {r["uid"] for r in rows}


async def assert_db_matches_kubectl(pool: asyncpg.Pool, cluster_id: uuid.UUID,
                                    plane: ControlPlane, *, within: float = SETTLE_S) -> None:
    """Every kind's live rows are exactly kubectl's objects, by uid (re-read until both agree,
    since controllers may still be moving when this is called)."""
    for resource, table in TABLES.items():
        async def both(resource: str = resource, table: str = table
                       ) -> tuple[set[str], set[str]]:
            return (await live_uids(pool, cluster_id, table),
                    await kube_uids(plane, resource))

        await eventually(both, lambda pair: pair[0] == pair[1] and bool(pair[1]),
                         within=within, interval=0.3)


async def cluster_row(pool: asyncpg.Pool, cluster_id: uuid.UUID) -> asyncpg.Record:
    row = await pool.fetchrow("SELECT * FROM k8s_clusters WHERE id = $1", cluster_id)
    assert row is not None
    return row


def exists(test: Callable[[asyncpg.Record], bool]) -> Callable[[asyncpg.Record | None], bool]:
    """A predicate on a row that may not exist yet: false until it does."""
    return lambda row: row is not None and test(row)


def informer(sync: ClusterSync, kind: str) -> Informer:
    return next(i for i in sync.informers if i.spec.kind == kind)


async def new_namespace(plane: ControlPlane, prefix: str) -> str:
    """A namespace of this test's own, ready for pods (its default ServiceAccount made)."""
    name = f"{prefix}-{uuid.uuid4().hex[:6]}"
    await plane.apply_async(namespace(name))
    await plane.kubectl("wait", "--for=create", "serviceaccount/default", "-n", name,
                        "--timeout=60s")
    return name


# --- the initial list -------------------------------------------------------------------------


async def test_initial_list_equals_what_kubectl_lists(
    db_pool: asyncpg.Pool, vault: Vault, fleet: ControlPlane
) -> None:
    """A first sync of a running cluster stores exactly its objects, with the values the
    apiserver (not our emulator) gives them."""
    plane = fleet
    cluster_id = await register_real_cluster(db_pool, vault, plane)
    async with running_sync(db_pool, vault, cluster_id):
        await assert_db_matches_kubectl(db_pool, cluster_id, plane)
        cluster = await cluster_row(db_pool, cluster_id)
        assert cluster["status"] == "active" and cluster["last_sync_error"] is None
        # /version of a binary stamped by make k8s-tier: the real version, not "v0.0.0".
        assert cluster["kubernetes_version"] == tier_versions()["K8S_VERSION"]
        # No metrics-server runs: the apiserver answers 404 for metrics.k8s.io.
        await eventually(lambda: cluster_row(db_pool, cluster_id),
                         lambda c: c["metrics_available"] is False)

        pods = {p["metadata"]["uid"]: p for p in await kube_items(plane, "pods")}
        rows = {r["uid"]: r for r in await db_pool.fetch(
            "SELECT * FROM k8s_pods WHERE cluster_id = $1 AND deleted_at IS NULL", cluster_id)}
        assert set(rows) == set(pods)
        for uid, pod in pods.items():
            row = rows[uid]
            assert (row["namespace"], row["name"]) == (pod["metadata"]["namespace"],
                                                        pod["metadata"]["name"])
            assert row["phase"] == pod["status"]["phase"] == "Running"  # KWOK's doing
            assert row["node_name"] == pod["spec"]["nodeName"]  # the scheduler's doing
            assert row["node_name"].startswith("kwok-node-")
            assert row["ready"] is True
            owners = pod["metadata"].get("ownerReferences", [])
            if owners:  # Pod -> ReplicaSet -> Deployment, both made by the controllers
                assert row["owner_kind"] == "ReplicaSet"
                assert row["owner_name"] == owners[0]["name"]
                assert row["deployment_name"] == pod["metadata"]["labels"]["app"]
            else:
                assert row["deployment_name"] is None
        debug = next(r for r in rows.values() if r["name"] == "debug")
        debug_pod = pods[debug["uid"]]["spec"]["containers"][0]["resources"]["requests"]
        # Sent as "0.5" and "1024Mi"; the apiserver canonicalises quantities.
        assert debug_pod == {"cpu": "500m", "memory": "1Gi"}
        assert debug["requests_cpu_cores"] == Decimal("0.5")
        assert debug["requests_memory_bytes"] == 1024**3

        for dep in await kube_items(plane, "deployments.apps"):
            row = await db_pool.fetchrow(
                "SELECT * FROM k8s_deployments WHERE cluster_id = $1 AND uid = $2",
                cluster_id, dep["metadata"]["uid"])
            assert row["replicas_desired"] == dep["spec"]["replicas"]
            assert row["replicas_ready"] == dep["status"]["readyReplicas"]
            assert row["replicas_available"] == dep["status"]["availableReplicas"]
        for rs in await kube_items(plane, "replicasets.apps"):
            row = await db_pool.fetchrow(
                "SELECT * FROM k8s_replicasets WHERE cluster_id = $1 AND uid = $2",
                cluster_id, rs["metadata"]["uid"])
            assert row["deployment_uid"] == rs["metadata"]["ownerReferences"][0]["uid"]

        nodes = await db_pool.fetch(
            "SELECT * FROM k8s_nodes WHERE cluster_id = $1 AND deleted_at IS NULL", cluster_id)
        assert {n["name"] for n in nodes} == {"kwok-node-0", "kwok-node-1", "kwok-node-2"}
        for node in nodes:
            assert node["ready"] is True
            assert node["allocatable_cpu_cores"] == 16
            assert node["allocatable_memory_bytes"] == 64 * 1024**3
        assert {n["zone"] for n in nodes} == {"zone-a", "zone-b"}

        ns = await db_pool.fetchrow(
            "SELECT * FROM k8s_namespaces WHERE cluster_id = $1 AND name = 'fleet-a'"
            " AND deleted_at IS NULL", cluster_id)
        assert (ns["team"], ns["cost_center"], ns["phase"]) == ("payments", "cc-100", "Active")
        # The ResourceQuota's hard limits, and the usage the quota controller counted.
        assert ns["quota_hard_cpu_cores"] == 4
        assert ns["quota_hard_memory_bytes"] == 8 * 1024**3
        assert ns["quota_hard_pods"] == 20
        assert ns["quota_used_pods"] == 4

        release = await db_pool.fetchrow(
            "SELECT * FROM k8s_helm_releases WHERE cluster_id = $1", cluster_id)
        assert (release["namespace"], release["name"], release["revision"]) == (
            "fleet-a", "shop", 2)
        assert (release["status"], release["chart_name"], release["chart_version"]) == (
            "deployed", "nginx", "1.2.0")
        assert HELM_SECRET_VALUE.encode() not in bytes(release["values_encrypted"])
        values = vault.decrypt(bytes(release["values_encrypted"]),
                               key_id=release["values_key_id"],
                               aad=values_aad(cluster_id, "fleet-a", "shop"))
        assert json.loads(values) == {"db": {"password": HELM_SECRET_VALUE}}

        progress = cluster["sync_progress"]
        assert progress["pods"]["items"] == len(pods)
        helm_secrets = await kube_items(plane, "secrets", "-l", "owner=helm")
        assert progress["helmreleases"]["items"] == len(helm_secrets) >= 2  # one per revision


# --- changes while watching -------------------------------------------------------------------


async def test_create_scale_label_and_delete_reach_the_database(
    db_pool: asyncpg.Pool, vault: Vault, fleet: ControlPlane
) -> None:
    """kubectl's changes, and what the controllers do because of them, arrive by watch."""
    plane = fleet
    ns = await new_namespace(plane, "churn")
    cluster_id = await register_real_cluster(db_pool, vault, plane)

    async def pods_in_db() -> set[str]:
        return await live_uids(db_pool, cluster_id, "k8s_pods", "AND namespace = $2", ns)

    async def pods_in_kube() -> set[str]:
        return await kube_uids(plane, "pods", f"--field-selector=metadata.namespace={ns}")

    async def pods_agree(count: int) -> set[str]:
        async def both() -> tuple[set[str], set[str]]:
            return await pods_in_db(), await pods_in_kube()

        db, _ = await eventually(both, lambda p: p[0] == p[1] and len(p[1]) == count,
                                    within=SETTLE_S, interval=0.3)
        return db

    async def dep_row() -> asyncpg.Record | None:
        return await db_pool.fetchrow(
            "SELECT * FROM k8s_deployments WHERE cluster_id = $1 AND namespace = $2"
            " AND name = 'shop'", cluster_id, ns)

    async with running_sync(db_pool, vault, cluster_id):
        await plane.apply_async(deployment(ns, "shop", 2))
        row = await eventually(dep_row, lambda r: r is not None, within=SETTLE_S)
        kube_dep = await plane.kubectl_json("get", "deployment/shop", "-n", ns)
        assert row is not None and row["uid"] == kube_dep["metadata"]["uid"]
        first = await pods_agree(2)

        await plane.kubectl("scale", "deployment/shop", "--replicas=4", "-n", ns)
        await eventually(dep_row, exists(lambda r: r["replicas_desired"] == 4), within=SETTLE_S)
        scaled = await pods_agree(4)
        assert first < scaled
        linked = await db_pool.fetchval(
            "SELECT count(*) FROM k8s_pods WHERE cluster_id = $1 AND namespace = $2"
            " AND deleted_at IS NULL AND deployment_name = 'shop'", cluster_id, ns)
        assert linked == 4

        await plane.kubectl("label", "deployment/shop", "tier=gold", "-n", ns)
        await eventually(dep_row, exists(lambda r: r["labels"].get("tier") == "gold"),
                         within=SETTLE_S)
        victim = (await kube_items(plane, "pods", f"--field-selector=metadata.namespace={ns}")
                  )[0]["metadata"]
        await plane.kubectl("label", f"pod/{victim['name']}", "canary=yes", "-n", ns)
        await eventually(
            lambda: db_pool.fetchval("SELECT labels FROM k8s_pods WHERE cluster_id = $1"
                                     " AND uid = $2", cluster_id, victim["uid"]),
            lambda labels: labels is not None and labels.get("canary") == "yes",
            within=SETTLE_S)

        # A deleted pod of a ReplicaSet is replaced by a new pod (a new uid), not revived.
        await plane.kubectl("delete", f"pod/{victim['name']}", "-n", ns, "--wait=true")
        replaced = await pods_agree(4)
        assert victim["uid"] not in replaced and len(replaced - scaled) == 1
        gone = await db_pool.fetchval(
            "SELECT deleted_at FROM k8s_pods WHERE cluster_id = $1 AND uid = $2",
            cluster_id, victim["uid"])
        assert gone is not None

        await plane.kubectl("scale", "deployment/shop", "--replicas=1", "-n", ns)
        await pods_agree(1)

        # Helm: install, upgrade, uninstall (the last revision's secret deleted).
        await plane.apply_async(helm_release_secret(ns, "cart", 1, status="deployed"))

        async def cart() -> asyncpg.Record | None:
            return await db_pool.fetchrow(
                "SELECT * FROM k8s_helm_releases WHERE cluster_id = $1 AND namespace = $2"
                " AND name = 'cart'", cluster_id, ns)

        await eventually(cart, lambda r: r is not None and r["revision"] == 1, within=SETTLE_S)
        await plane.apply_async(helm_release_secret(ns, "cart", 1, status="superseded"),
                                helm_release_secret(ns, "cart", 2, status="deployed"))
        await eventually(cart, exists(lambda r: r["revision"] == 2 and r["status"] == "deployed"),
                         within=SETTLE_S)
        await plane.kubectl("delete", "secret", "-n", ns, "-l", "owner=helm,name=cart")
        await eventually(cart, exists(lambda r: r["deleted_at"] is not None), within=SETTLE_S)

        # Deleting the Deployment: the garbage collector removes its ReplicaSet and Pods.
        rs_uids = await live_uids(db_pool, cluster_id, "k8s_replicasets", "AND namespace = $2",
                                  ns)
        assert rs_uids
        await plane.kubectl("delete", "deployment/shop", "-n", ns, "--wait=true")
        await eventually(dep_row, exists(lambda r: r["deleted_at"] is not None), within=SETTLE_S)
        await pods_agree(0)
        await eventually(
            lambda: live_uids(db_pool, cluster_id, "k8s_replicasets", "AND namespace = $2", ns),
            lambda live: live == set(), within=SETTLE_S)
        await plane.kubectl("delete", "namespace", ns, "--wait=false")


# --- 410 Gone ---------------------------------------------------------------------------------


async def raw_watch(plane: ControlPlane, path: str, *, want: str | None = None,
                    user: str = "fleetgraph", **params: str) -> tuple[int, dict[str, Any] | None]:
    """Ask the apiserver itself (with the sync's token) for a watch of ``path``: its status
    and its first event (its first event of type ``want``, if given)."""
    context = ssl.create_default_context(cadata=plane.pki.ca_pem.decode())
    headers = {"Authorization": f"Bearer {plane.token(user)}"}
    query = {"watch": "true", "timeoutSeconds": "4", **params}
    async with aiohttp.ClientSession() as session, session.get(
        plane.url + path, params=query, headers=headers, ssl=context,
        timeout=aiohttp.ClientTimeout(total=20)) as response:
        if response.status != 200:
            return response.status, await response.json()
        async for line in response.content:
            if line.strip():
                event: dict[str, Any] = json.loads(line)
                if want is None or event["type"] == want:
                    return 200, event
    return 200, None


async def test_forced_410_gone_loses_no_deletion(
    db_pool: asyncpg.Pool, vault: Vault, fleet: ControlPlane
) -> None:
    """The sync is cut off, a Deployment is deleted and etcd compacted behind its back; back
    in, its Deployment watch gets a real 410 and only the relist can reveal the deletion."""
    plane = fleet
    ns = await new_namespace(plane, "gone")
    await plane.apply_async(deployment(ns, "doomed", 1), deployment(ns, "survivor", 1))
    gate = TcpGate(plane.apiserver_port)
    await gate.open()
    cluster_id = await register_real_cluster(db_pool, vault, plane, server=gate.url)

    async def dep(name: str) -> asyncpg.Record | None:
        return await db_pool.fetchrow(
            "SELECT * FROM k8s_deployments WHERE cluster_id = $1 AND namespace = $2"
            " AND name = $3", cluster_id, ns, name)

    try:
        async with running_sync(db_pool, vault, cluster_id) as sync:
            await eventually(lambda: dep("doomed"), lambda r: r is not None, within=SETTLE_S)
            deployments = informer(sync, "deployments")
            relists = deployments.relists

            await gate.close()
            await eventually(lambda: cluster_row(db_pool, cluster_id),
                             lambda c: c["status"] == "unreachable", within=SETTLE_S)
            stale = deployments.resource_version
            assert stale is not None
            await plane.kubectl("delete", "deployment/doomed", "-n", ns, "--wait=true")
            compacted = await plane.compact_etcd()
            assert compacted > int(stale)
            # The server's own verdict on a watch from where the sync stood: 410 Expired.
            status, event = await raw_watch(plane, "/apis/apps/v1/deployments",
                                            resourceVersion=stale)
            assert status == 200 and event is not None and event["type"] == "ERROR"
            assert event["object"]["code"] == 410 and event["object"]["reason"] == "Expired"

            await gate.open()
            await eventually(lambda: dep("doomed"), exists(lambda r: r["deleted_at"] is not None),
                             within=SETTLE_S)
            assert deployments.relists > relists  # the 410 sent it back to a list
            survivor = await dep("survivor")
            assert survivor is not None and survivor["deleted_at"] is None
            await eventually(lambda: cluster_row(db_pool, cluster_id),
                             lambda c: c["status"] == "active", within=SETTLE_S)
            await assert_db_matches_kubectl(db_pool, cluster_id, plane)
    finally:
        await gate.close()
        await plane.kubectl("delete", "namespace", ns, "--wait=false")


# --- paging and bookmarks ---------------------------------------------------------------------


async def test_paged_lists_follow_real_continue_tokens(
    db_pool: asyncpg.Pool, vault: Vault, fleet: ControlPlane
) -> None:
    """With pages of two, every kind is listed over several pages of the apiserver's own
    continue tokens and still stored whole."""
    plane = fleet
    first = json.loads(await plane.kubectl("get", "--raw", "/api/v1/pods?limit=2"))
    assert len(first["items"]) == 2
    assert first["metadata"]["continue"]  # the real server pages, it does not ignore limit
    assert first["metadata"]["remainingItemCount"] >= 1
    cluster_id = await register_real_cluster(db_pool, vault, plane)
    async with running_sync(db_pool, vault, cluster_id, options=replace(FAST, page_size=2)):
        await assert_db_matches_kubectl(db_pool, cluster_id, plane)
        progress = (await cluster_row(db_pool, cluster_id))["sync_progress"]
        assert progress["pods"]["items"] > 2 * 2  # three pages at least
        assert progress["helmreleases"]["items"] >= 2


async def test_bookmarks_move_an_idle_watch_forward(
    db_pool: asyncpg.Pool, vault: Vault, fleet: ControlPlane
) -> None:
    """A watch on a kind that does not change still moves forward, carried by the apiserver's
    BOOKMARK events, so a re-watch after a quiet spell starts near the present instead of
    from a version etcd may since have compacted."""
    plane = fleet
    # The Helm informer watches only owner=helm Secrets, which nothing touches meanwhile.
    quiet_selector = ("secrets", "-l", "owner=helm")
    cluster_id = await register_real_cluster(db_pool, vault, plane)
    async with running_sync(db_pool, vault, cluster_id,
                            options=replace(FAST, watch_timeout_s=6)) as sync:
        quiet = informer(sync, "helmreleases")
        listed_at = int(quiet.resource_version or 0)
        # Other kinds move etcd's revision on (ConfigMaps are not watched by the sync).
        for i in range(3):
            await plane.kubectl("create", "configmap", f"tick-{uuid.uuid4().hex[:6]}",
                                "-n", "default", f"--from-literal=i={i}")

        async def position() -> int:
            return int(quiet.resource_version or 0)

        moved = await eventually(position, lambda rv: rv > listed_at, within=60.0,
                                 interval=0.5)
        assert quiet.relists == 0  # not a relist
        # No owner=helm Secret has a version past the list: only a bookmark can have
        # carried the watch to ``moved``.
        versions = [int(s["metadata"]["resourceVersion"])
                    for s in await kube_items(plane, *quiet_selector)]
        assert versions and max(versions) <= listed_at < moved
        # And the server does send them, to any watch that asks (the informer does).
        status, event = await raw_watch(plane, "/api/v1/secrets", want="BOOKMARK",
                                        labelSelector="owner=helm",
                                        resourceVersion=str(listed_at),
                                        allowWatchBookmarks="true")
        assert status == 200 and event is not None
        assert event["object"]["kind"] == "Secret" and not event["object"].get("data")
        assert int(event["object"]["metadata"]["resourceVersion"]) > listed_at


# --- credentials without rights ---------------------------------------------------------------


@pytest.mark.parametrize(("user", "token", "expected"), [
    ("nobody", None, "forbidden: HTTP 403"),
    ("fleetgraph", "not-a-token-this-server-knows", "credentials rejected: HTTP 401"),
])
async def test_a_token_without_rights_shows_an_error_not_active(
    db_pool: asyncpg.Pool, vault: Vault, fleet: ControlPlane, user: str, token: str | None,
    expected: str,
) -> None:
    """An authenticated user bound to no role (403 from RBAC on the first list) and a token
    the server does not know (401 already on /version) leave the cluster unreachable with the
    server's reason, and the token appears nowhere in it."""
    plane = fleet
    cluster_id = await register_real_cluster(db_pool, vault, plane, user=user, token=token)
    secret = token or plane.token(user)
    async with running_sync(db_pool, vault, cluster_id, wait=False) as sync:
        row = await eventually(lambda: cluster_row(db_pool, cluster_id),
                               lambda c: c["status"] == "unreachable", within=SETTLE_S)
        assert row["last_sync_error"].startswith(expected), row["last_sync_error"]
        assert secret not in row["last_sync_error"]
        await asyncio.sleep(1.0)  # a few retries later it is still not pretending to be fine
        assert (await cluster_row(db_pool, cluster_id))["status"] == "unreachable"
        assert not sync.synced.is_set()
    if user == "nobody":
        assert 'User "nobody" cannot list resource' in row["last_sync_error"]
    rows = await db_pool.fetchval("SELECT count(*) FROM k8s_pods WHERE cluster_id = $1",
                                  cluster_id)
    assert rows == 0


# --- namespace deletion -----------------------------------------------------------------------


async def test_a_deleted_namespace_cascades_to_every_row_in_it(
    db_pool: asyncpg.Pool, vault: Vault, fleet: ControlPlane
) -> None:
    """Deleting a namespace: the namespace controller deletes what is in it, KWOK lets its
    pods go, the namespace is finalized; every row of it ends up marked deleted."""
    plane = fleet
    ns = await new_namespace(plane, "doomed")
    await plane.apply_async(
        quota(ns, "q", cpu="2", memory="2Gi", pods="10"),
        deployment(ns, "app", 2),
        bare_pod(ns, "loner", cpu="100m", memory="32Mi"),
        helm_release_secret(ns, "chart", 1, status="deployed"),
    )
    cluster_id = await register_real_cluster(db_pool, vault, plane)

    async def live_in_ns() -> dict[str, int]:
        return {
            table: await db_pool.fetchval(
                f"SELECT count(*) FROM {table} WHERE cluster_id = $1 AND namespace = $2"
                " AND deleted_at IS NULL", cluster_id, ns)
            for table in ("k8s_deployments", "k8s_replicasets", "k8s_pods", "k8s_helm_releases")
        }

    async def ns_row() -> asyncpg.Record | None:
        return await db_pool.fetchrow(
            "SELECT * FROM k8s_namespaces WHERE cluster_id = $1 AND name = $2", cluster_id, ns)

    async with running_sync(db_pool, vault, cluster_id):
        await eventually(live_in_ns, lambda c: c == {"k8s_deployments": 1,
                                                      "k8s_replicasets": 1, "k8s_pods": 3,
                                                      "k8s_helm_releases": 1},
                         within=SETTLE_S, interval=0.3)
        await eventually(ns_row, lambda r: r is not None and r["quota_hard_pods"] == 10,
                         within=SETTLE_S)
        await plane.kubectl("delete", "namespace", ns, "--wait=false")
        # First Terminating (the namespace controller at work), then gone.
        await eventually(ns_row, exists(lambda r: r["phase"] == "Terminating" or
                                        r["deleted_at"] is not None), within=SETTLE_S)
        await plane.kubectl("wait", "--for=delete", f"namespace/{ns}", "--timeout=120s")
        await eventually(ns_row, exists(lambda r: r["deleted_at"] is not None),
                         within=SETTLE_S)
        assert await live_in_ns() == {"k8s_deployments": 0, "k8s_replicasets": 0,
                                      "k8s_pods": 0, "k8s_helm_releases": 0}
        await assert_db_matches_kubectl(db_pool, cluster_id, plane)


# --- the shipped RBAC, without its optional Helm grant ----------------------------------------


async def test_without_the_optional_helm_grant_the_rest_still_syncs(
    db_pool: asyncpg.Pool, vault: Vault, fleet: ControlPlane
) -> None:
    """deploy/watched-cluster-helm-rbac.yaml is documented as optional ("without it the
    cluster still syncs"): a token bound only to deploy/watched-cluster-rbac.yaml's
    ClusterRole gets 403 on Secrets, and everything else must still be stored."""
    plane = fleet
    await plane.service_account_token("fleetgraph-no-helm", cluster_role="fleetgraph-reader")
    status, _ = await raw_watch(plane, "/api/v1/secrets", user="fleetgraph-no-helm",
                                labelSelector="owner=helm")
    assert status == 403  # the real authorizer: no Secrets without the Helm grant
    cluster_id = await register_real_cluster(db_pool, vault, plane, user="fleetgraph-no-helm")
    async with running_sync(db_pool, vault, cluster_id, wait=False):
        row = await eventually(lambda: cluster_row(db_pool, cluster_id),
                               lambda c: c["status"] != "pending", within=SETTLE_S)
        assert row["status"] == "active", row["last_sync_error"]
        await assert_db_matches_kubectl(db_pool, cluster_id, plane)
        helm = await db_pool.fetchval(
            "SELECT count(*) FROM k8s_helm_releases WHERE cluster_id = $1", cluster_id)
        assert helm == 0


# --- storage ----------------------------------------------------------------------------------


async def test_volumes_and_claims_bound_by_the_controller_reach_the_database(
    db_pool: asyncpg.Pool, vault: Vault, fleet: ControlPlane
) -> None:
    """A PersistentVolume and a claim made with kubectl: the controller manager's volume binder
    binds them, and the rows hold what kubectl then shows (uids, phases, capacity, the claim's
    reference); deleting the claim marks its row deleted and leaves the Retain volume
    Released."""
    plane = fleet
    ns = await new_namespace(plane, "storage")
    pv_name = f"pv-{ns}"
    await plane.apply_async(
        {"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": pv_name},
         "spec": {"capacity": {"storage": "5Gi"}, "accessModes": ["ReadWriteOnce"],
                  "persistentVolumeReclaimPolicy": "Retain", "storageClassName": "manual",
                  "hostPath": {"path": f"/tmp/{pv_name}"}}},
        {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
         "metadata": {"name": "data", "namespace": ns},
         "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "manual",
                  "volumeName": pv_name, "resources": {"requests": {"storage": "2Gi"}}}},
    )
    await plane.kubectl("wait", "--for=jsonpath={.status.phase}=Bound", "-n", ns,
                        "pvc/data", "--timeout=60s")
    claim = await plane.kubectl_json("get", "pvc", "data", "-n", ns)
    volume = await plane.kubectl_json("get", "pv", pv_name)
    cluster_id = await register_real_cluster(db_pool, vault, plane)

    async def rows() -> tuple[asyncpg.Record | None, asyncpg.Record | None]:
        return (
            await db_pool.fetchrow(
                "SELECT * FROM k8s_persistent_volume_claims WHERE cluster_id = $1"
                " AND uid = $2", cluster_id, claim["metadata"]["uid"]),
            await db_pool.fetchrow(
                "SELECT * FROM k8s_persistent_volumes WHERE cluster_id = $1 AND uid = $2",
                cluster_id, volume["metadata"]["uid"]),
        )

    async with running_sync(db_pool, vault, cluster_id):
        pvc, pv = await eventually(rows, lambda r: r[0] is not None and r[1] is not None,
                                   within=SETTLE_S)
        assert pvc is not None and pv is not None
        assert (pvc["namespace"], pvc["name"], pvc["phase"], pvc["volume_name"],
                pvc["storage_class"], pvc["requests_storage_bytes"], pvc["capacity_bytes"]) == (
            ns, "data", claim["status"]["phase"], pv_name, "manual", 2 * 2**30, 5 * 2**30)
        assert (pv["name"], pv["phase"], pv["capacity_bytes"], pv["reclaim_policy"],
                pv["claim_namespace"], pv["claim_name"], pv["claim_uid"]) == (
            pv_name, volume["status"]["phase"], 5 * 2**30, "Retain", ns, "data",
            claim["metadata"]["uid"])
        assert claim["status"]["phase"] == volume["status"]["phase"] == "Bound"

        await plane.kubectl("delete", "pvc", "data", "-n", ns, "--wait=true")
        await plane.kubectl("wait", "--for=jsonpath={.status.phase}=Released",
                            f"pv/{pv_name}", "--timeout=60s")
        pvc, pv = await eventually(
            rows, lambda r: r[0] is not None and r[0]["deleted_at"] is not None
            and r[1] is not None and r[1]["phase"] == "Released", within=SETTLE_S)
        assert pv is not None and pv["deleted_at"] is None
    await plane.kubectl("delete", "pv", pv_name, "--wait=false")
