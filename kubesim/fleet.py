"""A believable cluster that lives and changes: nodes, teams' namespaces, workloads, Helm.

The fleet builds its objects once from a seed, then acts as the cluster's controllers and
kubelets: on every :meth:`Fleet.step` it moves the simulated clock, rolls out and scales
deployments, replicates ReplicaSets into pods, starts pods, crash-loops and OOM-kills some
containers, takes nodes NotReady and back, and moves each workload's load (which the
metrics API reports). Everything it does goes through the :class:`~kubesim.store.Store`,
so clients see ordinary watch events.

Determinism: all choices come from ``random.Random(seed)`` and the simulated clock, and
iteration is in sorted order, so the same seed, start time and steps give the same objects.
Changes made from outside (kubectl scale, a test's patch) are picked up by the controller
pass like a real cluster would; the hooks (:meth:`oom_kill`, :meth:`crashloop`,
:meth:`set_node_ready`...) let tests force a specific event now.
"""

from __future__ import annotations

import asyncio
import hashlib
import heapq
import math
import random
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import orjson

from kubesim import helm
from kubesim.clock import rfc3339
from kubesim.quantity import cpu_nanocores, memory_bytes
from kubesim.store import Entry, Store, copy_object

Obj = dict[str, Any]

_HASH_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
REVISION_ANNOTATION = "deployment.kubernetes.io/revision"
REVISION_HISTORY_LIMIT = 3
EVENT_TTL_SECONDS = 3600


@dataclass(frozen=True, slots=True)
class InstanceType:
    name: str
    cpu: int
    memory_gib: int
    max_pods: int


@dataclass(frozen=True, slots=True)
class FleetSize:
    """Shape of a fleet; the presets are ``small``, ``medium`` and ``large``."""

    nodes: int
    namespaces: int
    deployments_per_namespace: tuple[int, int]
    replicas: tuple[int, int]
    instance_types: tuple[InstanceType, ...]


_M5_XL = InstanceType("m5.xlarge", 4, 16, 58)
_M5_4XL = InstanceType("m5.4xlarge", 16, 64, 234)
_C5_4XL = InstanceType("c5.4xlarge", 16, 32, 234)
_R5_2XL = InstanceType("r5.2xlarge", 8, 64, 58)
_M5_8XL = InstanceType("m5.8xlarge", 32, 128, 234)
_C5_9XL = InstanceType("c5.9xlarge", 36, 72, 234)
_R5_8XL = InstanceType("r5.8xlarge", 32, 256, 234)

FLEETS: dict[str, FleetSize] = {
    # ~3 nodes, 4 team namespaces (+ default, kube-system), ~40 pods
    "small": FleetSize(3, 4, (2, 3), (2, 5), (_M5_XL,)),
    # ~20 nodes, ~1,000 pods
    "medium": FleetSize(20, 16, (6, 10), (5, 10), (_M5_4XL, _C5_4XL, _R5_2XL)),
    # ~100 nodes, ~10,000 pods (the benchmark fleet)
    "large": FleetSize(100, 50, (12, 18), (10, 16), (_M5_8XL, _C5_9XL, _R5_8XL)),
}

TEAMS = (
    "payments", "checkout", "search", "identity", "platform", "data", "ml", "growth",
    "billing", "catalog", "shipping", "notifications", "fraud", "ads", "media", "support",
)  # fmt: skip
APPS = (
    "api", "web", "worker", "gateway", "scheduler", "indexer", "auth", "frontend", "backend",
    "consumer", "exporter", "cron", "cache", "router", "ingest", "reporter", "sync", "proxy",
    "notifier", "renderer",
)  # fmt: skip
ENVIRONMENTS = ("prod", "staging", "dev")
ZONES = ("us-east-1a", "us-east-1b", "us-east-1c")
CPU_REQUESTS = ("25m", "50m", "100m", "100m", "200m", "250m", "500m")
MEMORY_REQUESTS = ("64Mi", "128Mi", "128Mi", "256Mi", "512Mi", "1Gi")
# EBS CSI storage classes and the sizes teams ask for (requests are what cost is charged on).
STORAGE_CLASSES = ("gp3", "gp3", "gp2", "io2")
CLAIM_SIZES = ("10Gi", "20Gi", "50Gi", "100Gi", "200Gi")
CSI_DRIVER = "ebs.csi.aws.com"
CHARTS = (
    ("nginx", "15.4.2", "1.25.3"),
    ("redis", "18.6.1", "7.2.4"),
    ("postgresql", "13.2.24", "16.1.0"),
    ("kafka", "26.6.2", "3.6.1"),
    ("grafana", "7.0.19", "10.2.3"),
    ("app-chart", "1.4.0", "2.3.1"),
)


def _name_hash(data: bytes, length: int = 10) -> str:
    digest = hashlib.sha256(data).digest()
    return "".join(_HASH_ALPHABET[b % len(_HASH_ALPHABET)] for b in digest[:length])


def template_hash(template: Obj) -> str:
    """The pod-template-hash of a deployment's pod template (stable across runs)."""
    return _name_hash(orjson.dumps(template, option=orjson.OPT_SORT_KEYS))


def qos_class(containers: list[Obj]) -> str:
    """Guaranteed, Burstable or BestEffort, by the kubelet's rules."""
    requests_seen = False
    guaranteed = True
    for container in containers:
        resources = container.get("resources") or {}
        requests = resources.get("requests") or {}
        limits = resources.get("limits") or {}
        if requests or limits:
            requests_seen = True
        for resource in ("cpu", "memory"):
            if (
                resource not in limits
                or requests.get(resource, limits.get(resource)) != limits[resource]
            ):
                guaranteed = False
    if not requests_seen:
        return "BestEffort"
    return "Guaranteed" if guaranteed else "Burstable"


@dataclass
class _CrashLoop:
    container: str
    backoff: float = 10.0
    next_restart: float = 0.0


@dataclass
class FleetStats:
    """Counters of what the simulator did, for tests and the demo's log."""

    rollouts: int = 0
    scalings: int = 0
    crashloops: int = 0
    oom_kills: int = 0
    node_outages: int = 0
    steps: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)


