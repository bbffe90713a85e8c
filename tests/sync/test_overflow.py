"""One object never stops a cluster: values our columns cannot hold are clamped or nulled, the
object is logged by kind/namespace/name and counted, and the rest of the batch is written.

Writer-level tests against real PostgreSQL, one per kind of overflow, then one end to end
through kubesim and ClusterSync.
"""

from __future__ import annotations

import json
import logging
import random
import string
import uuid
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from app.vault import Vault
from kubesim import KubeSim
from sync.helm import HelmRevision
from sync.mappers import (
    map_deployment,
    map_namespace,
    map_node,
    map_pod,
    map_replicaset,
    map_resource_quota,
)
from sync.writer import HELM, QUOTAS, Batch, ClusterWriter
from tests.factories import make_cluster, make_org
from tests.sync.conftest import eventually, new_cluster, running_sync
from tests.sync.factories import make_vault

INT64_MAX, INT32_MAX = 2**63 - 1, 2**31 - 1
# PostgreSQL's numeric holds 131072 digits before the point; past that asyncpg stores 0.
NUMERIC_MAX = Decimal("9" * 131072)
TESTDATA = Path(__file__).resolve().parents[1] / "fixtures" / "k8s-testdata"


async def new_writer(pool: asyncpg.Pool) -> ClusterWriter:
    async with pool.acquire() as conn:
        org = await make_org(conn)
        cluster = await make_cluster(conn, org, status="active")
    return ClusterWriter(pool=pool, vault=make_vault(), cluster_id=cluster, organization_id=org)


def pod(name: str, *containers: dict[str, Any], created: str = "2024-05-01T10:00:00Z",
        **status: Any) -> dict[str, Any]:
    return {
        "metadata": {"uid": f"uid-{name}", "name": name, "namespace": "shop",
                     "creationTimestamp": created},
        "spec": {"containers": list(containers) or [{"name": "c"}]},
        "status": status,
    }


def container(name: str, **requests: str) -> dict[str, Any]:
    return {"name": name, "resources": {"requests": requests, "limits": requests}}


def batch_of(kind: str, *rows: Any) -> Batch:
    batch = Batch()
    for row in rows:
        batch.put(kind, row["uid"], row)
    return batch


def noise(length: int) -> str:
    """Text that does not compress: PostgreSQL compresses index entries before sizing them."""
    rng = random.Random(length)
    return "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(length))


async def pod_rows(pool: asyncpg.Pool, writer: ClusterWriter) -> dict[str, asyncpg.Record]:
    rows = await pool.fetch("SELECT * FROM k8s_pods WHERE cluster_id = $1", writer.cluster_id)
    return {r["name"]: r for r in rows}


async def test_two_5ei_requests_clamp_the_pod_sum_and_the_batch_is_written(
    db_pool: asyncpg.Pool, caplog: pytest.LogCaptureFixture
) -> None:
    writer = await new_writer(db_pool)
    huge = map_pod(pod("huge", container("a", memory="5Ei", cpu="1"),
                       container("b", memory="5Ei", cpu="1")))
    assert huge["requests_memory_bytes"] == 10 * 2**60  # exact: the mapper does not hide it
    with caplog.at_level(logging.WARNING, logger="sync.writer"):
        result = await writer.flush(batch_of("pods", huge, map_pod(pod("small"))))
    assert result.rows == 2
    rows = await pod_rows(db_pool, writer)
    assert rows["huge"]["requests_memory_bytes"] == INT64_MAX
    assert rows["huge"]["limits_memory_bytes"] == INT64_MAX
    assert rows["huge"]["requests_cpu_cores"] == 2
    assert rows["small"]["requests_memory_bytes"] is None
    assert (writer.stats.values_clamped, writer.stats.objects_adjusted) == (2, 1)
    assert writer.stats.objects_skipped == writer.stats.values_nulled == 0
    [line] = [r.getMessage() for r in caplog.records if "Pod shop/huge" in r.getMessage()]
    assert "requests_memory_bytes clamped (11529215046068469760 to 9223372036854775807)" in line


async def test_restart_counts_summing_past_int32_are_clamped(db_pool: asyncpg.Pool) -> None:
    writer = await new_writer(db_pool)
    statuses = [{"name": n, "restartCount": INT32_MAX - 1} for n in ("a", "b")]
    row = map_pod(pod("crashy", {"name": "a"}, {"name": "b"}, containerStatuses=statuses))
    await writer.flush(batch_of("pods", row))
    assert (await pod_rows(db_pool, writer))["crashy"]["restart_count"] == INT32_MAX
    assert writer.stats.values_clamped == 1


