"""The real kubectl (``--kubeconfig FILE``) against kubesim, with its output parsed."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

import pytest

from .conftest import eventually

pytestmark = pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")


async def kubectl(kubeconfig: Path, *args: str, stdin: bytes | None = None) -> str:
    process = await asyncio.create_subprocess_exec(
        "kubectl", "--kubeconfig", str(kubeconfig), *args,
        stdin=asyncio.subprocess.PIPE if stdin is not None else None,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(stdin), timeout=30)
    assert process.returncode == 0, f"kubectl {' '.join(args)} failed: {err.decode()}"
    return out.decode()


def table(output: str) -> list[dict[str, str]]:
    """Parse kubectl's column output into dicts keyed by header."""
    lines = [line for line in output.splitlines() if line.strip()]
    headers = lines[0].split()
    return [dict(zip(headers, line.split(), strict=False)) for line in lines[1:]]


async def test_get_pods_all_namespaces_as_json(kubesim_tls, kubeconfig_file: Path) -> None:
    listed = json.loads(await kubectl(kubeconfig_file, "get", "pods", "-A", "-o", "json"))
    stored = kubesim_tls.store.list("pods")
    assert listed["kind"] == "List"
    assert [(p["metadata"]["namespace"], p["metadata"]["name"]) for p in listed["items"]] == [
        (p["metadata"]["namespace"], p["metadata"]["name"]) for p in stored
    ]
    assert listed["items"][0]["status"] == stored[0]["status"]


async def test_get_nodes_and_deployments_print_real_columns(
    kubesim_tls, kubeconfig_file: Path
) -> None:
    nodes = table(await kubectl(kubeconfig_file, "get", "nodes"))
    assert {n["NAME"] for n in nodes} == {
        n["metadata"]["name"] for n in kubesim_tls.store.list("nodes")
    }
    assert {n["STATUS"] for n in nodes} == {"Ready"}
    assert all(n["VERSION"].startswith("v1.32") for n in nodes)
    kubesim_tls.fleet.set_node_ready(nodes[0]["NAME"], False)
    nodes = table(await kubectl(kubeconfig_file, "get", "nodes"))
    assert nodes[0]["STATUS"] == "NotReady"

    deployments = table(await kubectl(kubeconfig_file, "get", "deploy", "-n", "payments-prod"))
    stored = kubesim_tls.store.list("deployments", namespace="payments-prod")
    assert [d["NAME"] for d in deployments] == [d["metadata"]["name"] for d in stored]
    for row, deploy in zip(deployments, stored, strict=True):
        assert row["READY"] == f"{deploy['spec']['replicas']}/{deploy['spec']['replicas']}"


async def test_scale_label_and_delete(kubesim_tls, kubeconfig_file: Path) -> None:
    out = await kubectl(
        kubeconfig_file, "scale", "deploy", "frontend", "-n", "payments-prod", "--replicas=2"
    )
    assert "scaled" in out
    assert (
        kubesim_tls.store.get("deployments", "frontend", namespace="payments-prod")["spec"][
            "replicas"
        ]
        == 2
    )
    kubesim_tls.fleet.reconcile()
    rows = table(
        await kubectl(kubeconfig_file, "get", "pods", "-n", "payments-prod", "-l", "app=frontend")
    )
    assert len(rows) == 2

    pod = rows[0]["NAME"]
    await kubectl(kubeconfig_file, "label", "pod", pod, "-n", "payments-prod", "tier=gold")
    assert (
        kubesim_tls.store.get("pods", pod, namespace="payments-prod")["metadata"]["labels"]["tier"]
        == "gold"
    )
    labelled = table(await kubectl(kubeconfig_file, "get", "pods", "-A", "-l", "tier=gold"))
    assert [(r["NAMESPACE"], r["NAME"]) for r in labelled] == [("payments-prod", pod)]

    out = await kubectl(kubeconfig_file, "delete", "pod", pod, "-n", "payments-prod")
    assert f'pod "{pod}" deleted' in out
    assert not kubesim_tls.store.exists("pods", pod, namespace="payments-prod")


MANIFEST = """
apiVersion: apps/v1
kind: Deployment
metadata:
  name: hello
  namespace: default
  labels: {app: hello}
spec:
  replicas: REPLICAS
  selector: {matchLabels: {app: hello}}
  template:
    metadata: {labels: {app: hello}}
    spec:
      containers:
      - name: hello
        image: IMAGE
        resources: {requests: {cpu: 100m, memory: 64Mi}}
"""


async def test_apply_creates_then_patches_a_manifest(
    kubesim_tls, kubeconfig_file: Path, tmp_path: Path
) -> None:
    manifest = tmp_path / "hello.yaml"
    manifest.write_text(MANIFEST.replace("REPLICAS", "2").replace("IMAGE", "nginx:1.27"))
    assert "deployment.apps/hello created" in await kubectl(
        kubeconfig_file, "apply", "-f", str(manifest)
    )
    created = kubesim_tls.store.get("deployments", "hello", namespace="default")
    assert created["spec"]["replicas"] == 2
    assert "kubectl.kubernetes.io/last-applied-configuration" in created["metadata"]["annotations"]
    kubesim_tls.fleet.reconcile()
    manifest.write_text(MANIFEST.replace("REPLICAS", "3").replace("IMAGE", "nginx:1.28"))
    assert "deployment.apps/hello configured" in await kubectl(
        kubeconfig_file, "apply", "-f", str(manifest)
    )
    applied = kubesim_tls.store.get("deployments", "hello", namespace="default")
    assert applied["spec"]["replicas"] == 3
    assert applied["spec"]["template"]["spec"]["containers"] == [
        {
            "name": "hello",
            "image": "nginx:1.28",
            "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}},
        }
    ]
    assert applied["metadata"]["generation"] == 2
    assert "unchanged" in await kubectl(kubeconfig_file, "apply", "-f", str(manifest))


async def test_get_pods_watch_prints_a_change_made_through_the_python_api(
    kubesim_tls, kubeconfig_file: Path
) -> None:
    process = await asyncio.create_subprocess_exec(
        "kubectl", "--kubeconfig", str(kubeconfig_file), "get", "pods", "-n", "payments-prod", "-w",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert process.stdout is not None
    lines: list[str] = []

    async def read() -> None:
        assert process.stdout is not None
        async for raw in process.stdout:
            lines.append(raw.decode())

    reader = asyncio.create_task(read())
    try:
        pods = kubesim_tls.store.list("pods", namespace="payments-prod")
        await eventually(lambda: len(lines) >= len(pods) + 1)
        victim = pods[0]["metadata"]["name"]
        kubesim_tls.fleet.crashloop("payments-prod", victim, restarts=3)
        await eventually(
            lambda: any(victim in line and "CrashLoopBackOff" in line for line in lines)
        )
    finally:
        process.terminate()
        await process.wait()
        reader.cancel()
    rows = table("".join(lines))
    changed = [r for r in rows if r["NAME"] == victim and r["STATUS"] == "CrashLoopBackOff"]
    assert changed and changed[-1]["RESTARTS"] == "3" and changed[-1]["READY"] == "0/1"