class Fleet:
    """One simulated cluster's workloads, driven through ``store``."""

    def __init__(self, store: Store, *, size: str | FleetSize = "small", seed: int = 0) -> None:
        self.store = store
        self.clock = store.clock
        self.seed = seed
        self.size = FLEETS[size] if isinstance(size, str) else size
        self.rng = random.Random(seed)
        # Storage has its own stream, so adding claims leaves every other choice of a seed
        # as it was.
        self._storage_rng = random.Random(f"kubesim-storage-{seed}")
        self.stats = FleetStats()
        self._elapsed = 0.0
        self._load: dict[tuple[str, str], float] = {}
        self._base_load: dict[tuple[str, str], float] = {}
        self._crashloops: dict[tuple[str, str], _CrashLoop] = {}
        self._node_outages: dict[str, float] = {}
        self.node_outage_rate = 0.3  # per node per simulated hour
        self._pod_seq = 0
        self._event_seq = 0
        self.node_names: list[str] = []
        self.namespaces: list[str] = []
        self._building = True
        self._build()
        self._building = False

    # ================================================================== building
    def _build(self) -> None:
        rng = self.rng
        self._build_nodes()
        self._create_namespace("default", "platform", "cc-1000", "prod")
        self._create_namespace("kube-system", "platform", "cc-1000", "prod")
        self._create_deployment(
            "kube-system",
            "coredns",
            replicas=2,
            cpu="100m",
            memory="70Mi",
            image="registry.k8s.io/coredns/coredns:v1.11.3",
            guaranteed=False,
        )
        used_namespaces: set[str] = set()
        for index in range(self.size.namespaces):
            team = TEAMS[index % len(TEAMS)]
            env = ENVIRONMENTS[(index // len(TEAMS)) % len(ENVIRONMENTS)]
            name = f"{team}-{env}"
            if name in used_namespaces:
                name = f"{name}-{index}"
            used_namespaces.add(name)
            cost_center = f"cc-{1100 + (index % len(TEAMS)) * 10}"
            self._create_namespace(name, team, cost_center, env)
            app_names = rng.sample(APPS, rng.randint(*self.size.deployments_per_namespace))
            for app_index, app in enumerate(sorted(app_names)):
                replicas = rng.randint(*self.size.replicas)
                helm_chart = (
                    CHARTS[rng.randrange(len(CHARTS))]
                    if app_index == 0 or rng.random() < 0.15
                    else None
                )
                self._create_deployment(
                    name,
                    app,
                    replicas=replicas,
                    cpu=rng.choice(CPU_REQUESTS),
                    memory=rng.choice(MEMORY_REQUESTS),
                    image=f"registry.example.com/{team}/{app}:{_semver(rng)}",
                    guaranteed=rng.random() < 0.2,
                    helm_chart=helm_chart,
                    pod_team=rng.choice(TEAMS) if rng.random() < 0.1 else None,
                    claim=self._maybe_claim(name, app, index=app_index),
                )
            if index % 2 == 0:
                self._create_quota(name)
        self.reconcile()

    def _build_nodes(self) -> None:
        rng = self.rng
        now = self.clock.timestamp()
        nodes: list[Obj] = []
        for index in range(self.size.nodes):
            zone = ZONES[index % len(ZONES)]
            itype = self.size.instance_types[index % len(self.size.instance_types)]
            ip = f"10.0.{16 * (index % len(ZONES)) + index // 250}.{index % 250 + 4}"
            name = f"ip-{ip.replace('.', '-')}.ec2.internal"
            mem_ki = itype.memory_gib * 1024 * 1024 - rng.randint(300_000, 700_000)
            alloc_mem_ki = mem_ki - 1_000_000 - itype.memory_gib * 12_000
            alloc_cpu = f"{itype.cpu * 1000 - 70 - itype.cpu * 10}m"
            instance_id = "i-0" + "".join(rng.choice("0123456789abcdef") for _ in range(16))
            nodes.append(
                {
                    "apiVersion": "v1",
                    "kind": "Node",
                    "metadata": {
                        "name": name,
                        "labels": {
                            "beta.kubernetes.io/arch": "amd64",
                            "beta.kubernetes.io/instance-type": itype.name,
                            "beta.kubernetes.io/os": "linux",
                            "eks.amazonaws.com/nodegroup": f"ng-{itype.name.split('.')[0]}",
                            "kubernetes.io/arch": "amd64",
                            "kubernetes.io/hostname": name,
                            "kubernetes.io/os": "linux",
                            "node.kubernetes.io/instance-type": itype.name,
                            "topology.kubernetes.io/region": "us-east-1",
                            "topology.kubernetes.io/zone": zone,
                        },
                        "annotations": {"node.alpha.kubernetes.io/ttl": "0"},
                    },
                    "spec": {
                        "providerID": f"aws:///{zone}/{instance_id}",
                        "podCIDR": f"192.168.{index % 256}.0/24",
                    },
                    "status": {
                        "capacity": {
                            "cpu": str(itype.cpu),
                            "memory": f"{mem_ki}Ki",
                            "pods": str(itype.max_pods),
                            "ephemeral-storage": "104845292Ki",
                            "hugepages-2Mi": "0",
                        },
                        "allocatable": {
                            "cpu": alloc_cpu,
                            "memory": f"{alloc_mem_ki}Ki",
                            "pods": str(itype.max_pods),
                            "ephemeral-storage": "95551679124",
                            "hugepages-2Mi": "0",
                        },
                        "conditions": [
                            _condition(
                                "MemoryPressure",
                                "False",
                                now,
                                "KubeletHasSufficientMemory",
                                "kubelet has sufficient memory available",
                            ),
                            _condition(
                                "DiskPressure",
                                "False",
                                now,
                                "KubeletHasNoDiskPressure",
                                "kubelet has no disk pressure",
                            ),
                            _condition(
                                "PIDPressure",
                                "False",
                                now,
                                "KubeletHasSufficientPID",
                                "kubelet has sufficient PID available",
                            ),
                            _condition(
                                "Ready",
                                "True",
                                now,
                                "KubeletReady",
                                "kubelet is posting ready status",
                            ),
                        ],
                        "addresses": [
                            {"type": "InternalIP", "address": ip},
                            {"type": "Hostname", "address": name},
                            {"type": "InternalDNS", "address": name},
                        ],
                        "nodeInfo": {
                            "machineID": _name_hash(f"m{index}{self.seed}".encode(), 32),
                            "systemUUID": _name_hash(f"s{index}{self.seed}".encode(), 32),
                            "bootID": _name_hash(f"b{index}{self.seed}".encode(), 32),
                            "kernelVersion": "6.1.119-129.201.amzn2023.x86_64",
                            "osImage": "Amazon Linux 2023.6.20241212",
                            "containerRuntimeVersion": "containerd://1.7.23",
                            "kubeletVersion": "v1.32.0-eks-aeac579",
                            "kubeProxyVersion": "v1.32.0-eks-aeac579",
                            "operatingSystem": "linux",
                            "architecture": "amd64",
                        },
                    },
                }
            )
            self.node_names.append(name)
        self.store.load("nodes", nodes)
        # Scheduler bookkeeping: requested CPU per node, to spread pods like the scheduler does.
        self._node_cpu: dict[str, float] = {n: 0.0 for n in self.node_names}
        self._node_alloc: dict[str, float] = {
            node["metadata"]["name"]: cpu_nanocores(node["status"]["allocatable"]["cpu"]) / 1e9
            for node in nodes
        }
        self._schedule_heap: list[tuple[float, str]] = [(0.0, n) for n in sorted(self.node_names)]
        heapq.heapify(self._schedule_heap)

    def _create_namespace(self, name: str, team: str, cost_center: str, env: str) -> None:
        self.namespaces.append(name)
        self.store.create(
            "namespaces",
            {
                "metadata": {
                    "name": name,
                    "labels": {
                        "kubernetes.io/metadata.name": name,
                        "team": team,
                        "cost-center": cost_center,
                        "environment": env,
                    },
                }
            },
            take_ownership=True,
        )

    def _create_quota(self, namespace: str) -> None:
        hard = {
            "requests.cpu": "40",
            "requests.memory": "128Gi",
            "limits.cpu": "80",
            "limits.memory": "256Gi",
            "pods": "400",
        }
        self.store.create(
            "resourcequotas",
            {
                "metadata": {"name": "compute-quota", "namespace": namespace},
                "spec": {"hard": hard},
                "status": {"hard": hard, "used": {}},
            },
            take_ownership=True,
        )

    def _create_deployment(
        self,
        namespace: str,
        name: str,
        *,
        replicas: int,
        cpu: str,
        memory: str,
        image: str,
        guaranteed: bool,
        helm_chart: tuple[str, str, str] | None = None,
        pod_team: str | None = None,
        claim: str | None = None,
    ) -> None:
        labels = {"app": name, "app.kubernetes.io/name": name}
        pod_labels = dict(labels)
        if helm_chart:
            labels.update(
                {
                    "app.kubernetes.io/managed-by": "Helm",
                    "helm.sh/chart": f"{helm_chart[0]}-{helm_chart[1]}",
                }
            )
            pod_labels["app.kubernetes.io/instance"] = name
        if pod_team:
            pod_labels["team"] = pod_team
        cpu_limit = cpu if guaranteed else f"{cpu_nanocores(cpu) * 2 // 1_000_000}m"
        mem_limit = memory if guaranteed else f"{memory_bytes(memory) * 2 // 2**20}Mi"
        container = {
            "name": name,
            "image": image,
            "ports": [{"containerPort": 8080, "name": "http", "protocol": "TCP"}],
            "env": [{"name": "LOG_LEVEL", "value": "info"}],
            "resources": {
                "requests": {"cpu": cpu, "memory": memory},
                "limits": {"cpu": cpu_limit, "memory": mem_limit},
            },
            "imagePullPolicy": "IfNotPresent",
            "terminationMessagePath": "/dev/termination-log",
            "terminationMessagePolicy": "File",
        }
        volumes: list[Obj] = []
        if claim:
            container["volumeMounts"] = [{"name": "data", "mountPath": "/var/lib/data"}]
            volumes = [{"name": "data", "persistentVolumeClaim": {"claimName": claim}}]
        deployment = {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name, "namespace": namespace, "labels": labels, "annotations": {}},
            "spec": {
                "replicas": replicas,
                "revisionHistoryLimit": REVISION_HISTORY_LIMIT,
                "progressDeadlineSeconds": 600,
                "selector": {"matchLabels": {"app": name}},
                "strategy": {
                    "type": "RollingUpdate",
                    "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"},
                },
                "template": {
                    "metadata": {"labels": pod_labels},
                    "spec": {
                        "containers": [container],
                        "restartPolicy": "Always",
                        "terminationGracePeriodSeconds": 30,
                        "dnsPolicy": "ClusterFirst",
                        "schedulerName": "default-scheduler",
                        "serviceAccountName": "default",
                        **({"volumes": volumes} if volumes else {}),
                    },
                },
            },
            "status": {},
        }
        self.store.create("deployments", deployment, take_ownership=True)
        self._base_load[(namespace, name)] = 0.25 + self.rng.random() * 0.5
        self._load[(namespace, name)] = self._base_load[(namespace, name)]
        if helm_chart:
            self._create_helm_history(namespace, name, helm_chart, replicas, image)

    def _maybe_claim(self, namespace: str, app: str, *, index: int) -> str | None:
        """Most teams' first workload keeps data on a PersistentVolumeClaim: a claim bound to
        a dynamically provisioned volume, as the EBS CSI driver leaves them."""
        if index != 0 or self._storage_rng.random() >= 0.75:
            return None
        name = f"{app}-data"
        self.create_claim(
            namespace,
            name,
            size=self._storage_rng.choice(CLAIM_SIZES),
            storage_class=self._storage_rng.choice(STORAGE_CLASSES),
        )
        return name

    def create_claim(self, namespace: str, name: str, *, size: str, storage_class: str) -> Obj:
        """A Bound PersistentVolumeClaim of ``size`` and the PersistentVolume provisioned for
        it (named ``pvc-<claim uid>``, the external provisioner's convention); returns the
        claim."""
        uid = self.store.new_uid()
        volume = f"pvc-{uid}"
        modes = ["ReadWriteOnce"]
        claim = self.store.create(
            "persistentvolumeclaims",
            {
                "metadata": {
                    "name": name,
                    "namespace": namespace,
                    "uid": uid,
                    "annotations": {
                        "pv.kubernetes.io/bind-completed": "yes",
                        "pv.kubernetes.io/bound-by-controller": "yes",
                        "volume.kubernetes.io/storage-provisioner": CSI_DRIVER,
                    },
                },
                "spec": {
                    "accessModes": modes,
                    "resources": {"requests": {"storage": size}},
                    "storageClassName": storage_class,
                    "volumeMode": "Filesystem",
                    "volumeName": volume,
                },
                "status": {"phase": "Bound", "accessModes": modes, "capacity": {"storage": size}},
            },
            preserve_metadata=True,
        )
        handle = "vol-0" + "".join(self._storage_rng.choice("0123456789abcdef") for _ in range(16))
        self.store.create(
            "persistentvolumes",
            {
                "metadata": {
                    "name": volume,
                    "annotations": {"pv.kubernetes.io/provisioned-by": CSI_DRIVER},
                },
                "spec": {
                    "capacity": {"storage": size},
                    "accessModes": modes,
                    "persistentVolumeReclaimPolicy": "Delete",
                    "storageClassName": storage_class,
                    "volumeMode": "Filesystem",
                    "claimRef": {
                        "apiVersion": "v1",
                        "kind": "PersistentVolumeClaim",
                        "namespace": namespace,
                        "name": name,
                        "uid": uid,
                    },
                    "csi": {"driver": CSI_DRIVER, "volumeHandle": handle, "fsType": "ext4"},
                },
                "status": {"phase": "Bound"},
            },
        )
        return claim

    def _create_helm_history(
        self, namespace: str, name: str, chart: tuple[str, str, str], replicas: int, image: str
    ) -> None:
        revisions = self.rng.randint(1, 4)
        first = self.clock.now()
        for revision in range(1, revisions + 1):
            self._write_release(
                namespace,
                name,
                chart,
                revision,
                revisions,
                replicas,
                image,
                first_deployed=rfc3339(first),
            )

    def _write_release(
        self,
        namespace: str,
        name: str,
        chart: tuple[str, str, str],
        revision: int,
        latest: int,
        replicas: int,
        image: str,
        *,
        first_deployed: str,
    ) -> None:
        chart_name, chart_version, app_version = chart
        repository, _, tag = image.rpartition(":")
        password = "".join(
            self.rng.choice("abcdefghjkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789")
            for _ in range(20)
        )
        config = {
            "replicaCount": replicas,
            "image": {"repository": repository, "tag": tag},
            "auth": {"username": name, "password": password},
            "database": {
                "host": f"{name}-db.{namespace}.svc",
                "credentials": {"user": "app", "password": password[::-1]},
            },
        }
        release = helm.build_release(
            name=name,
            namespace=namespace,
            revision=revision,
            status="deployed" if revision == latest else "superseded",
            chart_name=chart_name,
            chart_version=chart_version,
            app_version=app_version,
            values={
                "replicaCount": 1,
                "image": {"repository": repository, "tag": "latest"},
                "auth": {"password": ""},
            },
            config=config,
            manifest=(
                f"---\n# Source: {chart_name}/templates/deployment.yaml\n"
                f"apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {name}\n"
            ),
            first_deployed=first_deployed,
            last_deployed=self.clock.timestamp(),
            description="Install complete" if revision == 1 else "Upgrade complete",
        )
        self.store.create(
            "secrets",
            helm.release_secret(release, modified_at=int(self.clock.now().timestamp())),
            take_ownership=True,
        )

    # ================================================================== controllers
    def settle(self, namespace: str | None = None) -> None:
        """What the controllers and kubelets do in the moments after a write through the API
        (kubesim's HTTP layer calls it, with the namespace written to): Deployments get
        ReplicaSets, ReplicaSets get their Pods back, Pods are bound and start, and their
        owners' status and quotas count them. The clock does not move."""
        self.reconcile(namespace=namespace)
        self._schedule_bare_pods()
        self._start_pending_pods()
        self.reconcile(namespace=namespace)

    def reconcile(self, *, namespace: str | None = None) -> None:
        """One pass of the deployment, ReplicaSet, scheduler, quota and volume controllers
        (over one namespace's Deployments and quotas, if given)."""
        if not self._building:
            self._recount_node_requests()
        for entry in list(self.store.iter_entries("deployments", namespace=namespace)):
            self._reconcile_deployment(entry)
        self._update_quotas(namespace)
        self._reclaim_volumes()

    def _reclaim_volumes(self) -> None:
        """The PersistentVolume controller's ``Delete`` reclaim policy: a volume whose claim is
        gone (deleted, or taken down with its namespace) is deleted too."""
        claims = {e.obj["metadata"]["uid"] for e in self.store.iter_entries("pvc")}
        for entry in list(self.store.iter_entries("pv")):
            spec = entry.obj.get("spec") or {}
            claim = (spec.get("claimRef") or {}).get("uid")
            if (claim and claim not in claims
                    and spec.get("persistentVolumeReclaimPolicy") == "Delete"):
                self.store.delete("pv", entry.obj["metadata"]["name"])

    def _reconcile_deployment(self, entry: Entry) -> None:
        deploy = entry.obj
        meta = deploy["metadata"]
        namespace, name, uid = meta["namespace"], meta["name"], meta["uid"]
        spec = deploy.get("spec") or {}
        desired = int(spec.get("replicas", 1))
        template = spec.get("template") or {}
        pod_hash = template_hash(template)
        owned = self.store.owned_by(uid, "replicasets")
        current = next(
            (
                rs
                for rs in owned
                if rs.obj["metadata"]["labels"].get("pod-template-hash") == pod_hash
            ),
            None,
        )
        revisions = [
            int(rs.obj["metadata"].get("annotations", {}).get(REVISION_ANNOTATION, "0"))
            for rs in owned
        ]
        if current is None:
            revision = max(revisions, default=0) + 1
            current = self._create_replicaset(deploy, pod_hash, desired, revision)
            if owned:
                self.stats.rollouts += 1
        elif int(current.obj["spec"].get("replicas", 0)) != desired:
            self._set_replicas("replicasets", current, desired)
        old = [
            rs
            for rs in owned
            if rs is not current and rs.obj["metadata"]["name"] != current.obj["metadata"]["name"]
        ]
        for rs in old:
            if int(rs.obj["spec"].get("replicas", 0)) != 0:
                self._set_replicas("replicasets", rs, 0)
        # Keep only revisionHistoryLimit old ReplicaSets (their pods go with them).
        limit = int(spec.get("revisionHistoryLimit", REVISION_HISTORY_LIMIT))
        old_sorted = sorted(
            old,
            key=lambda rs: int(
                rs.obj["metadata"].get("annotations", {}).get(REVISION_ANNOTATION, "0")
            ),
        )
        for rs in old_sorted[: max(0, len(old_sorted) - limit)]:
            self.store.delete("replicasets", rs.obj["metadata"]["name"], namespace=namespace)
        for rs_entry in self.store.owned_by(uid, "replicasets"):
            self._reconcile_replicaset(rs_entry)
        self._update_deployment_status(namespace, name)

    def _set_replicas(self, resource: str, entry: Entry, replicas: int) -> None:
        obj = self.store.get(
            resource, entry.obj["metadata"]["name"], namespace=entry.obj["metadata"]["namespace"]
        )
        before = obj["spec"].get("replicas")
        obj["spec"]["replicas"] = replicas
        self.store.update(resource, obj, take_ownership=True)
        self._event(
            obj["metadata"]["namespace"],
            {"kind": "Deployment", "name": obj["metadata"]["ownerReferences"][0]["name"]},
            "Normal",
            "ScalingReplicaSet",
            f"Scaled {'up' if replicas > (before or 0) else 'down'} replica set "
            f"{obj['metadata']['name']} from {before} to {replicas}",
            "deployment-controller",
        )

    def _create_replicaset(self, deploy: Obj, pod_hash: str, replicas: int, revision: int) -> Entry:
        meta = deploy["metadata"]
        template = orjson.loads(orjson.dumps(deploy["spec"]["template"]))
        template.setdefault("metadata", {}).setdefault("labels", {})["pod-template-hash"] = pod_hash
        selector = orjson.loads(orjson.dumps(deploy["spec"].get("selector") or {}))
        selector.setdefault("matchLabels", {})["pod-template-hash"] = pod_hash
        rs: Obj = {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {
                "name": f"{meta['name']}-{pod_hash}",
                "namespace": meta["namespace"],
                "labels": dict(template["metadata"]["labels"]),
                "annotations": {
                    REVISION_ANNOTATION: str(revision),
                    "deployment.kubernetes.io/desired-replicas": str(replicas),
                    "deployment.kubernetes.io/max-replicas": str(
                        replicas + max(1, math.ceil(replicas / 4))
                    ),
                },
                "ownerReferences": [_owner_ref(deploy)],
            },
            "spec": {"replicas": replicas, "selector": selector, "template": template},
            "status": {"replicas": 0, "observedGeneration": 1},
        }
        self.store.create("replicasets", rs, take_ownership=True)
        deploy_obj = self.store.get("deployments", meta["name"], namespace=meta["namespace"])
        deploy_obj["metadata"].setdefault("annotations", {})[REVISION_ANNOTATION] = str(revision)
        self.store.update("deployments", deploy_obj, take_ownership=True)
        self._event(
            meta["namespace"],
            {"kind": "Deployment", "name": meta["name"]},
            "Normal",
            "ScalingReplicaSet",
            f"Scaled up replica set {rs['metadata']['name']} to {replicas}",
            "deployment-controller",
        )
        return self.store.entry("replicasets", rs["metadata"]["name"], namespace=meta["namespace"])

    def _reconcile_replicaset(self, entry: Entry) -> None:
        rs = entry.obj
        meta = rs["metadata"]
        namespace = meta["namespace"]
        desired = int(rs["spec"].get("replicas", 0))
        pods = [
            p
            for p in self.store.owned_by(meta["uid"], "pods")
            if not p.obj["metadata"].get("deletionTimestamp")
        ]
        for _ in range(desired - len(pods)):
            self._create_pod(rs)
        if len(pods) > desired:
            # The ReplicaSet controller removes not-ready and newest pods first.
            doomed = sorted(
                pods,
                key=lambda p: (
                    _pod_ready(p.obj),
                    p.obj["metadata"]["creationTimestamp"],
                    p.obj["metadata"]["name"],
                ),
            )
            doomed = sorted(doomed[: len(pods) - desired], key=lambda p: p.obj["metadata"]["name"])
            for pod in doomed:
                self._crashloops.pop((namespace, pod.obj["metadata"]["name"]), None)
                self.store.delete("pods", pod.obj["metadata"]["name"], namespace=namespace)
        pods = self.store.owned_by(meta["uid"], "pods")
        ready = sum(1 for p in pods if _pod_ready(p.obj))
        status = {
            "replicas": len(pods),
            "fullyLabeledReplicas": len(pods),
            "readyReplicas": ready,
            "availableReplicas": ready,
            "observedGeneration": int(meta.get("generation", 1)),
        }
        if not ready:
            status.pop("readyReplicas")
            status.pop("availableReplicas")
        if rs.get("status") != status:
            updated = self.store.get("replicasets", meta["name"], namespace=namespace)
            updated["status"] = status
            self.store.update("replicasets", updated, take_ownership=True)

    def _update_deployment_status(self, namespace: str, name: str) -> None:
        deploy = self.store.entry("deployments", name, namespace=namespace).obj  # read-only
        pod_hash = template_hash(deploy["spec"].get("template") or {})
        total = ready = updated = 0
        for rs in self.store.owned_by(deploy["metadata"]["uid"], "replicasets"):
            rs_status = rs.obj.get("status") or {}
            total += int(rs_status.get("replicas", 0))
            ready += int(rs_status.get("readyReplicas", 0))
            if rs.obj["metadata"]["labels"].get("pod-template-hash") == pod_hash:
                updated = int(rs_status.get("replicas", 0))
        desired = int(deploy["spec"].get("replicas", 1))
        old_status = deploy.get("status") or {}
        available = ready >= desired - math.floor(desired * 0.25)
        now = self.clock.timestamp()
        conditions = []
        for ctype, ok, reason, message in (
            (
                "Available",
                available,
                "MinimumReplicasAvailable" if available else "MinimumReplicasUnavailable",
                f"Deployment {'has' if available else 'does not have'} minimum availability.",
            ),
            (
                "Progressing",
                True,
                "NewReplicaSetAvailable" if updated == desired else "ReplicaSetUpdated",
                f'ReplicaSet "{name}-{pod_hash}" '
                + ("has successfully progressed." if updated == desired else "is progressing."),
            ),
        ):
            previous = next(
                (c for c in old_status.get("conditions") or [] if c.get("type") == ctype), None
            )
            status_text = "True" if ok else "False"
            unchanged = (
                previous
                and previous.get("status") == status_text
                and previous.get("reason") == reason
            )
            conditions.append(
                previous
                if unchanged
                else {
                    "type": ctype,
                    "status": status_text,
                    "lastUpdateTime": now,
                    "lastTransitionTime": now,
                    "reason": reason,
                    "message": message,
                }
            )
        status: Obj = {
            "observedGeneration": int(deploy["metadata"].get("generation", 1)),
            "replicas": total,
            "updatedReplicas": updated,
            "readyReplicas": ready,
            "availableReplicas": ready,
            "unavailableReplicas": max(0, desired - ready),
            "conditions": conditions,
        }
        for key in (
            "readyReplicas",
            "availableReplicas",
            "unavailableReplicas",
            "updatedReplicas",
            "replicas",
        ):
            if not status[key]:
                status.pop(key)
        if old_status != status:
            updated = copy_object({**deploy, "status": status})
            self.store.update("deployments", updated, take_ownership=True)

    def _recount_node_requests(self) -> None:
        totals = dict.fromkeys(self.node_names, 0.0)
        for entry in self.store.iter_entries("pods"):
            node = (entry.obj.get("spec") or {}).get("nodeName")
            if node in totals:
                totals[node] += _pod_cpu(entry.obj)
        self._node_cpu = totals
        self._schedule_heap = sorted((totals[n] / self._node_alloc[n], n) for n in self.node_names)

    def _schedule(self, cpu: float) -> str:
        """Least-requested node among the Ready ones (the scheduler's default scoring, roughly)."""
        heap = self._schedule_heap
        skipped = []
        while heap and heap[0][1] in self._node_outages:
            skipped.append(heapq.heappop(heap))
        if heap:
            _, node = heapq.heappop(heap)
        else:
            node = min(self.node_names, key=lambda n: (self._node_cpu[n] / self._node_alloc[n], n))
            heap[:] = [e for e in heap if e[1] != node]
            skipped = [e for e in skipped if e[1] != node]
        self._node_cpu[node] += cpu
        heapq.heappush(heap, (self._node_cpu[node] / self._node_alloc[node], node))
        for entry in skipped:
            heapq.heappush(heap, entry)
        return node

    def _create_pod(self, rs: Obj) -> None:
        meta = rs["metadata"]
        template = rs["spec"]["template"]
        spec = orjson.loads(orjson.dumps(template.get("spec") or {}))
        containers = spec.get("containers") or []
        node = self._schedule(_pod_cpu({"spec": spec}))
        self._pod_seq += 1
        suffix = "".join(self.rng.choice(_HASH_ALPHABET) for _ in range(5))
        spec.update(
            {
                "nodeName": node,
                "tolerations": [
                    {
                        "key": "node.kubernetes.io/not-ready",
                        "operator": "Exists",
                        "effect": "NoExecute",
                        "tolerationSeconds": 300,
                    },
                    {
                        "key": "node.kubernetes.io/unreachable",
                        "operator": "Exists",
                        "effect": "NoExecute",
                        "tolerationSeconds": 300,
                    },
                ],
                "enableServiceLinks": True,
                "priority": 0,
                "preemptionPolicy": "PreemptLowerPriority",
            }
        )
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": f"{meta['name']}-{suffix}",
                "namespace": meta["namespace"],
                "labels": dict((template.get("metadata") or {}).get("labels") or {}),
                "ownerReferences": [_owner_ref(rs)],
            },
            "spec": spec,
            "status": self._scheduled_status(containers, node),
        }
        if self._building:
            # The initial fleet has been running for a while: no Pending round trip.
            pod["metadata"]["uid"] = self.store.new_uid()
            self._mark_running(pod)
        self.store.create("pods", pod, take_ownership=True, preserve_metadata=self._building)

    def _scheduled_status(self, containers: list[Obj], node: str) -> Obj:
        """A Pod's status once bound to ``node``, its containers still being created."""
        return {
            "phase": "Pending",
            "qosClass": qos_class(containers),
            "hostIP": self._node_ip(node),
            "conditions": [
                {
                    "type": "PodScheduled",
                    "status": "True",
                    "lastProbeTime": None,
                    "lastTransitionTime": self.clock.timestamp(),
                }
            ],
            "containerStatuses": [
                {
                    "name": c["name"],
                    "image": c.get("image", ""),
                    "imageID": "",
                    "ready": False,
                    "started": False,
                    "restartCount": 0,
                    "state": {"waiting": {"reason": "ContainerCreating"}},
                    "lastState": {},
                }
                for c in containers
            ],
        }

    def _schedule_bare_pods(self) -> None:
        """Pods created through the API with no node (``kubectl run``): kube-scheduler binds
        each to the least-requested Ready node; the next start makes them Running."""
        for entry in list(self.store.iter_entries("pods")):
            pod = entry.obj
            if (
                (pod.get("spec") or {}).get("nodeName")
                or pod["metadata"].get("deletionTimestamp")
                or (pod.get("status") or {}).get("phase") != "Pending"
                or not self.node_names
            ):
                continue
            updated = self.store.get(
                "pods", pod["metadata"]["name"], namespace=pod["metadata"]["namespace"]
            )
            node = self._schedule(_pod_cpu(updated))
            updated["spec"]["nodeName"] = node
            containers = updated["spec"].get("containers") or []
            updated["status"] = self._scheduled_status(containers, node)
            self.store.update("pods", updated, take_ownership=True)

    def _node_ip(self, node: str) -> str:
        return node.removeprefix("ip-").removesuffix(".ec2.internal").replace("-", ".")

    def _start_pending_pods(self) -> None:
        for entry in list(self.store.iter_entries("pods")):
            pod = entry.obj
            if (
                (pod.get("status") or {}).get("phase") != "Pending"
                or pod["metadata"].get("deletionTimestamp")
                # A Pod created through the API with no node or container statuses is no Pod of
                # ours to start (nothing schedules bare Pods here).
                or not pod["status"].get("containerStatuses")
            ):
                continue
            updated = self.store.get(
                "pods", pod["metadata"]["name"], namespace=pod["metadata"]["namespace"]
            )
            self._mark_running(updated)
            self.store.update("pods", updated, take_ownership=True)

    def _mark_running(self, updated: Obj) -> None:
        """The kubelet started the pod: Running, ready, with IPs and container IDs."""
        now = self.clock.timestamp()
        octets = _name_hash(updated["metadata"]["uid"].encode(), 4)
        pod_ip = f"192.168.{ord(octets[0]) % 250}.{ord(octets[1]) % 250 + 2}"
        status = updated["status"]
        status.update(
            {
                "phase": "Running",
                "startTime": now,
                "podIP": pod_ip,
                "podIPs": [{"ip": pod_ip}],
                "conditions": [
                    {"type": t, "status": "True", "lastProbeTime": None, "lastTransitionTime": now}
                    for t in (
                        "PodReadyToStartContainers",
                        "Initialized",
                        "Ready",
                        "ContainersReady",
                        "PodScheduled",
                    )
                ],
            }
        )
        for container in status["containerStatuses"]:
            container.update(
                {
                    "ready": True,
                    "started": True,
                    "imageID": f"{container['image'].split(':')[0]}@sha256:"
                    + hashlib.sha256(container["image"].encode()).hexdigest(),
                    "containerID": "containerd://"
                    + hashlib.sha256(
                        (updated["metadata"]["uid"] + container["name"]).encode()
                    ).hexdigest(),
                    "state": {"running": {"startedAt": now}},
                }
            )

    def _update_quotas(self, namespace: str | None = None) -> None:
        for entry in list(self.store.iter_entries("resourcequotas", namespace=namespace)):
            quota = entry.obj
            namespace = quota["metadata"]["namespace"]
            totals = {
                "requests.cpu": 0,
                "requests.memory": 0,
                "limits.cpu": 0,
                "limits.memory": 0,
                "pods": 0,
            }
            for pod_entry in self.store.iter_entries("pods", namespace=namespace):
                pod = pod_entry.obj
                if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
                    continue
                totals["pods"] += 1
                for container in (pod.get("spec") or {}).get("containers") or []:
                    resources = container.get("resources") or {}
                    for kind in ("requests", "limits"):
                        values = resources.get(kind) or {}
                        totals[f"{kind}.cpu"] += cpu_nanocores(values.get("cpu", "0")) // 1_000_000
                        totals[f"{kind}.memory"] += memory_bytes(values.get("memory", "0"))
            used = {
                "requests.cpu": f"{totals['requests.cpu']}m",
                "requests.memory": f"{totals['requests.memory'] // 2**20}Mi",
                "limits.cpu": f"{totals['limits.cpu']}m",
                "limits.memory": f"{totals['limits.memory'] // 2**20}Mi",
                "pods": str(totals["pods"]),
            }
            if (quota.get("status") or {}).get("used") != used:
                updated = self.store.get(
                    "resourcequotas", quota["metadata"]["name"], namespace=namespace
                )
                updated.setdefault("status", {})["used"] = used
                updated["status"]["hard"] = updated["spec"]["hard"]
                self.store.update("resourcequotas", updated, take_ownership=True)

    def _event(
        self,
        namespace: str,
        involved: Obj,
        event_type: str,
        reason: str,
        message: str,
        component: str,
    ) -> None:
        self._event_seq += 1
        now = self.clock.timestamp()
        name = f"{involved['name']}.{self._event_seq:016x}"
        if not self.store.exists("namespaces", namespace):
            return
        self.store.create(
            "events",
            {
                "metadata": {"name": name, "namespace": namespace},
                "involvedObject": {**involved, "namespace": namespace}
                if involved.get("kind") != "Node"
                else involved,
                "reason": reason,
                "message": message,
                "source": {"component": component},
                "firstTimestamp": now,
                "lastTimestamp": now,
                "count": 1,
                "type": event_type,
                "reportingComponent": component,
                "reportingInstance": "",
            },
            take_ownership=True,
        )

    # ================================================================== time
    def step(self, seconds: float = 10.0) -> None:
        """Move the clock by ``seconds`` and let the cluster do what it would in that time."""
        self.clock.advance(seconds)
        self._elapsed += seconds
        self.stats.steps += 1
        self._start_pending_pods()
        self._move_load(seconds)
        self._random_events(seconds)
        self._advance_crashloops()
        self._recover_nodes()
        self._expire_events()
        self.reconcile()

    def advance(self, seconds: float, *, tick: float = 10.0) -> None:
        """Run :meth:`step` repeatedly until ``seconds`` of simulated time have passed."""
        remaining = seconds
        while remaining > 1e-9:
            dt = min(tick, remaining)
            self.step(dt)
            remaining -= dt

    async def run_realtime(self, *, speed: float = 1.0, tick: float = 2.0) -> None:
        """Follow the wall clock (``speed`` simulated seconds per real second) until cancelled."""
        loop = asyncio.get_running_loop()
        last = loop.time()
        while True:
            await asyncio.sleep(tick)
            now = loop.time()
            self.step((now - last) * speed)
            last = now

    def _expected(self, per_hour: float, seconds: float, population: int) -> int:
        expected = per_hour * seconds / 3600 * population
        whole = int(expected)
        return whole + (1 if self.rng.random() < expected - whole else 0)

    def _move_load(self, seconds: float) -> None:
        day_phase = math.sin(2 * math.pi * (self.clock.now().timestamp() % 86400) / 86400)
        for key in sorted(self._load):
            drift = self.rng.gauss(0, 0.04) * math.sqrt(max(seconds, 1) / 10)
            target = self._base_load[key] * (1 + 0.3 * day_phase)
            value = self._load[key] + drift + (target - self._load[key]) * 0.05
            self._load[key] = min(1.4, max(0.02, value))

    def _random_events(self, seconds: float) -> None:
        deployments = [
            (e.obj["metadata"]["namespace"], e.obj["metadata"]["name"])
            for e in self.store.iter_entries("deployments")
        ]
        if not deployments:
            return
        for _ in range(self._expected(0.5, seconds, len(deployments))):
            namespace, name = self.rng.choice(deployments)
            self.rollout(namespace, name, reconcile=False)
        for _ in range(self._expected(0.3, seconds, len(deployments))):
            namespace, name = self.rng.choice(deployments)
            current = int(
                self.store.entry("deployments", name, namespace=namespace)
                .obj["spec"]
                .get("replicas", 1)
            )
            _low, high = self.size.replicas
            self.scale(
                namespace,
                name,
                max(1, min(high + 2, current + self.rng.choice((-1, 1)))),
                reconcile=False,
            )
        running = [e for e in self.store.iter_entries("pods", selector=None) if _pod_ready(e.obj)]
        if running:
            for _ in range(self._expected(0.05, seconds, len(deployments))):
                pod = self.rng.choice(running).obj
                self.crashloop(pod["metadata"]["namespace"], pod["metadata"]["name"])
            for _ in range(self._expected(0.1, seconds, len(deployments))):
                pod = self.rng.choice(running).obj
                if self.store.exists(
                    "pods", pod["metadata"]["name"], namespace=pod["metadata"]["namespace"]
                ):
                    self.oom_kill(pod["metadata"]["namespace"], pod["metadata"]["name"])
        for _ in range(self._expected(self.node_outage_rate, seconds, len(self.node_names))):
            node = self.rng.choice(self.node_names)
            if node not in self._node_outages:
                self.set_node_ready(node, False, recover_after=self.rng.uniform(120, 600))
        for key in sorted(self._crashloops):
            if self.rng.random() < 0.5 * seconds / 3600:
                self.recover(*key)

    def _advance_crashloops(self) -> None:
        for (namespace, name), loop_state in sorted(self._crashloops.items()):
            if not self.store.exists("pods", name, namespace=namespace):
                del self._crashloops[(namespace, name)]
                continue
            if self._elapsed < loop_state.next_restart:
                continue
            self._crash_once(namespace, name, loop_state)

    def _recover_nodes(self) -> None:
        for node, at in sorted(self._node_outages.items()):
            if at is not None and self._elapsed >= at:
                self.set_node_ready(node, True)

    def _expire_events(self) -> None:
        cutoff = rfc3339(self.clock.now() - timedelta(seconds=EVENT_TTL_SECONDS))
        for entry in list(self.store.iter_entries("events")):
            if str(entry.obj.get("lastTimestamp") or "") < cutoff:
                self.store.delete(
                    "events",
                    entry.obj["metadata"]["name"],
                    namespace=entry.obj["metadata"]["namespace"],
                )

    # ================================================================== hooks
    def load_of(self, pod: Obj) -> float:
        """Current load factor of a pod (its deployment's load with a stable per-pod skew)."""
        meta = pod.get("metadata") or {}
        app = (meta.get("labels") or {}).get("app", "")
        base = self._load.get((meta.get("namespace", ""), app), 0.4)
        skew = (
            int(hashlib.sha256(str(meta.get("name", "")).encode()).hexdigest()[:4], 16) % 200
        ) / 1000
        return base * (0.9 + skew)

    def set_load(self, namespace: str, deployment: str, load: float) -> None:
        """Pin a deployment's load (1.0 = using exactly its requests)."""
        self._load[(namespace, deployment)] = load
        self._base_load[(namespace, deployment)] = load

    def scale(
        self, namespace: str, deployment: str, replicas: int, *, reconcile: bool = True
    ) -> Obj:
        """Set ``spec.replicas`` as an autoscaler would; pods follow in the controller pass."""
        obj = self.store.get("deployments", deployment, namespace=namespace)
        obj["spec"]["replicas"] = replicas
        updated = self.store.update("deployments", obj)
        self.stats.scalings += 1
        if reconcile:
            self.reconcile()
        return updated

    def rollout(
        self, namespace: str, deployment: str, *, image: str | None = None, reconcile: bool = True
    ) -> Obj:
        """Change the pod template (a new image tag by default): a new ReplicaSet replaces
        the pods."""
        obj = self.store.get("deployments", deployment, namespace=namespace)
        container = obj["spec"]["template"]["spec"]["containers"][0]
        if image is None:
            repository, _, tag = container["image"].rpartition(":")
            parts = ([*tag.split("."), "0", "0", "0"])[:3]
            patch_level = int(parts[2]) + 1 if parts[2].isdigit() else 1
            image = f"{repository}:{parts[0]}.{parts[1]}.{patch_level}"
        container["image"] = image
        annotations = (
            obj["spec"]["template"].setdefault("metadata", {}).setdefault("annotations", {})
        )
        annotations["kubectl.kubernetes.io/restartedAt"] = self.clock.timestamp()
        updated = self.store.update("deployments", obj)
        if reconcile:
            self.reconcile()
        return updated

    def _pod_and_container(
        self, namespace: str, pod: str, container: str | None
    ) -> tuple[Obj, Obj]:
        obj = self.store.get("pods", pod, namespace=namespace)
        statuses = obj.setdefault("status", {}).setdefault("containerStatuses", [])
        if not statuses:
            raise ValueError(f"pod {namespace}/{pod} has no container statuses yet")
        status = (
            next((s for s in statuses if s["name"] == container), None)
            if container
            else statuses[0]
        )
        if status is None:
            raise ValueError(f"pod {namespace}/{pod} has no container {container!r}")
        return obj, status

    def oom_kill(self, namespace: str, pod: str, *, container: str | None = None) -> Obj:
        """The container is OOMKilled and restarted: restartCount+1,
        lastState.terminated.reason=OOMKilled."""
        obj, status = self._pod_and_container(namespace, pod, container)
        now = self.clock.timestamp()
        started = (
            (status.get("state") or {}).get("running", {}).get("startedAt")
            or obj["status"].get("startTime")
            or now
        )
        status["restartCount"] = int(status.get("restartCount", 0)) + 1
        status["lastState"] = {
            "terminated": {
                "exitCode": 137,
                "reason": "OOMKilled",
                "startedAt": started,
                "finishedAt": now,
                "containerID": status.get("containerID", ""),
            }
        }
        status["state"] = {"running": {"startedAt": now}}
        status["ready"] = True
        status["started"] = True
        obj["status"]["phase"] = "Running"
        updated = self.store.update("pods", obj)
        self.stats.oom_kills += 1
        self._event(
            namespace,
            {"kind": "Pod", "name": pod},
            "Warning",
            "OOMKilling",
            f"Memory cgroup out of memory: Killed process in container {status['name']}",
            "kubelet",
        )
        return updated

    def crashloop(
        self, namespace: str, pod: str, *, container: str | None = None, restarts: int = 1
    ) -> Obj:
        """Put a container into CrashLoopBackOff (``restarts`` crashes now, more on later steps)."""
        obj, status = self._pod_and_container(namespace, pod, container)
        loop_state = self._crashloops.get((namespace, pod)) or _CrashLoop(status["name"])
        self._crashloops[(namespace, pod)] = loop_state
        self.stats.crashloops += 1
        updated = obj
        for _ in range(max(1, restarts)):
            updated = self._crash_once(namespace, pod, loop_state)
        return updated

    def _crash_once(self, namespace: str, pod: str, loop_state: _CrashLoop) -> Obj:
        obj, status = self._pod_and_container(namespace, pod, loop_state.container)
        now = self.clock.timestamp()
        status["restartCount"] = int(status.get("restartCount", 0)) + 1
        status["lastState"] = {
            "terminated": {
                "exitCode": 1,
                "reason": "Error",
                "startedAt": now,
                "finishedAt": now,
                "containerID": status.get("containerID", ""),
            }
        }
        backoff = int(loop_state.backoff)
        status["state"] = {
            "waiting": {
                "reason": "CrashLoopBackOff",
                "message": f"back-off {backoff}s restarting failed container={status['name']} "
                f"pod={pod}_{namespace}({obj['metadata']['uid']})",
            }
        }
        status["ready"] = False
        status["started"] = False
        for condition in obj["status"].get("conditions") or []:
            if (
                condition.get("type") in ("Ready", "ContainersReady")
                and condition.get("status") != "False"
            ):
                condition.update(
                    status="False",
                    reason="ContainersNotReady",
                    lastTransitionTime=now,
                    message=f"containers with unready status: [{status['name']}]",
                )
        updated = self.store.update("pods", obj)
        loop_state.next_restart = self._elapsed + loop_state.backoff
        loop_state.backoff = min(300.0, loop_state.backoff * 2)
        self._event(
            namespace,
            {"kind": "Pod", "name": pod},
            "Warning",
            "BackOff",
            "Back-off restarting failed container",
            "kubelet",
        )
        return updated

    def recover(self, namespace: str, pod: str) -> Obj:
        """End a crash loop: the container runs and is ready again."""
        loop_state = self._crashloops.pop((namespace, pod), None)
        obj, status = self._pod_and_container(
            namespace, pod, loop_state.container if loop_state else None
        )
        now = self.clock.timestamp()
        status.update(ready=True, started=True, state={"running": {"startedAt": now}})
        for condition in obj["status"].get("conditions") or []:
            if condition.get("type") in ("Ready", "ContainersReady"):
                condition.update(status="True", lastTransitionTime=now)
                condition.pop("reason", None)
                condition.pop("message", None)
        return self.store.update("pods", obj)

    def set_node_ready(self, name: str, ready: bool, *, recover_after: float | None = None) -> Obj:
        """Flip a node's Ready condition (NotReady = status Unknown, as when the kubelet stops
        posting), with the matching unreachable taints; ``recover_after`` simulated seconds
        later it comes back by itself."""
        node = self.store.get("nodes", name)
        now = self.clock.timestamp()
        for condition in node["status"]["conditions"]:
            if ready:
                healthy = {
                    "MemoryPressure": "False",
                    "DiskPressure": "False",
                    "PIDPressure": "False",
                    "Ready": "True",
                }
                condition.update(
                    status=healthy.get(condition["type"], "False"),
                    lastHeartbeatTime=now,
                    lastTransitionTime=now,
                )
                if condition["type"] == "Ready":
                    condition.update(
                        reason="KubeletReady", message="kubelet is posting ready status"
                    )
            else:
                condition.update(
                    status="Unknown",
                    lastTransitionTime=now,
                    reason="NodeStatusUnknown",
                    message="Kubelet stopped posting node status.",
                )
        taints = [
            t
            for t in node["spec"].get("taints") or []
            if not t["key"].startswith("node.kubernetes.io/unreachable")
        ]
        if not ready:
            taints += [
                {"key": "node.kubernetes.io/unreachable", "effect": "NoSchedule", "timeAdded": now},
                {"key": "node.kubernetes.io/unreachable", "effect": "NoExecute", "timeAdded": now},
            ]
        if taints:
            node["spec"]["taints"] = taints
        else:
            node["spec"].pop("taints", None)
        updated = self.store.update("nodes", node)
        if ready:
            self._node_outages.pop(name, None)
        else:
            self.stats.node_outages += 1
            self._node_outages[name] = (
                self._elapsed + recover_after if recover_after is not None else math.inf
            )
        self._event(
            "default",
            {"kind": "Node", "name": name},
            "Normal" if ready else "Warning",
            "NodeReady" if ready else "NodeNotReady",
            f"Node {name} status is now: {'NodeReady' if ready else 'NodeNotReady'}",
            "node-controller",
        )
        return updated

    def helm_upgrade(self, namespace: str, release: str) -> Obj:
        """Write the next revision of a Helm release (the previous one becomes superseded)."""
        secrets = self.store.list(
            "secrets", namespace=namespace, label_selector=f"owner=helm,name={release}"
        )
        if not secrets:
            raise ValueError(f"no Helm release {release!r} in {namespace}")
        latest = max(secrets, key=lambda s: int(s["metadata"]["labels"]["version"]))
        previous = helm.decode_release_secret(latest)
        previous["info"]["status"] = "superseded"
        superseded = helm.release_secret(previous, modified_at=int(self.clock.now().timestamp()))
        latest["metadata"]["labels"] = superseded["metadata"]["labels"]
        latest["data"] = superseded["data"]
        self.store.update("secrets", latest, take_ownership=True)
        meta = previous["chart"]["metadata"]
        deploy = self.store.get("deployments", release, namespace=namespace)
        self._write_release(
            namespace,
            release,
            (meta["name"], meta["version"], meta["appVersion"]),
            int(previous["version"]) + 1,
            int(previous["version"]) + 1,
            int(deploy["spec"].get("replicas", 1)),
            deploy["spec"]["template"]["spec"]["containers"][0]["image"],
            first_deployed=previous["info"]["first_deployed"],
        )
        return self.store.get(
            "secrets", helm.secret_name(release, int(previous["version"]) + 1), namespace=namespace
        )

    def snapshot(self) -> dict[str, list[Obj]]:
        """Every stored object by resource (for determinism checks and debugging)."""
        return {
            res: self.store.list(res)
            for res in (
                "namespaces",
                "nodes",
                "pods",
                "resourcequotas",
                "secrets",
                "events",
                "deployments",
                "replicasets",
            )
        }


def _semver(rng: random.Random) -> str:
    return f"1.{rng.randint(0, 9)}.{rng.randint(0, 20)}"


def _pod_cpu(pod: Obj) -> float:
    """Requested CPU cores of a pod (sum over its containers)."""
    total = 0
    for container in (pod.get("spec") or {}).get("containers") or []:
        cpu = ((container.get("resources") or {}).get("requests") or {}).get("cpu")
        if cpu:
            total += cpu_nanocores(cpu)
    return total / 1e9


def _pod_ready(pod: Obj) -> bool:
    for condition in (pod.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Ready":
            return bool(condition.get("status") == "True")
    return False


def _owner_ref(owner: Obj) -> Obj:
    return {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _condition(ctype: str, status: str, now: str, reason: str, message: str) -> Obj:
    return {
        "type": ctype,
        "status": status,
        "lastHeartbeatTime": now,
        "lastTransitionTime": now,
        "reason": reason,
        "message": message,
    }
