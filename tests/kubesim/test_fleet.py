"""The fleet simulator: its shape, its determinism, its events, and Helm's storage format."""

from __future__ import annotations

import base64
import gzip
import json
from datetime import UTC, datetime

from kubesim import Fleet, Store
from kubesim.clock import SimClock
from kubesim.helm import decode_release_secret
from kubesim.metrics import MetricsSource

START = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def make_fleet(size: str = "small", seed: int = 1) -> Fleet:
    return Fleet(Store(clock=SimClock(START), seed=seed), size=size, seed=seed)


def test_small_fleet_has_the_expected_shape() -> None:
    fleet = make_fleet()
    store = fleet.store
    assert len(store.list("nodes")) == 3
    pods = store.list("pods")
    assert 30 <= len(pods) <= 60
    for ns in store.list("namespaces"):
        assert {"team", "cost-center"} <= set(ns["metadata"]["labels"])
    node = store.list("nodes")[0]
    assert {"node.kubernetes.io/instance-type", "topology.kubernetes.io/zone"} <= set(
        node["metadata"]["labels"]
    )
    assert node["status"]["capacity"]["cpu"] == "4" and node["status"]["allocatable"][
        "memory"
    ].endswith("Ki")
    assert next(c for c in node["status"]["conditions"] if c["type"] == "Ready")["status"] == "True"
    # deployment -> ReplicaSet -> pod ownership, by uid, with controller=true
    pod = pods[0]
    rs_ref = pod["metadata"]["ownerReferences"][0]
    rs = store.get("replicasets", rs_ref["name"], namespace=pod["metadata"]["namespace"])
    assert rs_ref["uid"] == rs["metadata"]["uid"] and rs_ref["controller"] is True
    assert (
        pod["metadata"]["labels"]["pod-template-hash"]
        == rs["metadata"]["labels"]["pod-template-hash"]
    )
    deploy_ref = rs["metadata"]["ownerReferences"][0]
    deploy = store.get("deployments", deploy_ref["name"], namespace=pod["metadata"]["namespace"])
    assert deploy_ref["uid"] == deploy["metadata"]["uid"] and deploy_ref["kind"] == "Deployment"
    container = pod["spec"]["containers"][0]
    assert container["resources"]["requests"]["cpu"] and container["resources"]["limits"]["memory"]
    assert pod["status"]["qosClass"] in ("Guaranteed", "Burstable")
    assert pod["spec"]["nodeName"] in fleet.node_names and pod["status"]["startTime"]
    assert pod["status"]["containerStatuses"][0]["restartCount"] == 0
    assert store.list("resourcequotas")[0]["status"]["used"]["pods"].isdigit()


def test_same_seed_and_steps_give_identical_objects_and_another_seed_does_not() -> None:
    a, b, c = make_fleet(seed=7), make_fleet(seed=7), make_fleet(seed=8)
    for fleet in (a, b, c):
        fleet.advance(1800)
        fleet.oom_kill(
            "kube-system", fleet.store.list("pods", namespace="kube-system")[0]["metadata"]["name"]
        )
    assert json.dumps(a.snapshot(), sort_keys=True) == json.dumps(b.snapshot(), sort_keys=True)
    assert json.dumps(a.snapshot(), sort_keys=True) != json.dumps(c.snapshot(), sort_keys=True)
    assert a.store.resource_version == b.store.resource_version


def test_time_brings_rollouts_scaling_crashloops_oomkills_and_node_outages() -> None:
    fleet = make_fleet("medium", seed=2)
    fleet.advance(1800, tick=60)
    stats = fleet.stats
    assert stats.rollouts > 0 and stats.scalings > 0 and stats.oom_kills > 0
    assert stats.crashloops > 0 and stats.node_outages > 0
    reasons = {e["reason"] for e in fleet.store.list("events")}
    assert {"ScalingReplicaSet", "OOMKilling", "BackOff"} <= reasons
    # after a rollout some deployment has an old ReplicaSet scaled to zero and a newer revision
    revisions = [
        int(d["metadata"]["annotations"]["deployment.kubernetes.io/revision"])
        for d in fleet.store.list("deployments")
    ]
    assert max(revisions) >= 2


