"""Fixtures of the real control-plane tier: the control plane, a fleet on it, clusters registered
against it.

The binaries come from ``make k8s-tier`` (see gobuild/build.sh). Without them the tier cannot
run: on a machine with no Go at all it is skipped, saying so; where Go is present the build is
one command away, so a missing cache is an error that names it rather than a quiet skip that
would let CI pass without ever reaching a real apiserver.

The tier is not part of a plain ``pytest`` run (``make test``): its cold build alone takes
about fourteen minutes on two cores (ten for Kubernetes, four for metrics-server), which
with the rest of the suite would take the default path past fifteen. It runs when asked for,
by naming it (``pytest tests/realk8s``, as ``.ci/run`` does after ``make k8s-tier``) or with
``FLEETGRAPH_REALK8S=1``; otherwise its tests are
reported as skipped with that instruction, never silently dropped.
"""

from __future__ import annotations

import base64
import gzip
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from app.vault import Vault
from sync.cluster_sync import kubeconfig_aad
from tests.factories import make_cluster, make_org
from tests.realk8s.controlplane import ControlPlane, binaries_dir, missing_binaries
from tests.sync.factories import make_vault

HERE = Path(__file__).resolve().parent
NOT_ASKED = ("the real control-plane tier runs on its own: `make k8s-tier && pytest "
             "tests/realk8s` (or FLEETGRAPH_REALK8S=1); .ci/run does both")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "realk8s: runs against the real control plane built by `make k8s-tier`")
    config.addinivalue_line(
        "markers", "without_tier: a test here that needs no real control plane (the kubesim "
        "side of a conformance test), so it runs in every pytest run")


def tier_requested(config: pytest.Config) -> bool:
    """Whether this run asked for the tier: by path (tests/realk8s or something in it) or by
    ``FLEETGRAPH_REALK8S=1``."""
    if os.environ.get("FLEETGRAPH_REALK8S") == "1":
        return True
    base = Path(config.invocation_params.dir)
    for arg in config.args:
        path = (base / arg.split("::", 1)[0]).resolve()
        if path == HERE or HERE in path.parents:
            return True
    return False


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark this folder's tests ``realk8s``, and skip them when the run did not ask for them
    (hooks here see every collected item, so only this folder's are touched)."""
    requested = tier_requested(config)
    for item in items:
        if HERE in Path(item.path).resolve().parents:
            if item.get_closest_marker("without_tier") is not None:
                continue
            item.add_marker(pytest.mark.realk8s)
            if not requested:
                item.add_marker(pytest.mark.skip(reason=NOT_ASKED))


def built_binaries() -> Path:
    """The folder ``make k8s-tier`` built; skips (no Go) or fails (Go, but not built)."""
    bin_dir = binaries_dir()
    missing = missing_binaries(bin_dir)
    if missing:
        where = f"{bin_dir} lacks {', '.join(missing)}"
        if shutil.which("go") is None:
            pytest.skip(f"real control-plane tier: Go is not installed, so `make k8s-tier` "
                        f"cannot build kube-apiserver and friends ({where})")
        pytest.fail(f"real control-plane tier: {where}; run `make k8s-tier` to build them "
                    f"(about fourteen minutes cold on two cores, a second once cached)",
                    pytrace=False)
    return bin_dir


@pytest.fixture(scope="session")
def control_plane() -> Iterator[ControlPlane]:
    """etcd, kube-apiserver, kube-controller-manager, kube-scheduler and KWOK, for the
    session; every process is stopped at the end, whatever the tests did. No metrics-server
    runs here: metrics.k8s.io is absent, as on a cluster that never installed it."""
    plane = ControlPlane.start(built_binaries())
    try:
        plane.grant_watched_cluster_rbac()
        yield plane
    finally:
        plane.stop()


@pytest.fixture(scope="module")
def metrics_control_plane() -> Iterator[ControlPlane]:
    """A second control plane, for one module at a time: the same components plus the
    aggregation layer, KWOK's simulated kubelet metrics and metrics-server registered as
    ``v1beta1.metrics.k8s.io``. Its own etcd, so nothing made here shows on the session's
    plane (whose tests rely on metrics.k8s.io being absent)."""
    plane = ControlPlane.start(built_binaries(), metrics_server=True)
    try:
        plane.grant_watched_cluster_rbac(helm=False)
        yield plane
    finally:
        plane.stop()


@pytest.fixture(scope="session")
def vault() -> Vault:
    return make_vault()


# --- the fleet --------------------------------------------------------------------------------


def fake_node(name: str, *, zone: str, instance_type: str,
              kubelet_metrics: bool = False) -> dict[str, Any]:
    """A Node that KWOK manages (its annotation), with the capacity a scheduler needs.

    With ``kubelet_metrics``, it also says where metrics-server finds its kubelet's resource
    metrics, as KWOK's own e2e tests do: KWOK serves every node's at
    ``/metrics/nodes/<name>/metrics/resource`` on its server port, metrics-server takes that
    path from the ``metrics.k8s.io/resource-metrics-path`` annotation and the host from the
    InternalIP (KWOK's node-initialize stage keeps an address the node already has)."""
    capacity = {"cpu": "16", "memory": "64Gi", "pods": "110", "ephemeral-storage": "100Gi"}
    annotations = {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"}
    status: dict[str, Any] = {"capacity": capacity, "allocatable": capacity}
    if kubelet_metrics:
        annotations["metrics.k8s.io/resource-metrics-path"] = (
            f"/metrics/nodes/{name}/metrics/resource")
        status["addresses"] = [{"type": "InternalIP", "address": "127.0.0.1"},
                               {"type": "Hostname", "address": name}]
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": annotations,
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "type": "kwok",
                "node.kubernetes.io/instance-type": instance_type,
                "topology.kubernetes.io/zone": zone,
            },
        },
        # KWOK's node-initialize stage fills in nodeInfo, addresses and the conditions.
        "status": status,
    }


