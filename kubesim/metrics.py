"""``metrics.k8s.io/v1beta1`` NodeMetrics and PodMetrics, computed from load.

metrics-server is not a store: it answers with a fresh sample on every request, with no
resourceVersion and no watch. So these documents are computed on demand from the pods in
the store and a load figure per pod (the fleet's load curve, or a stable default), which
makes usage follow what the simulator is doing.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from typing import Any

from kubesim.quantity import cpu_nanocores, format_cpu_usage, format_memory_usage, memory_bytes
from kubesim.selectors import Selector
from kubesim.store import Store

API_VERSION = "metrics.k8s.io/v1beta1"
DEFAULT_CPU_REQUEST = 100_000_000  # 100m when a container asks for nothing
DEFAULT_MEMORY_REQUEST = 64 * 2**20
SYSTEM_CPU = 120_000_000  # kubelet, runtime and system daemons on every node
SYSTEM_MEMORY = 600 * 2**20

LoadFunction = Callable[[dict[str, Any]], float]


def stable_load(pod: dict[str, Any]) -> float:
    """A load in [0.2, 0.8) that depends only on the pod's uid (for sims without a fleet)."""
    uid = str(pod.get("metadata", {}).get("uid", ""))
    return 0.2 + (zlib.crc32(uid.encode()) % 600) / 1000


class MetricsSource:
    """Answers metrics.k8s.io reads from the store's pods and nodes."""

    def __init__(
        self, store: Store, *, load: LoadFunction | None = None, window: str = "30s"
    ) -> None:
        self.store = store
        self.load = load or stable_load
        self.window = window

    def container_usage(self, pod: dict[str, Any]) -> list[tuple[str, int, int]]:
        """``(container, cpu nanocores, memory bytes)`` for each container of a running pod."""
        load = max(0.0, self.load(pod))
        tick = self.store.clock.timestamp()
        usage: list[tuple[str, int, int]] = []
        for container in (pod.get("spec") or {}).get("containers") or []:
            resources = container.get("resources") or {}
            requests = resources.get("requests") or {}
            limits = resources.get("limits") or {}
            cpu_request = (
                cpu_nanocores(requests["cpu"]) if "cpu" in requests else DEFAULT_CPU_REQUEST
            )
            mem_request = (
                memory_bytes(requests["memory"]) if "memory" in requests else DEFAULT_MEMORY_REQUEST
            )
            # A little deterministic noise per sample so graphs are not flat lines.
            noise = (
                zlib.crc32(f"{pod['metadata'].get('uid')}/{container.get('name')}/{tick}".encode())
                % 200
            ) / 1000
            cpu = int(cpu_request * load * (0.9 + noise))
            memory = int(mem_request * (0.45 + 0.5 * min(load, 1.2)) * (0.95 + noise / 4))
            if "cpu" in limits:
                cpu = min(cpu, cpu_nanocores(limits["cpu"]))
            if "memory" in limits:
                memory = min(memory, int(memory_bytes(limits["memory"]) * 0.99))
            usage.append(
                (str(container.get("name", "")), max(cpu, 1_000), max(memory, 1024 * 1024))
            )
        return usage

    def _running_pods(self, namespace: str | None = None) -> list[dict[str, Any]]:
        return [
            e.obj
            for e in self.store.iter_entries("pods", namespace=namespace)
            if (e.obj.get("status") or {}).get("phase") == "Running"
        ]

    def pod_metrics(
        self, *, namespace: str | None = None, selector: Selector | None = None
    ) -> list[dict[str, Any]]:
        now = self.store.clock.timestamp()
        items = []
        for pod in self._running_pods(namespace):
            meta = pod["metadata"]
            item = {
                "kind": "PodMetrics",
                "apiVersion": API_VERSION,
                "metadata": {
                    "name": meta["name"],
                    "namespace": meta["namespace"],
                    "creationTimestamp": now,
                    "labels": dict(meta.get("labels") or {}),
                },
                "timestamp": now,
                "window": self.window,
                "containers": [
                    {
                        "name": name,
                        "usage": {"cpu": format_cpu_usage(cpu), "memory": format_memory_usage(mem)},
                    }
                    for name, cpu, mem in self.container_usage(pod)
                ],
            }
            if selector is None or selector.matches(item):
                items.append(item)
        return items

    def node_metrics(self, *, selector: Selector | None = None) -> list[dict[str, Any]]:
        now = self.store.clock.timestamp()
        totals: dict[str, list[int]] = {}
        for pod in self._running_pods():
            node = (pod.get("spec") or {}).get("nodeName")
            if not node:
                continue
            total = totals.setdefault(node, [0, 0])
            for _, cpu, mem in self.container_usage(pod):
                total[0] += cpu
                total[1] += mem
        items = []
        for entry in self.store.iter_entries("nodes"):
            node = entry.obj
            if not _node_ready(node):
                continue  # metrics-server cannot scrape a kubelet that is not posting status
            cpu, mem = totals.get(node["metadata"]["name"], [0, 0])
            item = {
                "kind": "NodeMetrics",
                "apiVersion": API_VERSION,
                "metadata": {
                    "name": node["metadata"]["name"],
                    "creationTimestamp": now,
                    "labels": dict(node["metadata"].get("labels") or {}),
                },
                "timestamp": now,
                "window": self.window,
                "usage": {
                    "cpu": format_cpu_usage(cpu + SYSTEM_CPU),
                    "memory": format_memory_usage(mem + SYSTEM_MEMORY),
                },
            }
            if selector is None or selector.matches(item):
                items.append(item)
        return items


def _node_ready(node: dict[str, Any]) -> bool:
    for condition in (node.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Ready":
            return bool(condition.get("status") == "True")
    return True