async def test_counts_past_int32_bytes_past_int64_and_cores_past_numeric_are_clamped(
    db_pool: asyncpg.Pool,
) -> None:
    writer = await new_writer(db_pool)
    node = map_node({
        "metadata": {"uid": "n1", "name": "n1"},
        "status": {"capacity": {"cpu": "1e131072", "memory": "1e30", "pods": "1e12"},
                   "allocatable": {"cpu": "-1e200000", "memory": "-1e30", "pods": "-1e12",
                                   "ephemeral-storage": "1e2000000000"}},
    })
    await writer.flush(batch_of("nodes", node))
    row = await db_pool.fetchrow("SELECT * FROM k8s_nodes WHERE cluster_id = $1",
                                 writer.cluster_id)
    assert row["capacity_cpu_cores"] == NUMERIC_MAX
    assert row["allocatable_cpu_cores"] == NUMERIC_MAX.copy_negate()
    assert (row["capacity_memory_bytes"], row["allocatable_memory_bytes"]) == (
        INT64_MAX, -(2**63))
    assert (row["capacity_pods"], row["allocatable_pods"]) == (INT32_MAX, -(2**31))
    assert row["allocatable_ephemeral_storage_bytes"] == INT64_MAX
    assert writer.stats.values_clamped == 7


async def test_times_outside_years_1_to_9999_in_utc_are_stored_as_null(
    db_pool: asyncpg.Pool,
) -> None:
    writer = await new_writer(db_pool)
    # Both parse (an offset is allowed) but fall outside Python's years once in UTC.
    row = map_pod(pod("old", startTime="0001-01-01T00:00:00+01:00"))
    namespace = map_namespace({"metadata": {"uid": "ns1", "name": "shop",
                                            "creationTimestamp": "9999-12-31T23:30:00-01:00"}})
    batch = batch_of("pods", row)
    batch.put("namespaces", "ns1", namespace)
    await writer.flush(batch)
    assert (await pod_rows(db_pool, writer))["old"]["start_time"] is None
    assert await db_pool.fetchval(
        "SELECT created_at FROM k8s_namespaces WHERE cluster_id = $1 AND name = 'shop'",
        writer.cluster_id) is None
    assert (writer.stats.values_nulled, writer.stats.objects_adjusted) == (2, 2)


async def test_a_pod_whose_creation_time_cannot_be_stored_is_skipped_and_the_rest_written(
    db_pool: asyncpg.Pool, caplog: pytest.LogCaptureFixture
) -> None:
    writer = await new_writer(db_pool)
    # created_at is NOT NULL and the partition key: without it the pod has no row.
    lost = map_pod(pod("lost", created="0001-01-01T00:00:00+05:00"))
    with caplog.at_level(logging.WARNING, logger="sync.writer"):
        await writer.flush(batch_of("pods", lost, map_pod(pod("kept"))))
    assert set(await pod_rows(db_pool, writer)) == {"kept"}
    assert writer.stats.objects_skipped == 1
    assert any("Pod shop/lost not written: created_at" in r.getMessage() for r in caplog.records)


async def test_nul_characters_are_dropped_from_text_and_jsonb(db_pool: asyncpg.Pool) -> None:
    # kubeapi drops NULs from API bodies; the writer does too, for whatever else brings them.
    writer = await new_writer(db_pool)
    row = map_pod(pod("nul", phase="Run\x00ning"))
    row["labels"] = {"note": "a\x00b", "k\x00ey": "v"}
    await writer.flush(batch_of("pods", row))
    stored = (await pod_rows(db_pool, writer))["nul"]
    assert stored["phase"] == "Running"
    assert stored["labels"] == {"note": "ab", "key": "v"}
    assert writer.stats.values_clamped == 2


async def test_a_label_value_too_long_for_its_index_is_nulled_and_a_name_is_skipped(
    db_pool: asyncpg.Pool,
) -> None:
    writer = await new_writer(db_pool)
    team = noise(100_000)
    namespace = map_namespace({"metadata": {"uid": "ns1", "name": "shop",
                                            "labels": {"team": team}}})
    long_name = map_pod(pod(noise(10_000)))
    batch = batch_of("pods", long_name, map_pod(pod("fine")))
    batch.put("namespaces", "ns1", namespace)
    await writer.flush(batch)
    stored = await db_pool.fetchrow(
        "SELECT team, labels FROM k8s_namespaces WHERE cluster_id = $1", writer.cluster_id)
    assert stored["team"] is None  # the indexed column
    assert stored["labels"] == {"team": team}  # jsonb keeps the whole value
    assert set(await pod_rows(db_pool, writer)) == {"fine"}
    assert (writer.stats.values_nulled, writer.stats.objects_skipped) == (1, 1)


