"""Kubernetes JSON objects → table rows, one pure function per kind.

The sync engine reads raw JSON (never the generated model classes: they are slow and drop
fields they do not know), so these functions are where an API object's shape is understood.
They are pure, so tests feed them the Kubernetes API's own round-trip fixtures, and they are
lenient: a field that is missing or odd becomes ``None`` and the rest of the object is kept.
Only an object that cannot be keyed at all (no ``metadata.uid``, a pod without
``creationTimestamp``) raises :class:`BadObject`, which the informer logs by kind and name and
skips.

Row dicts hold exactly the columns of the table that the informer owns; columns other jobs
own (``usage_*`` from metrics, ``health_*`` from health, quota columns from ResourceQuotas)
are never in them, so an upsert cannot clobber them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from functools import lru_cache, partial
from typing import Any

from sync.quantity import QuantityError, exact_sum, to_bytes, to_cores, to_count

__all__ = [
    "BadObject",
    "QuotaRow",
    "Row",
    "describe",
    "map_deployment",
    "map_namespace",
    "map_node",
    "map_pod",
    "map_replicaset",
    "map_resource_quota",
    "parse_time",
]

Row = dict[str, Any]
JSON = Mapping[str, Any]

LABEL_TEAM = "team"
LABEL_COST_CENTER = "cost-center"
LABEL_INSTANCE_TYPE = ("node.kubernetes.io/instance-type", "beta.kubernetes.io/instance-type")
LABEL_ZONE = ("topology.kubernetes.io/zone", "failure-domain.beta.kubernetes.io/zone")
LABEL_POD_TEMPLATE_HASH = "pod-template-hash"
OOM_KILLED = "OOMKilled"


class BadObject(ValueError):
    """An object that cannot become a row; the message never contains the object's body."""


def describe(obj: object, *, kind: str) -> str:
    """``kind namespace/name`` for log lines: identifies an object without printing it."""
    metadata = obj.get("metadata") if isinstance(obj, Mapping) else None
    if not isinstance(metadata, Mapping):
        return f"{kind} <no metadata>"
    name = str(metadata.get("name", "?"))[:253]
    namespace = metadata.get("namespace")
    return f"{kind} {namespace}/{name}" if namespace else f"{kind} {name}"


# --- small, forgiving readers -------------------------------------------------------------
#
# They run a few hundred times per pod, tens of thousands of pods per list, so each one takes
# the shape orjson gives (``dict``, ``list``, ``str``) by a plain type test first; the general
# ``Mapping`` test (an ABC check, slow) is only for other inputs. Values are read, never
# written: a dict from the object is handed on as it is, not copied.


def _dict(value: object) -> dict[str, Any]:
    if type(value) is dict:
        return value
    return dict(value) if isinstance(value, Mapping) else {}


def _list(value: object) -> list[Any]:
    if type(value) is list:
        return value
    return list(value) if isinstance(value, list) else []


def _is_mapping(value: object) -> bool:
    return type(value) is dict or isinstance(value, Mapping)


def _str(value: object) -> str | None:
    return value if isinstance(value, str) and value != "" else None


def _int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int) and -(2**63) <= value < 2**63:
        return value
    return None


def _int32(value: object) -> int:
    number = _int(value)
    return number if number is not None and -(2**31) < number < 2**31 else 0


def _string_map(value: object) -> dict[str, str]:
    mapping = _dict(value)
    # JSON keys are strings already; the common map of string values is used as it is
    if all(type(v) is str for v in mapping.values()) and all(type(k) is str for k in mapping):
        return mapping
    return {str(k): str(v) for k, v in mapping.items()}


def parse_time(value: object) -> datetime | None:
    """An RFC 3339 ``metav1.Time`` (``2024-05-01T10:00:00Z``) as an aware datetime, else None."""
    if not isinstance(value, str) or not value:
        return None
    return _parse_time(value)


@lru_cache(maxsize=4096)
def _parse_time(value: str) -> datetime | None:
    # cached: a fleet's objects share creation and transition times (datetimes are immutable)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


def _lenient(convert: Callable[[Any], Any], value: object) -> Any:
    try:
        return convert(value)
    except (QuantityError, TypeError):
        return None


