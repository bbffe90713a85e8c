"""Resource usage through a real metrics-server, behind the real aggregation layer.

The control plane here (``metrics_control_plane``) also runs metrics-server, registered as the
APIService ``v1beta1.metrics.k8s.io``; it scrapes KWOK's simulated kubelets, whose usage comes
from the pods' ``kwok.x-k8s.io/usage-cpu``/``usage-memory`` annotations (KWOK's shipped
ClusterResourceUsage; 1m and 1Mi for a pod without them). So the chain is: the usage we ask KWOK
to simulate -> KWOK's /metrics/resource (Prometheus text, CPU as a cumulative counter) ->
metrics-server (a rate over its scrape window) -> kube-apiserver's aggregator (front-proxy
client certificate, request headers, our RBAC judged by metrics-server's
SubjectAccessReview) -> FleetGraph's sync -> its rows. Each link is checked against the one
before it, read in the same window, never against a constant our own code produced.
"""

from __future__ import annotations

import json
import re
import ssl
import uuid
from collections import Counter
from dataclasses import replace
from decimal import Decimal
from typing import Any

import aiohttp
import asyncpg
import pytest

from app.vault import Vault
from kubesim import KubeSim
from tests.realk8s.conftest import deployment, fake_node, namespace, register_real_cluster
from tests.realk8s.controlplane import ControlPlane, KubectlError
from tests.sync.conftest import FAST, eventually, running_sync

pytestmark = pytest.mark.timeout(300)

NS = "usage"
BUSY_CPU, BUSY_MEMORY = "250m", "96Mi"  # what KWOK is asked to simulate for the busy pods
# KWOK's usage-from-annotation defaults, for a pod without the annotations.
IDLE_CPU, IDLE_MEMORY = Decimal("0.001"), 2**20
NODES = ("kwok-metrics-node-0", "kwok-metrics-node-1")
# metrics-server needs two scrapes (10 s apart) before a pod has a CPU rate; two cores are
# shared with other people's tests.
FIRST_METRICS_S = 120.0

# Only the suffixes a quantity may carry (apimachinery's resource.Quantity), parsed here on
# purpose rather than with the sync's own parser, which is what is under test.
_SUFFIX = {"n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"), "": Decimal(1),
           "k": Decimal(10**3), "M": Decimal(10**6), "G": Decimal(10**9),
           "Ki": Decimal(2**10), "Mi": Decimal(2**20), "Gi": Decimal(2**30)}
_QUANTITY = re.compile(r"^(\d+(?:\.\d+)?)(n|u|m|k|M|G|Ki|Mi|Gi|)$")


def quantity(text: str) -> Decimal:
    match = _QUANTITY.match(text)
    assert match, f"not a quantity this test knows: {text!r}"
    return Decimal(match.group(1)) * _SUFFIX[match.group(2)]


def busy(name: str, replicas: int) -> dict[str, Any]:
    """A Deployment whose pods KWOK reports as using BUSY_CPU and BUSY_MEMORY."""
    dep = deployment(NS, name, replicas)
    dep["spec"]["template"]["metadata"]["annotations"] = {
        "kwok.x-k8s.io/usage-cpu": BUSY_CPU, "kwok.x-k8s.io/usage-memory": BUSY_MEMORY}
    return dep


@pytest.fixture(scope="module")
def metrics_fleet(metrics_control_plane: ControlPlane) -> ControlPlane:
    """Two KWOK nodes whose kubelet metrics metrics-server can reach, three busy pods and one
    idle one, waited for until metrics.k8s.io reports every one of them."""
    plane = metrics_control_plane
    plane.apply(*(fake_node(n, zone="zone-a", instance_type="m5.xlarge", kubelet_metrics=True)
                  for n in NODES), namespace(NS))
    plane.kubectl_sync("wait", "--for=condition=Ready", "node", "--all", "--timeout=120s")
    plane.kubectl_sync("wait", "--for=create", "serviceaccount/default", "-n", NS,
                       "--timeout=60s")
    plane.apply(busy("busy", 3), deployment(NS, "idle", 1))
    for name in ("busy", "idle"):
        plane.kubectl_sync("rollout", "status", f"deployment/{name}", "-n", NS,
                           "--timeout=120s")
    return plane