async def test_quota_totals_past_int64_are_clamped(db_pool: asyncpg.Pool) -> None:
    writer = await new_writer(db_pool)
    batch = batch_of("namespaces", map_namespace({"metadata": {"uid": "ns1", "name": "shop"}}))
    batch.replace(QUOTAS, {
        f"q{i}": map_resource_quota({
            "metadata": {"uid": f"q{i}", "name": f"q{i}", "namespace": "shop"},
            "status": {"hard": {"requests.memory": "5Ei", "requests.cpu": "1", "pods": "2e9"}},
        })
        for i in (1, 2)
    })
    await writer.flush(batch)
    row = await db_pool.fetchrow(
        "SELECT quota_hard_memory_bytes, quota_hard_cpu_cores, quota_hard_pods"
        " FROM k8s_namespaces WHERE cluster_id = $1", writer.cluster_id)
    assert tuple(row) == (INT64_MAX, 2, INT32_MAX)
    assert writer.stats.values_clamped == 2


async def test_json_jsonb_cannot_hold_is_mended(db_pool: asyncpg.Pool) -> None:
    writer = await new_writer(db_pool)
    deep: dict[str, Any] = {}
    cursor = deep
    for _ in range(300):  # orjson refuses to nest past 254
        cursor["next"] = {}
        cursor = cursor["next"]
    deployment = map_deployment({
        "metadata": {"uid": "d1", "name": "api", "namespace": "shop"},
        "spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 2**70},
                              "deep": deep}},
    })
    await writer.flush(batch_of("deployments", deployment))
    params = await db_pool.fetchval(
        "SELECT strategy_params FROM k8s_deployments WHERE cluster_id = $1", writer.cluster_id)
    assert params["rollingUpdate"] == {"maxSurge": INT64_MAX}
    depth, node = 0, params["deep"]
    while isinstance(node, dict):
        depth, node = depth + 1, node.get("next")
    assert 100 < depth < 254
    assert writer.stats.values_clamped == 1


async def test_helm_release_text_with_nul_is_cleaned(db_pool: asyncpg.Pool) -> None:
    writer = await new_writer(db_pool)
    revision = HelmRevision(
        secret_uid="s1", secret_name="sh.helm.release.v1.web.v1", namespace="shop",
        name="web", revision=1, chart_name="ng\x00inx", chart_version="1.0.0", app_version=None,
        status="deployed", description="Install\x00 complete", first_deployed_at=None,
        last_deployed_at=None, values_json=None,
    )
    batch = Batch()
    batch.put(HELM, "s1", revision)
    await writer.flush(batch)
    row = await db_pool.fetchrow(
        "SELECT chart_name, description FROM k8s_helm_releases WHERE cluster_id = $1",
        writer.cluster_id)
    assert tuple(row) == ("nginx", "Install complete")
    assert writer.stats.values_clamped == 2


MAPPERS = {
    "core.v1.Namespace.json": ("namespaces", map_namespace),
    "core.v1.Node.json": ("nodes", map_node),
    "apps.v1.Deployment.json": ("deployments", map_deployment),
    "apps.v1.ReplicaSet.json": ("replicasets", map_replicaset),
    "core.v1.Pod.json": ("pods", map_pod),
}


async def test_the_api_round_trip_fixtures_are_written_whole(db_pool: asyncpg.Pool) -> None:
    """The Kubernetes API's fixtures, every field filled with odd values: mapped and flushed
    together, each lands in its table with nothing clamped, nulled or skipped."""
    writer = await new_writer(db_pool)
    batch = Batch()
    for name, (kind, mapper) in MAPPERS.items():
        row = mapper(json.loads((TESTDATA / name).read_text()))
        batch.put(kind, f"{kind}-uid", row)
    quota = map_resource_quota(json.loads((TESTDATA / "core.v1.ResourceQuota.json").read_text()))
    batch.put(QUOTAS, quota.uid, quota)
    result = await writer.flush(batch)
    assert result.kinds >= {"namespaces", "nodes", "deployments", "replicasets", "pods"}
    for table in ("k8s_namespaces", "k8s_nodes", "k8s_deployments", "k8s_replicasets",
                  "k8s_pods"):
        assert await db_pool.fetchval(
            f"SELECT count(*) FROM {table} WHERE cluster_id = $1 AND uid = 'uidValue'",
            writer.cluster_id) == 1
    assert writer.stats.objects_adjusted == writer.stats.objects_skipped == 0


