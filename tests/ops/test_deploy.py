"""``deploy/`` as an operator applies it: ``kubectl kustomize`` builds the base and the overlay,
the pods meet what the issue asks (replicas, probes, limits, non-root read-only), and the
watched-cluster ClusterRole grants exactly what the sync reads, derived from the sync's own
paths so the two cannot drift apart."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from sync.cluster_sync import ClusterSync
from sync.metrics import NODE_METRICS_PATH, POD_METRICS_PATH
from sync.writer import OomLedger

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
READ_ONLY = {"get", "list", "watch"}


def kubectl() -> str:
    """The machine's kubectl, else the one ``make k8s-tier`` built (both ship kustomize)."""
    found = shutil.which("kubectl")
    if found:
        return found
    from tests.realk8s.controlplane import binaries_dir

    built = binaries_dir() / "kubectl"
    if built.is_file():
        return str(built)
    pytest.skip("no kubectl to build deploy/ with: `apt-get install kubectl` or `make k8s-tier`")


def build(path: Path) -> dict[tuple[str, str], dict[str, Any]]:
    built = subprocess.run([kubectl(), "kustomize", str(path)], capture_output=True, text=True,
                           timeout=60, check=False)
    assert built.returncode == 0, built.stderr
    return {(doc["kind"], doc["metadata"]["name"]): doc
            for doc in yaml.safe_load_all(built.stdout) if doc}


def _one(objects: dict[tuple[str, str], dict[str, Any]], kind: str) -> dict[str, Any]:
    [found] = [doc for (k, _), doc in objects.items() if k == kind]
    return found


def test_the_base_builds_a_deployment_fit_for_production() -> None:
    objects = build(DEPLOY)
    assert {kind for kind, _ in objects} == {
        "Deployment", "Service", "ServiceAccount", "PodDisruptionBudget", "ConfigMap"}
    deployment = _one(objects, "Deployment")
    spec = deployment["spec"]
    assert spec["replicas"] == 2
    pod = spec["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["automountServiceAccountToken"] is False
    assert pod["serviceAccountName"] == _one(objects, "ServiceAccount")["metadata"]["name"]
    configmap = _one(objects, "ConfigMap")["metadata"]["name"]
    for container in pod["containers"] + pod["initContainers"]:
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
        assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
        assert set(container["resources"]["requests"]) == {"cpu", "memory"}
        assert set(container["resources"]["limits"]) == {"cpu", "memory"}
        secrets = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container["env"]
                   if "valueFrom" in e}
        assert {k: v["key"] for k, v in secrets.items()} == {
            "DATABASE_URL": "DATABASE_URL", "BYOK_ENCRYPTION_KEY": "BYOK_ENCRYPTION_KEY"}
        assert {v["name"] for v in secrets.values()} == {"fleetgraph"}
        assert container["envFrom"] == [{"configMapRef": {"name": configmap}}]
    [server] = pod["containers"]
    assert server["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert server["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert server["args"][0] == "serve" and "--no-migrate" in server["args"]
    assert [c["args"] for c in pod["initContainers"]] == [["migrate"]]
    mounts = {m["mountPath"] for m in server["volumeMounts"]}
    assert mounts == {"/tmp"}  # the one writable path
    settings = _one(objects, "ConfigMap")["data"]
    assert settings["FLEETGRAPH_LOG_FORMAT"] == "json"
    assert "BYOK_ENCRYPTION_KEY" not in settings and "DATABASE_URL" not in settings
    labels = spec["selector"]["matchLabels"]
    service, pdb = _one(objects, "Service"), _one(objects, "PodDisruptionBudget")
    assert service["spec"]["selector"] == labels == pdb["spec"]["selector"]["matchLabels"]
    assert pdb["spec"]["minAvailable"] == 1
    assert labels.items() <= spec["template"]["metadata"]["labels"].items()


def test_the_example_overlay_builds() -> None:
    objects = build(DEPLOY / "overlays" / "example")
    assert ("Namespace", "fleetgraph") in objects
    deployment = _one(objects, "Deployment")
    assert deployment["metadata"]["namespace"] == "fleetgraph"
    [server] = deployment["spec"]["template"]["spec"]["containers"]
    assert server["image"].startswith("registry.example.com/")
    settings = _one(objects, "ConfigMap")["data"]
    assert settings["FLEETGRAPH_PROMETHEUS"] == "9100"
    assert settings["FLEETGRAPH_LOG_FORMAT"] == "json"  # merged over the base, not replacing it


def _rules(path: Path, kind: str = "ClusterRole") -> list[dict[str, Any]]:
    [role] = [doc for doc in yaml.safe_load_all(path.read_text()) if doc and doc["kind"] == kind]
    rules: list[dict[str, Any]] = role["rules"]
    return rules


def _resource(path: str) -> tuple[str, str]:
    """(API group, resource) of a collection path such as /apis/apps/v1/replicasets."""
    parts = path.strip("/").split("/")
    return ("", parts[2]) if parts[0] == "api" else (parts[1], parts[3])


def _granted(rules: list[dict[str, Any]]) -> dict[tuple[str, str], set[str]]:
    granted: dict[tuple[str, str], set[str]] = {}
    for rule in rules:
        for group in rule.get("apiGroups", []):
            for resource in rule.get("resources", []):
                granted.setdefault((group, resource), set()).update(rule["verbs"])
    return granted


def test_the_watched_cluster_role_grants_exactly_what_the_sync_reads() -> None:
    specs = ClusterSync._specs(object.__new__(ClusterSync), OomLedger())  # the sync's own list
    watched = {_resource(spec.path) for spec in specs}
    helm = {_resource(spec.path) for spec in specs if spec.api_kind == "Secret"}
    assert helm == {("", "secrets")}
    expected = {resource: {"list", "watch"} for resource in watched - helm}
    expected |= {_resource(path): {"list"} for path in (NODE_METRICS_PATH, POD_METRICS_PATH)}

    rules = _rules(DEPLOY / "watched-cluster-rbac.yaml")
    assert _granted(rules) == expected
    non_resource = [r for r in rules if "nonResourceURLs" in r]
    assert non_resource == [{"nonResourceURLs": ["/version"], "verbs": ["get"]}]
    for rule in rules:
        assert set(rule["verbs"]) <= READ_ONLY and "*" not in str(rule)

    helm_rules = _rules(DEPLOY / "watched-cluster-helm-rbac.yaml")
    assert _granted(helm_rules) == {("", "secrets"): {"list", "watch"}}


def test_the_rbac_files_bind_one_service_account() -> None:
    subjects = []
    for name in ("watched-cluster-rbac.yaml", "watched-cluster-helm-rbac.yaml"):
        for doc in yaml.safe_load_all((DEPLOY / name).read_text()):
            if doc and doc["kind"] == "ClusterRoleBinding":
                subjects.extend(doc["subjects"])
    assert subjects and all(s == subjects[0] for s in subjects)
    assert subjects[0]["kind"] == "ServiceAccount"
