"""Mappers against the Kubernetes API's own round-trip fixtures and hand-written objects."""

from __future__ import annotations

import base64
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from sync.helm import decode_storage_secret
from sync.mappers import (
    BadObject,
    map_deployment,
    map_namespace,
    map_node,
    map_pod,
    map_replicaset,
    map_resource_quota,
)
from tests.sync.factories import helm_secret

# A vendored copy of ../shared/k8s-testdata (Apache-2.0, see its LICENSE), so CI clones have it.
TESTDATA = Path(__file__).resolve().parents[1] / "fixtures" / "k8s-testdata"
MAPPERS = {
    "core.v1.Pod.json": map_pod,
    "core.v1.Node.json": map_node,
    "core.v1.Namespace.json": map_namespace,
    "core.v1.ResourceQuota.json": map_resource_quota,
    "apps.v1.Deployment.json": map_deployment,
    "apps.v1.ReplicaSet.json": map_replicaset,
}


def fixture(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((TESTDATA / name).read_text())
    return data


def test_every_testdata_object_has_a_mapper() -> None:
    names = {p.name for p in TESTDATA.glob("*.json")}
    assert names == {*MAPPERS, "core.v1.Secret.json"}


@pytest.mark.parametrize("name", sorted(MAPPERS))
def test_mappers_accept_the_api_round_trip_fixtures(name: str) -> None:
    row: Any = MAPPERS[name](fixture(name))
    uid = row["uid"] if isinstance(row, dict) else row.uid
    assert uid == "uidValue"


def test_round_trip_pod_keeps_what_it_can() -> None:
    row = map_pod(fixture("core.v1.Pod.json"))
    assert row["namespace"] == "namespaceValue"
    assert row["phase"] == "phaseValue"
    assert row["owner_kind"] == "kindValue"
    assert row["deployment_name"] is None
    assert row["restart_count"] == 5
    assert row["created_at"].isoformat() == "2008-01-01T01:01:01+00:00"
    assert row["requests_cpu_cores"] is None  # "requestsKey" is not cpu


def test_round_trip_secret_is_not_a_helm_release() -> None:
    with pytest.raises(BadObject) as caught:
        decode_storage_secret(fixture("core.v1.Secret.json"))
    assert "Ag==" not in str(caught.value)


def _pod(**status: Any) -> dict[str, Any]:
    return {
        "metadata": {
            "uid": "u1",
            "name": "api-7d9f8-abcde",
            "namespace": "payments",
            "creationTimestamp": "2024-05-01T10:00:00Z",
            "labels": {"app": "api", "pod-template-hash": "7d9f8"},
            "ownerReferences": [
                {"kind": "ReplicaSet", "name": "api-7d9f8", "uid": "rs1", "controller": True}
            ],
        },
        "spec": {
            "nodeName": "node-1",
            "containers": [
                {"name": "app", "resources": {"requests": {"cpu": "250m", "memory": "1.5Gi"},
                                              "limits": {"cpu": "1", "memory": "2Gi"}}},
                {"name": "sidecar", "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}}},
            ],
            "initContainers": [{"name": "init", "resources": {"requests": {"cpu": "2"}}}],
        },
        "status": {"phase": "Running", **status},
    }


def test_pod_resources_owner_and_oom_per_container() -> None:
    pod = _pod(
        conditions=[{"type": "Ready", "status": "True"}],
        containerStatuses=[
            {"name": "app", "restartCount": 3, "ready": True, "state": {"running": {}},
             "lastState": {"terminated": {"reason": "OOMKilled",
                                          "finishedAt": "2024-05-01T10:05:00Z"}}},
            {"name": "sidecar", "restartCount": 1, "state": {"waiting": {
                "reason": "CrashLoopBackOff"}}},
        ],
    )
    row = map_pod(pod)
    assert row["deployment_name"] == "api"
    assert row["owner_kind"] == "ReplicaSet" and row["owner_name"] == "api-7d9f8"
    # max(0.25 + 0.05, init 2) = 2 cores; memory 1.5Gi + 64Mi
    assert row["requests_cpu_cores"] == Decimal(2)
    assert row["requests_memory_bytes"] == 1610612736 + 64 * 2**20
    assert row["limits_cpu_cores"] == Decimal(1)
    assert row["restart_count"] == 4
    assert row["oom_kill_count"] == 1
    assert row["ready"] is True
    app, sidecar = row["containers"]
    assert app["oomKills"] == 1 and app["lastTerminatedReason"] == "OOMKilled"
    assert sidecar["waitingReason"] == "CrashLoopBackOff" and sidecar["oomKills"] == 0
    assert row["last_oom_killed_at"].isoformat() == "2024-05-01T10:05:00+00:00"


def test_pod_without_creation_timestamp_is_a_bad_object_named_without_its_body() -> None:
    pod = _pod()
    del pod["metadata"]["creationTimestamp"]
    with pytest.raises(BadObject, match="Pod payments/api-7d9f8-abcde"):
        map_pod(pod)


def test_namespace_team_and_cost_center_from_labels() -> None:
    row = map_namespace(
        {"metadata": {"uid": "n", "name": "payments",
                      "labels": {"team": "pay", "cost-center": "cc-42"}},
         "status": {"phase": "Active"}}
    )
    assert (row["team"], row["cost_center"], row["phase"]) == ("pay", "cc-42", "Active")


def test_node_ready_instance_type_zone_and_capacity() -> None:
    row = map_node(
        {
            "metadata": {"uid": "n1", "name": "node-1", "labels": {
                "node.kubernetes.io/instance-type": "m5.large",
                "topology.kubernetes.io/zone": "eu-west-1a"}},
            "spec": {"taints": [{"key": "k", "effect": "NoSchedule"}]},
            "status": {
                "capacity": {"cpu": "2", "memory": "8028884Ki", "pods": "110",
                             "ephemeral-storage": "100Gi"},
                "allocatable": {"cpu": "1930m", "memory": "7Gi", "pods": "110"},
                "conditions": [{"type": "Ready", "status": "True",
                                "lastHeartbeatTime": "2024-01-01T00:00:00Z"}],
                "nodeInfo": {"kubeletVersion": "v1.30.1"},
            },
        }
    )
    assert row["ready"] is True
    assert (row["instance_type"], row["zone"]) == ("m5.large", "eu-west-1a")
    assert row["capacity_memory_bytes"] == 8028884 * 1024
    assert row["allocatable_cpu_cores"] == Decimal("1.93")
    assert row["capacity_ephemeral_storage_bytes"] == 100 * 2**30
    assert "lastHeartbeatTime" not in row["conditions"][0]


def test_resource_quota_hard_and_used() -> None:
    quota = map_resource_quota(
        {"metadata": {"uid": "q", "name": "q", "namespace": "payments"},
         "status": {"hard": {"requests.cpu": "4", "requests.memory": "8Gi", "pods": "20"},
                    "used": {"requests.cpu": "1500m", "requests.memory": "1Gi", "pods": "3"}}}
    )
    assert quota.hard_cpu_cores == Decimal(4) and quota.used_cpu_cores == Decimal("1.5")
    assert (quota.hard_memory_bytes, quota.used_pods) == (8 * 2**30, 3)


def test_helm_secret_decodes_base64_gzip_json() -> None:
    secret = helm_secret(namespace="web", release="shop", revision=3,
                         values={"password": "hunter2"})
    revision = decode_storage_secret(secret)
    assert (revision.name, revision.namespace, revision.revision) == ("shop", "web", 3)
    assert revision.chart_name == "nginx" and revision.status == "deployed"
    assert revision.values_json == b'{"password":"hunter2"}'
    assert "hunter2" not in repr(revision)


def test_helm_garbage_is_a_bad_object() -> None:
    secret = helm_secret(namespace="web", release="shop", revision=1)
    secret["data"]["release"] = base64.b64encode(b"not helm").decode()
    with pytest.raises(BadObject):
        decode_storage_secret(secret)


def test_mappers_keep_sums_past_int64_exact_for_the_writer_to_clamp() -> None:
    requests = {"memory": "5Ei", "cpu": "1e2000000000"}
    containers = [{"name": n, "resources": {"requests": requests}} for n in ("a", "b")]
    metadata = {"uid": "u", "name": "p", "creationTimestamp": "2024-01-01T00:00:00Z"}
    row = map_pod({"metadata": metadata, "spec": {"containers": containers}})
    assert row["requests_memory_bytes"] == 10 * 2**60
    # Past any column (PostgreSQL's numeric: 131072 digits) a term saturates at 10^131073, so
    # the sum is 2E+131073 and quick, where the exact 2E+2000000000 took seconds and gigabytes
    # (it is the same to the writer, which clamps both).
    assert row["requests_cpu_cores"] == Decimal("2E+131073")
    assert row["containers"][0]["requests"] == {"cpu": "1E+2000000000",
                                                "memory": str(5 * 2**60)}