# Quantities repeat across a fleet (``100m``, ``512Mi``): each distinct string is parsed once.
# The results (Decimal, int, None) are immutable; only strings are cached (a hostile object
# may put anything there, including unhashable values).


@lru_cache(maxsize=4096)
def _cached_cores(value: str) -> Decimal | None:
    result: Decimal | None = _lenient(to_cores, value)
    return result


@lru_cache(maxsize=4096)
def _cached_bytes(value: str) -> int | None:
    # saturated, not refused: a value past int64 is clamped and reported by the writer
    result: int | None = _lenient(partial(to_bytes, saturate=True), value)
    return result


@lru_cache(maxsize=1024)
def _cached_count(value: str) -> int | None:
    result: int | None = _lenient(to_count, value)
    return result


def _cores(value: object) -> Decimal | None:
    if type(value) is str:
        return _cached_cores(value)
    result: Decimal | None = _lenient(to_cores, value)
    return result


def _bytes(value: object) -> int | None:
    if type(value) is str:
        return _cached_bytes(value)
    result: int | None = _lenient(partial(to_bytes, saturate=True), value)
    return result


def _count(value: object) -> int | None:
    if type(value) is str:
        return _cached_count(value)
    result: int | None = _lenient(to_count, value)
    return result


def _metadata(obj: JSON, *, kind: str) -> dict[str, Any]:
    raw = obj.get("metadata")
    if not _is_mapping(raw):
        raise BadObject(f"{kind} has no metadata")
    metadata = _dict(raw)
    if not _str(metadata.get("uid")):
        raise BadObject(f"{describe(obj, kind=kind)} has no metadata.uid")
    if not _str(metadata.get("name")):
        raise BadObject(f"{kind} with uid {str(metadata.get('uid'))[:64]} has no metadata.name")
    return metadata


def _base(metadata: Mapping[str, Any]) -> Row:
    return {
        "uid": metadata["uid"],
        "name": metadata["name"],
        "resource_version": _str(metadata.get("resourceVersion")),
        "created_at": parse_time(metadata.get("creationTimestamp")),
    }