def namespace(name: str, **labels: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": name, "labels": labels}}


def container(name: str, cpu: str, memory: str) -> dict[str, Any]:
    return {"name": name, "image": "registry.k8s.io/pause:3.10",
            "resources": {"requests": {"cpu": cpu, "memory": memory},
                          "limits": {"cpu": cpu, "memory": memory}}}


def deployment(ns: str, name: str, replicas: int, *, cpu: str = "100m",
               memory: str = "64Mi") -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns, "labels": {"app": name}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}},
                         "spec": {"containers": [container(name, cpu, memory)]}},
        },
    }


def bare_pod(ns: str, name: str, *, cpu: str, memory: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": ns, "labels": {"app": name}},
            "spec": {"containers": [container(name, cpu, memory)]}}


def quota(ns: str, name: str, *, cpu: str, memory: str, pods: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ResourceQuota",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"hard": {"requests.cpu": cpu, "requests.memory": memory, "pods": pods}}}


def helm_release_secret(ns: str, release: str, revision: int, *, status: str,
                        values: dict[str, Any] | None = None) -> dict[str, Any]:
    """A Helm 3 storage Secret as ``helm install`` writes it: ``type: helm.sh/release.v1``,
    Helm's labels, and ``data.release`` = base64 (Secret) of base64 of gzip of the JSON."""
    document = {
        "name": release, "namespace": ns, "version": revision,
        "info": {"first_deployed": "2026-01-01T00:00:00Z",
                 "last_deployed": f"2026-01-0{revision}T00:00:00Z",
                 "status": status, "description": "Install complete" if revision == 1
                 else "Upgrade complete"},
        "chart": {"metadata": {"name": "nginx", "version": f"1.{revision}.0",
                               "appVersion": "1.27"}},
        "config": values or {},
    }
    helm_encoded = base64.b64encode(gzip.compress(json.dumps(document).encode()))
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "helm.sh/release.v1",
        "metadata": {"name": f"sh.helm.release.v1.{release}.v{revision}", "namespace": ns,
                     "labels": {"owner": "helm", "name": release, "version": str(revision),
                                "status": status}},
        "data": {"release": base64.b64encode(helm_encoded).decode()},
    }