async def raw(plane: ControlPlane, path: str, *, user: str = "admin") -> Any:
    return json.loads(await plane.kubectl("get", "--raw", path, user=user))


async def pod_metrics(plane: ControlPlane, *, user: str = "admin"
                      ) -> dict[str, tuple[Decimal, int]]:
    """metrics.k8s.io's PodMetrics of the namespace, by pod name: (cores, bytes) summed over
    containers."""
    document = await raw(plane, f"/apis/metrics.k8s.io/v1beta1/namespaces/{NS}/pods",
                         user=user)
    assert document["kind"] == "PodMetricsList"
    usage: dict[str, tuple[Decimal, int]] = {}
    for item in document["items"]:
        containers = item["containers"]
        usage[item["metadata"]["name"]] = (
            sum((quantity(c["usage"]["cpu"]) for c in containers), Decimal(0)),
            int(sum(quantity(c["usage"]["memory"]) for c in containers)))
    return usage


async def node_metrics(plane: ControlPlane) -> dict[str, tuple[Decimal, int]]:
    document = await raw(plane, "/apis/metrics.k8s.io/v1beta1/nodes")
    assert document["kind"] == "NodeMetricsList"
    return {i["metadata"]["name"]: (quantity(i["usage"]["cpu"]),
                                    int(quantity(i["usage"]["memory"])))
            for i in document["items"]}


async def pod_names(plane: ControlPlane) -> set[str]:
    pods = await plane.kubectl_json("get", "pods", "-n", NS)
    return {p["metadata"]["name"] for p in pods["items"]}


async def every_pod_reported(plane: ControlPlane) -> dict[str, tuple[Decimal, int]]:
    names = await pod_names(plane)
    return await eventually(lambda: pod_metrics(plane), lambda m: set(m) == names,
                            within=FIRST_METRICS_S, interval=1.0)


def close(value: Decimal, expected: Decimal, *, tolerance: Decimal = Decimal("0.1")) -> bool:
    """A CPU rate is KWOK's cumulative core-seconds (advanced on KWOK's clock when it answers)
    over metrics-server's request times, so it is off by the difference between two scrapes'
    latencies over the 10 s window: well under 1 % when idle, within 10 % on two busy cores."""
    return abs(value - expected) <= expected * tolerance


async def test_metrics_server_reports_the_usage_kwok_simulates(
    metrics_fleet: ControlPlane,
) -> None:
    """metrics.k8s.io (through the aggregator) and ``kubectl top`` report, per pod, the usage
    the annotations asked KWOK for: memory exactly (a gauge), CPU as a rate of KWOK's counter
    (see :func:`close`);
    and each node's usage is its pods' sum."""
    plane = metrics_fleet
    service = await plane.kubectl_json("get", "apiservice", "v1beta1.metrics.k8s.io")
    assert {c["type"]: c["status"] for c in service["status"]["conditions"]} == {
        "Available": "True"}
    usage = await every_pod_reported(plane)
    busy_pods = {n for n in usage if n.startswith("busy-")}
    assert len(busy_pods) == 3 and len(usage) == 4
    for name, (cpu, memory) in usage.items():
        if name in busy_pods:
            assert memory == quantity(BUSY_MEMORY), (name, memory)
            assert close(cpu, quantity(BUSY_CPU)), (name, cpu)
        else:
            assert memory == IDLE_MEMORY, (name, memory)
            assert close(cpu, IDLE_CPU, tolerance=Decimal("0.5")), (name, cpu)

    pods = (await plane.kubectl_json("get", "pods", "-n", NS))["items"]
    on_node = {n: [p["metadata"]["name"] for p in pods if p["spec"]["nodeName"] == n]
               for n in NODES}
    nodes = await eventually(lambda: node_metrics(plane), lambda m: set(m) == set(NODES),
                             within=FIRST_METRICS_S, interval=1.0)
    for node, (_, memory) in nodes.items():
        assert memory == sum(usage[p][1] for p in on_node[node]), (node, memory, on_node)

    # kubectl's own client and formatting: whole MiB, millicores.
    top = await plane.kubectl("top", "pods", "-n", NS, "--no-headers")
    rows = {line.split()[0]: line.split()[1:] for line in top.splitlines() if line.strip()}
    assert set(rows) == set(usage)
    for name, (cpu_column, memory_column) in rows.items():
        want = BUSY_MEMORY if name in busy_pods else "1Mi"
        assert memory_column == want, (name, rows[name])
        assert cpu_column.endswith("m")
        if name in busy_pods:
            assert close(Decimal(cpu_column[:-1]) / 1000, quantity(BUSY_CPU)), rows[name]