def _controller(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """The controlling ownerReference (``controller: true``), else the first one."""
    owners = [o for o in _list(metadata.get("ownerReferences")) if _is_mapping(o)]
    for owner in owners:
        if owner.get("controller") is True:
            return dict(owner)
    return dict(owners[0]) if owners else {}


def _conditions(value: object, *, drop: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """Conditions as stored: heartbeats dropped, so a kubelet ping is not a change."""
    return [
        {k: v for k, v in c.items() if k not in drop}
        for c in _list(value)
        if _is_mapping(c)
    ]


def _condition_true(conditions: object, type_: str) -> bool:
    return any(
        _is_mapping(c) and c.get("type") == type_ and c.get("status") == "True"
        for c in _list(conditions)
    )


def _resources(value: object) -> dict[str, dict[str, str]]:
    """``requests``/``limits`` for cpu and memory as exact strings (jsonb cannot hold Decimal)."""
    resources = _dict(value)
    out: dict[str, dict[str, str]] = {}
    for section in ("requests", "limits"):
        amounts = _dict(resources.get(section))
        entry: dict[str, str] = {}
        cpu = _cores(amounts.get("cpu"))
        if cpu is not None:
            entry["cpu"] = str(cpu)
        memory = _bytes(amounts.get("memory"))
        if memory is not None:
            entry["memory"] = str(memory)
        if entry:
            out[section] = entry
    return out


# --- namespaces, nodes --------------------------------------------------------------------


def map_namespace(obj: JSON) -> Row:
    metadata = _metadata(obj, kind="Namespace")
    labels = _string_map(metadata.get("labels"))
    return {
        **_base(metadata),
        "phase": _str(_dict(obj.get("status")).get("phase")),
        "labels": labels,
        "annotations": _string_map(metadata.get("annotations")),
        "team": labels.get(LABEL_TEAM) or None,
        "cost_center": labels.get(LABEL_COST_CENTER) or None,
    }


def _first_label(labels: Mapping[str, str], keys: tuple[str, ...]) -> str | None:
    for key in keys:
        if labels.get(key):
            return labels[key]
    return None


def map_node(obj: JSON) -> Row:
    metadata = _metadata(obj, kind="Node")
    spec = _dict(obj.get("spec"))
    status = _dict(obj.get("status"))
    labels = _string_map(metadata.get("labels"))
    capacity = _dict(status.get("capacity"))
    allocatable = _dict(status.get("allocatable"))
    return {
        **_base(metadata),
        "labels": labels,
        "taints": [t for t in _list(spec.get("taints")) if _is_mapping(t)],
        "conditions": _conditions(status.get("conditions"), drop=("lastHeartbeatTime",)),
        # kube_node_status_condition{condition="Ready",status="true"}
        "ready": _condition_true(status.get("conditions"), "Ready"),
        "unschedulable": spec.get("unschedulable") is True,
        "instance_type": _first_label(labels, LABEL_INSTANCE_TYPE),
        "zone": _first_label(labels, LABEL_ZONE),
        "kubelet_version": _str(_dict(status.get("nodeInfo")).get("kubeletVersion")),
        "capacity_cpu_cores": _cores(capacity.get("cpu")),
        "capacity_memory_bytes": _bytes(capacity.get("memory")),
        "capacity_pods": _count(capacity.get("pods")),
        "capacity_ephemeral_storage_bytes": _bytes(capacity.get("ephemeral-storage")),
        "allocatable_cpu_cores": _cores(allocatable.get("cpu")),
        "allocatable_memory_bytes": _bytes(allocatable.get("memory")),
        "allocatable_pods": _count(allocatable.get("pods")),
        "allocatable_ephemeral_storage_bytes": _bytes(allocatable.get("ephemeral-storage")),
    }


# --- deployments, replicasets -------------------------------------------------------------


def _template_containers(spec: Mapping[str, Any]) -> list[dict[str, Any]]:
    pod_spec = _dict(_dict(spec.get("template")).get("spec"))
    return [
        {"name": c.get("name"), "image": c.get("image"), **_resources(c.get("resources"))}
        for c in _list(pod_spec.get("containers"))
        if _is_mapping(c)
    ]


def map_deployment(obj: JSON) -> Row:
    metadata = _metadata(obj, kind="Deployment")
    spec = _dict(obj.get("spec"))
    status = _dict(obj.get("status"))
    strategy = _dict(spec.get("strategy"))
    replicas = _int(spec.get("replicas"))
    return {
        **_base(metadata),
        "namespace": _str(metadata.get("namespace")) or "",
        "labels": _string_map(metadata.get("labels")),
        "annotations": _string_map(metadata.get("annotations")),
        "selector": _dict(spec.get("selector")),
        # spec.replicas defaults to 1 when omitted (kube_deployment_spec_replicas).
        "replicas_desired": _int32(1 if replicas is None else replicas),
        "replicas_ready": _int32(status.get("readyReplicas")),
        "replicas_available": _int32(status.get("availableReplicas")),
        "replicas_updated": _int32(status.get("updatedReplicas")),
        "replicas_unavailable": _int32(status.get("unavailableReplicas")),
        "strategy": _str(strategy.get("type")),
        "strategy_params": {k: v for k, v in strategy.items() if k != "type"},
        "containers": _template_containers(spec),
        "conditions": _conditions(status.get("conditions")),
        "generation": _int(metadata.get("generation")),
        "observed_generation": _int(status.get("observedGeneration")),
    }


def map_replicaset(obj: JSON) -> Row:
    metadata = _metadata(obj, kind="ReplicaSet")
    spec = _dict(obj.get("spec"))
    status = _dict(obj.get("status"))
    owner = _controller(metadata)
    is_deployment = owner.get("kind") == "Deployment"
    replicas = _int(spec.get("replicas"))
    return {
        **_base(metadata),
        "namespace": _str(metadata.get("namespace")) or "",
        "deployment_name": _str(owner.get("name")) if is_deployment else None,
        "deployment_uid": _str(owner.get("uid")) if is_deployment else None,
        "replicas_desired": _int32(1 if replicas is None else replicas),
        "replicas_ready": _int32(status.get("readyReplicas")),
    }


# --- pods ---------------------------------------------------------------------------------


def _container_status(status: Mapping[str, Any]) -> dict[str, Any]:
    state = _dict(status.get("state"))
    last = _dict(_dict(status.get("lastState")).get("terminated"))
    current = next((s for s in ("running", "waiting", "terminated") if s in state), None)
    last_reason = _str(last.get("reason"))
    oom_at = oom_marker = None
    restarts = max(_int32(status.get("restartCount")), 0)
    if last_reason == OOM_KILLED:
        oom_at = _str(last.get("finishedAt")) or _str(last.get("startedAt"))
        # One termination = its time and the restart it caused (times can repeat).
        oom_marker = f"{oom_at or '?'}#{restarts}"
    return {
        "ready": status.get("ready") is True,
        "restartCount": restarts,
        "state": current,
        # kube_pod_container_status_waiting_reason / _terminated_reason
        "waitingReason": _str(_dict(state.get("waiting")).get("reason")),
        "terminatedReason": _str(_dict(state.get("terminated")).get("reason")),
        # kube_pod_container_status_last_terminated_reason
        "lastTerminatedReason": last_reason,
        "lastTerminatedAt": _str(last.get("finishedAt")),
        "lastOOMKilledAt": oom_at,
        "lastOOMKill": oom_marker,
        # What this one object proves; the OOM ledger turns it into a running count.
        "oomKills": 1 if oom_marker else 0,
    }


_AMOUNTS = (("requests", "cpu"), ("limits", "cpu"), ("requests", "memory"), ("limits", "memory"))


def _amounts(container: object) -> tuple[Decimal | int | None, ...]:
    """A container's requests/limits of cpu and memory, in :data:`_AMOUNTS` order."""
    resources = _dict(_dict(container).get("resources"))
    requests, limits = _dict(resources.get("requests")), _dict(resources.get("limits"))
    return (_cores(requests.get("cpu")), _cores(limits.get("cpu")),
            _bytes(requests.get("memory")), _bytes(limits.get("memory")))


def _sum_amounts(per_container: list[tuple[Decimal | int | None, ...]], i: int) -> Decimal | None:
    """Exact, and unbounded: two valid ``5Ei`` requests sum past int64, which is for the
    writer to clamp (and report), not for the mapper to hide."""
    values: list[Decimal | int] = [v for a in per_container if (v := a[i]) is not None]
    return exact_sum(values) if values else None


def _effective_all(spec: Mapping[str, Any]) -> tuple[Decimal | None, ...]:
    """For each of :data:`_AMOUNTS`: max(sum over containers, largest init container)
    + overhead (requests only): what the scheduler uses. Each container is read once."""
    regular = [_amounts(c) for c in _list(spec.get("containers"))]
    inits = [_amounts(c) for c in _list(spec.get("initContainers"))]
    overhead = _dict(spec.get("overhead"))
    totals: list[Decimal | None] = []
    for i, (section, key) in enumerate(_AMOUNTS):
        candidates = [v for v in [_sum_amounts(regular, i), *(_sum_amounts([a], i) for a in inits)]
                      if v is not None]
        if not candidates:
            totals.append(None)
            continue
        amount = overhead.get(key) if section == "requests" else None
        extra = (_cores(amount) if key == "cpu" else _bytes(amount)) if amount else None
        totals.append(exact_sum((max(candidates), extra or 0)))
    return tuple(totals)


def _deployment_from_replicaset(owner: Mapping[str, Any], labels: Mapping[str, str]) -> str | None:
    """A Deployment's ReplicaSets are named ``<deployment>-<pod-template-hash>``: a fallback
    for when the ReplicaSet row is not there yet (the writer prefers the real row)."""
    name = _str(owner.get("name"))
    template_hash = labels.get(LABEL_POD_TEMPLATE_HASH)
    if owner.get("kind") != "ReplicaSet" or not name or not template_hash:
        return None
    suffix = f"-{template_hash}"
    return name[: -len(suffix)] if name.endswith(suffix) and len(name) > len(suffix) else None


def map_pod(obj: JSON) -> Row:
    metadata = _metadata(obj, kind="Pod")
    row = _base(metadata)
    if row["created_at"] is None:
        # k8s_pods is partitioned by creationTimestamp; without it the row has no home.
        raise BadObject(f"{describe(obj, kind='Pod')} has no metadata.creationTimestamp")
    spec = _dict(obj.get("spec"))
    status = _dict(obj.get("status"))
    labels = _string_map(metadata.get("labels"))
    owner = _controller(metadata)
    spec_containers = {
        c.get("name"): c for c in _list(spec.get("containers")) if _is_mapping(c)
    }
    statuses = {
        s.get("name"): s for s in _list(status.get("containerStatuses")) if _is_mapping(s)
    }
    containers: list[dict[str, Any]] = []
    for name in dict.fromkeys([*spec_containers, *statuses]):
        declared = _dict(spec_containers.get(name))
        containers.append(
            {
                "name": name,
                "image": declared.get("image") or _dict(statuses.get(name)).get("image"),
                **_resources(declared.get("resources")),
                **_container_status(_dict(statuses.get(name))),
            }
        )
    requests_cpu, limits_cpu, requests_memory, limits_memory = _effective_all(spec)
    oom_times = [c["lastOOMKilledAt"] for c in containers if c["lastOOMKilledAt"]]
    return {
        **row,
        "namespace": _str(metadata.get("namespace")) or "",
        "node_name": _str(spec.get("nodeName")),
        "owner_kind": _str(owner.get("kind")),
        "owner_name": _str(owner.get("name")),
        "deployment_name": _deployment_from_replicaset(owner, labels),
        "labels": labels,
        "phase": _str(status.get("phase")),
        "reason": _str(status.get("reason")),
        "qos_class": _str(status.get("qosClass")),
        "pod_ip": _str(status.get("podIP")),
        "requests_cpu_cores": requests_cpu,
        "requests_memory_bytes": None if requests_memory is None else int(requests_memory),
        "limits_cpu_cores": limits_cpu,
        "limits_memory_bytes": None if limits_memory is None else int(limits_memory),
        "containers": containers,
        "restart_count": sum(c["restartCount"] for c in containers),
        "oom_kill_count": sum(c["oomKills"] for c in containers),
        "last_oom_killed_at": max((t for t in map(parse_time, oom_times) if t), default=None),
        "ready": _condition_true(status.get("conditions"), "Ready"),
        "start_time": parse_time(status.get("startTime")),
        "deletion_timestamp": parse_time(metadata.get("deletionTimestamp")),
    }


# --- resource quotas ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class QuotaRow:
    """One ResourceQuota's cpu/memory/pods figures; a namespace's columns are their sum."""

    uid: str
    namespace: str
    hard_cpu_cores: Decimal | None
    hard_memory_bytes: int | None
    hard_pods: int | None
    used_cpu_cores: Decimal | None
    used_memory_bytes: int | None
    used_pods: int | None


def _quota_amount(amounts: Mapping[str, Any], *keys: str) -> Any:
    for key in keys:
        if key in amounts:
            return amounts[key]
    return None


def map_resource_quota(obj: JSON) -> QuotaRow:
    metadata = _metadata(obj, kind="ResourceQuota")
    status = _dict(obj.get("status"))
    hard = _dict(status.get("hard")) or _dict(_dict(obj.get("spec")).get("hard"))
    used = _dict(status.get("used"))
    return QuotaRow(
        uid=metadata["uid"],
        namespace=_str(metadata.get("namespace")) or "",
        hard_cpu_cores=_cores(_quota_amount(hard, "requests.cpu", "cpu")),
        hard_memory_bytes=_bytes(_quota_amount(hard, "requests.memory", "memory")),
        hard_pods=_count(_quota_amount(hard, "pods", "count/pods")),
        used_cpu_cores=_cores(_quota_amount(used, "requests.cpu", "cpu")),
        used_memory_bytes=_bytes(_quota_amount(used, "requests.memory", "memory")),
        used_pods=_count(_quota_amount(used, "pods", "count/pods")),
    )
