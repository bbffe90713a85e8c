"""deploy/ against the real kube-apiserver: the base and the example overlay pass a server-side
dry run (the apiserver's own schema validation and admission), and the pods they make are
admitted under the restricted Pod Security Standard.

The watched-cluster RBAC itself is proven by the rest of this tier: its fixtures sync through a
ServiceAccount token bound only to deploy/watched-cluster-rbac.yaml (plus the Helm file), and
test_without_the_optional_helm_grant_the_rest_still_syncs drops the Helm grant."""

from __future__ import annotations

import json
import subprocess
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


def test_the_overlay_pods_meet_the_restricted_pod_security_standard(
    control_plane: ControlPlane
) -> None:
    plane = control_plane
    created = _kubectl(plane, "apply", "-f", str(OVERLAY / "namespace.yaml"))
    assert created.returncode == 0, created.stderr
    done = _kubectl(plane, "apply", "--dry-run=server", "-k", str(OVERLAY))
    assert done.returncode == 0, done.stderr
    assert "would violate PodSecurity" not in done.stderr, done.stderr  # warn: restricted

    built = _kubectl(plane, "kustomize", str(OVERLAY))
    [deployment] = [d for d in yaml.safe_load_all(built.stdout) if d and d["kind"] == "Deployment"]
    template: dict[str, Any] = deployment["spec"]["template"]
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": "fleetgraph-admission-check", "namespace": "fleetgraph",
                        "labels": template["metadata"]["labels"]},
           "spec": template["spec"]}
    # enforce: restricted applies to Pods themselves: a violation is refused, not warned about.
    admitted = _kubectl(plane, "apply", "--dry-run=server", "-f", "-", stdin=json.dumps(pod))
    assert admitted.returncode == 0, admitted.stderr
    assert "pod/fleetgraph-admission-check created (server dry run)" in admitted.stdout
    insecure = json.loads(json.dumps(pod))
    insecure["spec"]["containers"][0]["securityContext"]["allowPrivilegeEscalation"] = True
    refused = _kubectl(plane, "apply", "--dry-run=server", "-f", "-", stdin=json.dumps(insecure))
    assert refused.returncode != 0 and "violates PodSecurity" in refused.stderr  # the check bites