def huge_pod(sim: KubeSim, name: str) -> None:
    sim.store.create("pods", {
        "metadata": {"name": name, "labels": {"app": "huge"}},
        "spec": {"containers": [
            {"name": n, "image": "busybox", "resources": {"requests": {"memory": "5Ei"}}}
            for n in ("a", "b")
        ]},
    }, namespace="huge")


def plain_pod(sim: KubeSim, name: str) -> None:
    sim.store.create("pods", {
        "metadata": {"name": name},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]},
    }, namespace="huge")


async def memory_of(pool: asyncpg.Pool, cluster_id: uuid.UUID, name: str) -> Any:
    return await pool.fetchrow(
        "SELECT requests_memory_bytes FROM k8s_pods WHERE cluster_id = $1 AND name = $2",
        cluster_id, name)


async def test_an_overflowing_pod_does_not_stop_the_cluster_end_to_end(
    db_pool: asyncpg.Pool, vault: Vault, sim: KubeSim
) -> None:
    sim.store.create("namespaces", {"metadata": {"name": "huge"}})
    huge_pod(sim, "listed")
    plain_pod(sim, "listed-neighbour")
    cluster_id = await new_cluster(db_pool, vault, sim)
    async with running_sync(db_pool, vault, cluster_id) as sync:
        listed = await eventually(partial(memory_of, db_pool, cluster_id, "listed"))
        assert listed["requests_memory_bytes"] == INT64_MAX
        pods = await db_pool.fetchval(
            "SELECT count(*) FROM k8s_pods WHERE cluster_id = $1 AND deleted_at IS NULL",
            cluster_id)
        assert pods == len(sim.store.list("pods"))  # the rest of the cluster synced
        # and the watch keeps going past another one
        huge_pod(sim, "watched")
        plain_pod(sim, "watched-neighbour")
        await eventually(partial(memory_of, db_pool, cluster_id, "watched-neighbour"))
        watched = await memory_of(db_pool, cluster_id, "watched")
        assert watched["requests_memory_bytes"] == INT64_MAX
        cluster = await db_pool.fetchrow(
            "SELECT status, last_sync_error FROM k8s_clusters WHERE id = $1", cluster_id)
        assert (cluster["status"], cluster["last_sync_error"]) == ("active", None)
        flusher = sync.flusher
        assert flusher is not None
        assert flusher.writer.stats.values_clamped >= 2


async def test_pod_memory_usage_past_a_bigint_saturates_instead_of_failing_the_sample(
    db_pool: asyncpg.Pool, vault: Vault, sim: KubeSim
) -> None:
    """Four containers requesting 5Ei report usage whose sum passes int64; the sample (and the
    namespace and cluster sums above it) are stored at 2^63-1, and metrics stay available."""
    from dataclasses import replace

    from tests.sync.conftest import FAST

    sim.store.create("namespaces", {"metadata": {"name": "huge"}})
    sim.store.create("pods", {
        "metadata": {"name": "hungry"},
        "spec": {"containers": [
            {"name": n, "image": "busybox", "resources": {"requests": {"memory": "5Ei"}}}
            for n in ("a", "b", "c", "d")]},
        "status": {"phase": "Running"},
    }, namespace="huge")
    cluster_id = await new_cluster(db_pool, vault, sim)
    async with running_sync(db_pool, vault, cluster_id,
                            options=replace(FAST, metrics_interval=0.2)):
        async def samples() -> dict[str, Any]:
            found = await db_pool.fetch(
                "SELECT level, memory_bytes FROM k8s_resource_metrics WHERE cluster_id = $1"
                " AND namespace IN ('huge', '') AND name IN ('hungry', '')", cluster_id)
            return {r["level"]: r["memory_bytes"] for r in found}

        stored = await eventually(samples, lambda s: {"pod", "namespace"} <= s.keys())
        assert stored["pod"] == INT64_MAX and stored["namespace"] == INT64_MAX
        assert await db_pool.fetchval(
            "SELECT metrics_available FROM k8s_clusters WHERE id = $1", cluster_id) is True