async def test_the_shipped_reader_role_may_read_metrics(metrics_fleet: ControlPlane) -> None:
    """The sync's own credential (deploy/watched-cluster-rbac.yaml's ServiceAccount) reads
    metrics.k8s.io: allowed by the apiserver's RBAC, and by metrics-server, which
    authenticates the user from the aggregator's request headers (trusted for its
    front-proxy certificate) and asks the apiserver with a SubjectAccessReview. A user
    bound to nothing is refused."""
    plane = metrics_fleet
    await every_pod_reported(plane)
    assert set(await pod_metrics(plane, user="fleetgraph")) == await pod_names(plane)
    with pytest.raises(KubectlError) as refused:
        await raw(plane, "/apis/metrics.k8s.io/v1beta1/pods", user="nobody")
    assert "(Forbidden)" in refused.value.stderr
    assert 'User "nobody" cannot list resource "pods" in API group "metrics.k8s.io"' in (
        refused.value.stderr)


async def test_the_sync_stores_what_metrics_server_reports(
    db_pool: asyncpg.Pool, vault: Vault, metrics_fleet: ControlPlane
) -> None:
    """Through FleetGraph's real sync: ``metrics_available`` turns true, and each pod's and
    node's usage columns, and the pod samples in ``k8s_resource_metrics``, hold what
    metrics.k8s.io reported. metrics-server moves its sample every 10 s, so a comparison
    counts only when metrics.k8s.io answered the same before and after reading the rows."""
    plane = metrics_fleet
    await every_pod_reported(plane)
    cluster_id = await register_real_cluster(db_pool, vault, plane)
    options = replace(FAST, metrics_interval=1.0)
    async with running_sync(db_pool, vault, cluster_id, options=options):
        await eventually(lambda: cluster_available(db_pool, cluster_id), within=30,
                         interval=0.3)

        async def window() -> tuple[bool, Any]:
            before_pods, before_nodes = await pod_metrics(plane), await node_metrics(plane)
            pods, nodes, samples = await stored(db_pool, cluster_id)
            after_pods, after_nodes = await pod_metrics(plane), await node_metrics(plane)
            steady = (before_pods, before_nodes) == (after_pods, after_nodes)
            seen = (pods, nodes, samples)
            return (steady and pods == after_pods and samples == after_pods
                    and nodes == after_nodes), (seen, after_pods, after_nodes)

        await eventually(window, lambda result: result[0], within=60, interval=0.5)

    row = await db_pool.fetchrow("SELECT metrics_available FROM k8s_clusters WHERE id = $1",
                                 cluster_id)
    assert row is not None and row["metrics_available"] is True


async def cluster_available(pool: asyncpg.Pool, cluster_id: uuid.UUID) -> bool:
    value = await pool.fetchval("SELECT metrics_available FROM k8s_clusters WHERE id = $1",
                                cluster_id)
    return value is True