FLEET_NAMESPACES = ("fleet-a", "fleet-b")
HELM_SECRET_VALUE = "hunter2-in-helm-values"


@pytest.fixture(scope="session")
def fleet(control_plane: ControlPlane) -> ControlPlane:
    """The base fleet, made with kubectl and waited for until it is what a running cluster
    looks like: three KWOK nodes Ready, Deployments rolled out (ReplicaSets and Pods made by
    the controller manager, placed by the scheduler, Running by KWOK), a bare Pod, a
    ResourceQuota whose usage the quota controller has counted, and a Helm release with two
    revisions."""
    plane = control_plane
    plane.apply(
        fake_node("kwok-node-0", zone="zone-a", instance_type="m5.xlarge"),
        fake_node("kwok-node-1", zone="zone-b", instance_type="m5.xlarge"),
        fake_node("kwok-node-2", zone="zone-b", instance_type="c5.2xlarge"),
        namespace("fleet-a", team="payments", **{"cost-center": "cc-100"}),
        namespace("fleet-b", team="search"),
    )
    plane.kubectl_sync("wait", "--for=condition=Ready", "node", "--all", "--timeout=120s")
    for ns in FLEET_NAMESPACES:
        plane.kubectl_sync("wait", "--for=create", "serviceaccount/default", "-n", ns,
                           "--timeout=60s")
    plane.apply(
        quota("fleet-a", "compute", cpu="4", memory="8Gi", pods="20"),
        deployment("fleet-a", "web", 3),
        deployment("fleet-b", "api", 2, cpu="0.25", memory="256Mi"),
        # Given in non-canonical forms on purpose: the apiserver stores "500m" and "1Gi".
        bare_pod("fleet-a", "debug", cpu="0.5", memory="1024Mi"),
        helm_release_secret("fleet-a", "shop", 1, status="superseded"),
        helm_release_secret("fleet-a", "shop", 2, status="deployed",
                            values={"db": {"password": HELM_SECRET_VALUE}}),
    )
    wait_rolled_out(plane, "fleet-a", "web")
    wait_rolled_out(plane, "fleet-b", "api")
    plane.kubectl_sync("wait", "--for=jsonpath={.status.phase}=Running", "pod/debug",
                       "-n", "fleet-a", "--timeout=120s")
    plane.kubectl_sync("wait", "--for=jsonpath={.status.used.pods}=4",
                       "resourcequota/compute", "-n", "fleet-a", "--timeout=120s")
    return plane


def wait_rolled_out(plane: ControlPlane, ns: str, name: str) -> None:
    plane.kubectl_sync("rollout", "status", f"deployment/{name}", "-n", ns, "--timeout=120s")


# --- clusters ---------------------------------------------------------------------------------


async def register_real_cluster(
    pool: asyncpg.Pool, vault: Vault, plane: ControlPlane, *, user: str = "fleetgraph",
    server: str | None = None, token: str | None = None,
) -> uuid.UUID:
    """Register the apiserver as a cluster the way the registry stores one: a kubeconfig of
    inline data only (CA data, a bearer token), sealed by the vault to the row's id."""
    config = plane.kubeconfig(user, server=server)
    if token is not None:
        config["users"][0]["user"]["token"] = token
    async with pool.acquire() as conn:
        org_id = await make_org(conn)
        cluster_id = await make_cluster(conn, org_id, api_server_url=server or plane.url,
                                        status="pending")
        sealed = vault.encrypt(json.dumps(config).encode(), aad=kubeconfig_aad(cluster_id))
        await conn.execute(
            "UPDATE k8s_clusters SET kubeconfig_encrypted = $2, kubeconfig_key_id = $3"
            " WHERE id = $1", cluster_id, sealed.ciphertext, sealed.key_id)
    return cluster_id