def test_hooks_force_crashloop_oomkill_and_node_notready() -> None:
    fleet = make_fleet()
    pod = fleet.store.list("pods", namespace="payments-prod")[0]["metadata"]["name"]
    looped = fleet.crashloop("payments-prod", pod, restarts=2)
    status = looped["status"]["containerStatuses"][0]
    assert (
        status["state"]["waiting"]["reason"] == "CrashLoopBackOff" and status["restartCount"] == 2
    )
    fleet.advance(600)
    later = fleet.store.get("pods", pod, namespace="payments-prod")["status"]["containerStatuses"][
        0
    ]
    assert later["restartCount"] > 2  # the loop goes on with back-off
    other = fleet.store.list("pods", namespace="search-prod")[0]["metadata"]["name"]
    killed = fleet.oom_kill("search-prod", other)["status"]["containerStatuses"][0]
    assert (
        killed["lastState"]["terminated"]["reason"] == "OOMKilled" and killed["restartCount"] == 1
    )
    node = fleet.node_names[1]
    fleet.set_node_ready(node, False, recover_after=60)
    ready = next(
        c for c in fleet.store.get("nodes", node)["status"]["conditions"] if c["type"] == "Ready"
    )
    assert ready["status"] == "Unknown"
    fleet.advance(70)
    ready = next(
        c for c in fleet.store.get("nodes", node)["status"]["conditions"] if c["type"] == "Ready"
    )
    assert ready["status"] == "True"


def test_rollout_replaces_pods_with_a_new_replicaset() -> None:
    fleet = make_fleet()
    before = {
        p["metadata"]["name"]
        for p in fleet.store.list("pods", namespace="payments-prod", label_selector="app=frontend")
    }
    fleet.rollout("payments-prod", "frontend", image="registry.example.com/payments/frontend:2.0.0")
    fleet.step()
    after = fleet.store.list("pods", namespace="payments-prod", label_selector="app=frontend")
    assert len(after) == len(before) and not ({p["metadata"]["name"] for p in after} & before)
    assert {p["spec"]["containers"][0]["image"] for p in after} == {
        "registry.example.com/payments/frontend:2.0.0"
    }
    replicasets = fleet.store.list(
        "replicasets", namespace="payments-prod", label_selector="app=frontend"
    )
    assert sorted(rs["spec"]["replicas"] for rs in replicasets) == [0, len(before)]


def test_helm_release_secrets_use_helms_storage_format() -> None:
    fleet = make_fleet()
    secrets = fleet.store.list("secrets", label_selector="owner=helm")
    assert secrets
    multi = [s for s in secrets if s["metadata"]["labels"]["version"] != "1"]
    assert multi, "some releases have several revisions"
    for secret in secrets:
        labels = secret["metadata"]["labels"]
        assert secret["type"] == "helm.sh/release.v1"
        assert (
            secret["metadata"]["name"]
            == f"sh.helm.release.v1.{labels['name']}.v{labels['version']}"
        )
        # wire form: base64 (Secret.data) of base64 (Helm) of gzip of JSON
        helm_payload = base64.b64decode(secret["data"]["release"])
        gz = base64.b64decode(helm_payload)
        assert gz[:2] == b"\x1f\x8b"
        release = json.loads(gzip.decompress(gz))
        assert release == decode_release_secret(secret)
        assert (
            release["info"]["status"] == labels["status"]
            and str(release["version"]) == labels["version"]
        )
        assert release["chart"]["metadata"]["name"] and release["chart"]["metadata"]["appVersion"]
        assert release["config"]["auth"]["password"]
    by_release: dict[str, list[dict]] = {}
    for secret in secrets:
        by_release.setdefault(
            secret["metadata"]["namespace"] + "/" + secret["metadata"]["labels"]["name"], []
        ).append(secret)
    for revisions in by_release.values():
        latest = max(revisions, key=lambda s: int(s["metadata"]["labels"]["version"]))
        assert [s["metadata"]["labels"]["status"] for s in revisions if s is latest] == ["deployed"]
        assert {s["metadata"]["labels"]["status"] for s in revisions if s is not latest} <= {
            "superseded"
        }
    upgraded = fleet.helm_upgrade(
        multi[0]["metadata"]["namespace"], multi[0]["metadata"]["labels"]["name"]
    )
    assert upgraded["metadata"]["labels"]["status"] == "deployed"


def test_metrics_follow_load() -> None:
    fleet = make_fleet()
    metrics = MetricsSource(fleet.store, load=fleet.load_of)

    def frontend_cpu() -> int:
        items = metrics.pod_metrics(namespace="payments-prod")
        return sum(
            int(c["usage"]["cpu"][:-1])
            for i in items
            if i["metadata"]["labels"]["app"] == "frontend"
            for c in i["containers"]
        )

    fleet.set_load("payments-prod", "frontend", 0.1)
    low = frontend_cpu()
    fleet.set_load("payments-prod", "frontend", 0.9)
    high = frontend_cpu()
    assert high > 4 * low


def test_large_fleet_has_its_documented_size() -> None:
    """Its build time is a benchmark's business (bench_sync builds it), not a timed test."""
    fleet = make_fleet("large", seed=1)
    assert 8_000 <= len(fleet.store.list("pods")) <= 12_000
    assert len(fleet.node_names) == 100