async def stored(pool: asyncpg.Pool, cluster_id: uuid.UUID) -> tuple[
        dict[str, tuple[Decimal, int]], dict[str, tuple[Decimal, int]],
        dict[str, tuple[Decimal, int]]]:
    """The usage columns of the namespace's live pods and of the nodes, and the pods' newest
    samples, each as (cores, bytes) by name."""
    pods = await pool.fetch(
        "SELECT name, usage_cpu_cores, usage_memory_bytes FROM k8s_pods WHERE cluster_id = $1"
        " AND namespace = $2 AND deleted_at IS NULL", cluster_id, NS)
    nodes = await pool.fetch(
        "SELECT name, usage_cpu_cores, usage_memory_bytes FROM k8s_nodes WHERE cluster_id = $1"
        " AND deleted_at IS NULL", cluster_id)
    samples = await pool.fetch(
        "SELECT DISTINCT ON (name) name, cpu_cores, memory_bytes FROM k8s_resource_metrics"
        " WHERE cluster_id = $1 AND level = 'pod' AND namespace = $2"
        " ORDER BY name, sampled_at DESC", cluster_id, NS)
    return ({r["name"]: (r["usage_cpu_cores"], r["usage_memory_bytes"]) for r in pods},
            {r["name"]: (r["usage_cpu_cores"], r["usage_memory_bytes"]) for r in nodes},
            {r["name"]: (r["cpu_cores"], r["memory_bytes"]) for r in samples})


# --- kubesim against the real thing -----------------------------------------------------------


def fields(document: dict[str, Any]) -> dict[str, Any]:
    """The field names of a metrics list at each level (the values differ by nature)."""
    item = document["items"][0]
    usage = item["containers"][0] if "containers" in item else item
    return {"list": sorted(document), "list metadata": document["metadata"],
            "item": sorted(item), "item metadata": sorted(item["metadata"]),
            "container": sorted(item["containers"][0]) if "containers" in item else None,
            "usage": sorted(usage["usage"])}


def check_values(document: dict[str, Any]) -> None:
    for item in document["items"]:
        assert re.fullmatch(r"\d+(\.\d+)?s", item["window"]), item["window"]
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", item["timestamp"])
        for part in item.get("containers") or [item]:
            assert quantity(part["usage"]["cpu"]) > 0 and quantity(part["usage"]["memory"]) > 0


async def test_kubesim_answers_metrics_k8s_io_as_metrics_server_does(
    metrics_fleet: ControlPlane,
) -> None:
    """kubesim's metrics.k8s.io has the real one's fields at every level (lists whose items
    carry no kind, no resourceVersion, ``limit`` ignored with no ``continue``; a single GET
    with its kind), so what the sync learns against kubesim holds against metrics-server."""
    plane = metrics_fleet
    await every_pod_reported(plane)
    paths = ("/apis/metrics.k8s.io/v1beta1/nodes?limit=1",
             f"/apis/metrics.k8s.io/v1beta1/namespaces/{NS}/pods?limit=1")
    real = [await raw(plane, path) for path in paths]
    one_real = await raw(plane, "/apis/metrics.k8s.io/v1beta1/namespaces/"
                         f"{NS}/pods/{real[1]['items'][0]['metadata']['name']}")
    async with KubeSim.start(fleet="small", seed=12, tls=True) as sim:
        assert sim.tls is not None
        context = ssl.create_default_context(cadata=sim.tls.cert_pem.decode())
        ns, _ = Counter(p["metadata"]["namespace"] for p in sim.store.list("pods")
                        if p["status"].get("phase") == "Running").most_common(1)[0]
        async with aiohttp.ClientSession(
            headers={"Authorization": f"Bearer {sim.token}"}) as http:
            simulated = []
            for path in (paths[0], f"/apis/metrics.k8s.io/v1beta1/namespaces/{ns}/pods?limit=1"):
                async with http.get(sim.url + path, ssl=context) as answer:
                    assert answer.status == 200
                    simulated.append(await answer.json())
            name = simulated[1]["items"][0]["metadata"]["name"]
            async with http.get(f"{sim.url}/apis/metrics.k8s.io/v1beta1/namespaces/{ns}/pods/"
                                f"{name}", ssl=context) as answer:
                one_simulated = await answer.json()
    for real_list, simulated_list in zip(real, simulated, strict=True):
        assert fields(simulated_list) == fields(real_list)
        assert len(real_list["items"]) > 1 and len(simulated_list["items"]) > 1
        check_values(real_list)
        check_values(simulated_list)
    assert (one_simulated["kind"], one_simulated["apiVersion"]) == (
        one_real["kind"], one_real["apiVersion"]) == ("PodMetrics", "metrics.k8s.io/v1beta1")
    assert sorted(one_simulated) == sorted(one_real)
