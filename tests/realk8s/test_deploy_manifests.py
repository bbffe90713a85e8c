"""deploy/ against the real kube-apiserver: the base and the example overlay pass a server-side
dry run (the apiserver's own schema validation and admission), and the pods they make are
admitted under the restricted Pod Security Standard.

The watched-cluster RBAC itself is proven by the rest of this tier: its fixtures sync through a
ServiceAccount token bound only to deploy/watched-cluster-rbac.yaml (plus the Helm file), and
test_without_the_optional_helm_grant_the_rest_still_syncs drops the Helm grant."""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path
from typing import Any

import yaml

from tests.realk8s.controlplane import ControlPlane

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
OVERLAY = DEPLOY / "overlays" / "example"


def _kubectl(plane: ControlPlane, *args: str, stdin: str | None = None
             ) -> subprocess.CompletedProcess[str]:
    """kubectl as the admin, keeping stderr (where admission warnings are printed)."""
    config = plane.write_kubeconfig("admin")
    return subprocess.run([str(plane.bin_dir / "kubectl"), f"--kubeconfig={config}", *args],
                          input=stdin, capture_output=True, text=True, timeout=120, check=False)


def test_the_base_passes_a_server_side_dry_run(control_plane: ControlPlane) -> None:
    done = _kubectl(control_plane, "apply", "--dry-run=server", "-k", str(DEPLOY),
                    "-n", "default")
    assert done.returncode == 0, done.stderr
    for made in ("deployment.apps/fleetgraph", "service/fleetgraph", "serviceaccount/fleetgraph",
                 "poddisruptionbudget.policy/fleetgraph", "configmap/fleetgraph-settings-"):
        assert made in done.stdout, done.stdout
    assert "(server dry run)" in done.stdout


def _apply_dry_run(plane: ControlPlane, *objects: dict[str, Any]
                   ) -> subprocess.CompletedProcess[str]:
    listed = {"apiVersion": "v1", "kind": "List", "items": list(objects)}
    return _kubectl(plane, "apply", "--dry-run=server", "-f", "-", stdin=json.dumps(listed))


def test_the_overlay_passes_a_dry_run_and_its_pods_meet_restricted_pod_security(
    control_plane: ControlPlane
) -> None:
    """The overlay, moved into a namespace of this test's own that carries the overlay
    namespace's labels (enforce and warn: restricted), so nothing the other tests of this tier
    list is left behind: the namespace and its ServiceAccount are the only real objects, and
    they are deleted at the end."""
    plane = control_plane
    built = _kubectl(plane, "kustomize", str(OVERLAY))
    assert built.returncode == 0, built.stderr
    objects = [d for d in yaml.safe_load_all(built.stdout) if d]
    [ns] = [d for d in objects if d["kind"] == "Namespace"]
    check = f"fleetgraph-psa-{uuid.uuid4().hex[:8]}"
    ns["metadata"]["name"] = check
    namespaced = [d for d in objects if d["kind"] != "Namespace"]
    for obj in namespaced:
        obj["metadata"]["namespace"] = check
    [account] = [d for d in namespaced if d["kind"] == "ServiceAccount"]
    [deployment] = [d for d in namespaced if d["kind"] == "Deployment"]
    created = _kubectl(plane, "apply", "-f", "-", stdin=json.dumps(
        {"apiVersion": "v1", "kind": "List", "items": [ns, account]}))
    assert created.returncode == 0, created.stderr
    try:
        done = _apply_dry_run(plane, *namespaced)
        assert done.returncode == 0, done.stderr
        assert "(server dry run)" in done.stdout
        assert "would violate PodSecurity" not in done.stderr, done.stderr  # warn: restricted
        weakened = json.loads(json.dumps(deployment))
        weakened["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] = False
        warned = _apply_dry_run(plane, weakened)
        assert "would violate PodSecurity" in warned.stderr, warned.stderr  # the check bites

        template: dict[str, Any] = deployment["spec"]["template"]
        pod = {"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": "fleetgraph-admission-check", "namespace": check,
                            "labels": template["metadata"]["labels"]},
               "spec": template["spec"]}
        # enforce: restricted applies to Pods themselves: a violation is refused outright.
        admitted = _apply_dry_run(plane, pod)
        assert admitted.returncode == 0, admitted.stderr
        insecure = json.loads(json.dumps(pod))
        insecure["spec"]["containers"][0]["securityContext"]["allowPrivilegeEscalation"] = True
        refused = _apply_dry_run(plane, insecure)
        assert refused.returncode != 0 and "violates PodSecurity" in refused.stderr  # it bites
    finally:
        deleted = _kubectl(plane, "delete", "namespace", check, "--wait=true", "--timeout=90s")
        assert deleted.returncode == 0, deleted.stderr
