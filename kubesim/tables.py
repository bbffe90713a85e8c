"""Server-side printing: ``meta.k8s.io/v1`` Table responses.

``kubectl get`` asks for ``as=Table`` and prints whatever columns the server returns; the
columns and cell values here follow kube-apiserver's own printers (READY ``1/1``, STATUS
``CrashLoopBackOff``, ``NotReady`` nodes...) so kubectl output looks like a real cluster's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from kubesim.resources import Resource

Row = list[Any]
Columns = list[tuple[str, str, int]]  # (name, type, priority)


def _age(obj: dict[str, Any], now: datetime) -> str:
    created = obj.get("metadata", {}).get("creationTimestamp")
    if not created:
        return "<unknown>"
    try:
        then = datetime.fromisoformat(str(created).replace("Z", "+00:00"))
    except ValueError:
        return "<unknown>"
    return human_duration((now - then).total_seconds())


def selector_string(selector: dict[str, Any] | None) -> str:
    """A LabelSelector as ``labels.Selector.String()`` prints it: requirements sorted by key,
    ``k=v``, ``k in (a,b)``, ``k notin (a)``, ``k``, ``!k``."""
    selector = selector or {}
    parts: list[tuple[str, str]] = [
        (key, f"{key}={value}") for key, value in (selector.get("matchLabels") or {}).items()
    ]
    for expression in selector.get("matchExpressions") or []:
        key, operator = expression.get("key", ""), expression.get("operator", "")
        values = ",".join(sorted(expression.get("values") or []))
        text = {
            "In": f"{key} in ({values})",
            "NotIn": f"{key} notin ({values})",
            "Exists": key,
            "DoesNotExist": f"!{key}",
        }.get(operator, "<invalid>")
        parts.append((key, text))
    return ",".join(text for _, text in sorted(parts))


def _containers_and_images(template: dict[str, Any] | None) -> list[str]:
    containers = ((template or {}).get("spec") or {}).get("containers") or []
    return [
        ",".join(str(c.get("name", "")) for c in containers),
        ",".join(str(c.get("image", "")) for c in containers),
    ]


def human_duration(seconds: float) -> str:
    """The AGE kubectl prints: apimachinery's ``duration.HumanDuration``, which the apiserver's
    printers use (``45s``, ``3m20s``, ``12m``, ``5h30m``, ``20h``, ``3d4h``, ``30d``,
    ``2y30d``); more precise while the value is small, coarser as it grows."""
    whole = int(seconds)
    if whole < -1:
        return "<invalid>"
    if whole < 0:
        return "0s"
    if whole < 120:
        return f"{whole}s"
    minutes = whole // 60
    if minutes < 10:
        rest = whole % 60
        return f"{minutes}m{rest}s" if rest else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = minutes // 60
    if hours < 8:
        rest = minutes % 60
        return f"{hours}h{rest}m" if rest else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    days = hours // 24
    if hours < 24 * 8:
        rest = hours % 24
        return f"{days}d{rest}h" if rest else f"{days}d"
    if hours < 24 * 365 * 2:
        return f"{days}d"
    years = days // 365
    if hours < 24 * 365 * 8:
        rest = days % 365
        return f"{years}y{rest}d" if rest else f"{years}y"
    return f"{years}y"


def pod_status_reason(pod: dict[str, Any]) -> str:
    """The STATUS column: the most telling container reason, else the phase."""
    status = pod.get("status") or {}
    reason = status.get("reason") or status.get("phase") or "Unknown"
    for container in status.get("containerStatuses") or []:
        state = container.get("state") or {}
        if (state.get("waiting") or {}).get("reason"):
            reason = state["waiting"]["reason"]
        elif (state.get("terminated") or {}).get("reason"):
            reason = state["terminated"]["reason"]
    if pod.get("metadata", {}).get("deletionTimestamp"):
        reason = "Terminating"
    return str(reason)


def _pod_row(pod: dict[str, Any], now: datetime) -> Row:
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    containers = (pod.get("spec") or {}).get("containers") or []
    ready = sum(1 for c in statuses if c.get("ready"))
    restarts = sum(int(c.get("restartCount") or 0) for c in statuses)
    return [
        pod["metadata"]["name"],
        f"{ready}/{len(containers)}",
        pod_status_reason(pod),
        str(restarts),
        _age(pod, now),
        (pod.get("status") or {}).get("podIP") or "<none>",
        (pod.get("spec") or {}).get("nodeName") or "<none>",
        "<none>",
        "<none>",
    ]


def node_status(node: dict[str, Any]) -> str:
    status = "Unknown"
    for condition in (node.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Ready":
            status = "Ready" if condition.get("status") == "True" else "NotReady"
    if (node.get("spec") or {}).get("unschedulable"):
        status += ",SchedulingDisabled"
    return status


def _node_row(node: dict[str, Any], now: datetime) -> Row:
    labels = node["metadata"].get("labels") or {}
    roles = sorted(k.split("/", 1)[1] for k in labels if k.startswith("node-role.kubernetes.io/"))
    info = (node.get("status") or {}).get("nodeInfo") or {}
    addresses = {
        a.get("type"): a.get("address") for a in (node.get("status") or {}).get("addresses") or []
    }
    return [
        node["metadata"]["name"],
        node_status(node),
        ",".join(roles) or "<none>",
        _age(node, now),
        info.get("kubeletVersion", ""),
        addresses.get("InternalIP") or "<none>",
        addresses.get("ExternalIP") or "<none>",
        info.get("osImage", ""),
        info.get("kernelVersion", ""),
        info.get("containerRuntimeVersion", ""),
    ]


def _deployment_row(deploy: dict[str, Any], now: datetime) -> Row:
    spec = deploy.get("spec") or {}
    status = deploy.get("status") or {}
    return [
        deploy["metadata"]["name"],
        f"{status.get('readyReplicas', 0)}/{spec.get('replicas', 1)}",
        int(status.get("updatedReplicas", 0)),
        int(status.get("availableReplicas", 0)),
        _age(deploy, now),
        *_containers_and_images(spec.get("template")),
        selector_string(spec.get("selector")),
    ]


def _replicaset_row(rs: dict[str, Any], now: datetime) -> Row:
    spec = rs.get("spec") or {}
    status = rs.get("status") or {}
    return [
        rs["metadata"]["name"],
        int(spec.get("replicas", 1)),
        int(status.get("replicas", 0)),
        int(status.get("readyReplicas", 0)),
        _age(rs, now),
        *_containers_and_images(spec.get("template")),
        selector_string(spec.get("selector")),
    ]


def _namespace_row(ns: dict[str, Any], now: datetime) -> Row:
    return [ns["metadata"]["name"], (ns.get("status") or {}).get("phase", "Active"), _age(ns, now)]


def _quota_row(quota: dict[str, Any], now: datetime) -> Row:
    """REQUEST and LIMIT: ``name: used/hard`` for each resource in status.hard, by name;
    ``limits.*`` go to LIMIT, everything else to REQUEST (as ``printResourceQuota``)."""
    status = quota.get("status") or {}
    hard, used = status.get("hard") or {}, status.get("used") or {}
    requests: list[str] = []
    limits: list[str] = []
    for name in sorted(hard):
        column = limits if name.split(".")[0] == "limits" and "." in name else requests
        column.append(f"{name}: {used.get(name, '0')}/{hard[name]}")
    return [quota["metadata"]["name"], ", ".join(requests), ", ".join(limits), _age(quota, now)]


def _secret_row(secret: dict[str, Any], now: datetime) -> Row:
    return [
        secret["metadata"]["name"],
        secret.get("type", "Opaque"),
        len(secret.get("data") or {}),
        _age(secret, now),
    ]


def _event_row(event: dict[str, Any], now: datetime) -> Row:
    involved = event.get("involvedObject") or {}
    last = event.get("lastTimestamp") or event.get("metadata", {}).get("creationTimestamp")
    return [
        _age({"metadata": {"creationTimestamp": last}}, now),
        event.get("type", ""),
        event.get("reason", ""),
        f"{str(involved.get('kind', '')).lower()}/{involved.get('name', '')}",
        event.get("message", ""),
    ]


def _default_row(obj: dict[str, Any], now: datetime) -> Row:
    return [obj["metadata"]["name"], _age(obj, now)]


# The -o wide columns of Deployments and ReplicaSets.
_WORKLOAD_WIDE: Columns = [
    ("Containers", "string", 1),
    ("Images", "string", 1),
    ("Selector", "string", 1),
]

_PRINTERS: dict[str, tuple[Columns, Callable[[dict[str, Any], datetime], Row]]] = {
    "Pod": (
        [
            ("Name", "string", 0),
            ("Ready", "string", 0),
            ("Status", "string", 0),
            ("Restarts", "string", 0),
            ("Age", "string", 0),
            ("IP", "string", 1),
            ("Node", "string", 1),
            ("Nominated Node", "string", 1),
            ("Readiness Gates", "string", 1),
        ],
        _pod_row,
    ),
    "Node": (
        [
            ("Name", "string", 0),
            ("Status", "string", 0),
            ("Roles", "string", 0),
            ("Age", "string", 0),
            ("Version", "string", 0),
            ("Internal-IP", "string", 1),
            ("External-IP", "string", 1),
            ("OS-Image", "string", 1),
            ("Kernel-Version", "string", 1),
            ("Container-Runtime", "string", 1),
        ],
        _node_row,
    ),
    "Deployment": (
        [
            ("Name", "string", 0),
            ("Ready", "string", 0),
            ("Up-to-date", "string", 0),
            ("Available", "string", 0),
            ("Age", "string", 0),
            *_WORKLOAD_WIDE,
        ],
        _deployment_row,
    ),
    "ReplicaSet": (
        [
            ("Name", "string", 0),
            ("Desired", "integer", 0),
            ("Current", "integer", 0),
            ("Ready", "integer", 0),
            ("Age", "string", 0),
            *_WORKLOAD_WIDE,
        ],
        _replicaset_row,
    ),
    "Namespace": (
        [("Name", "string", 0), ("Status", "string", 0), ("Age", "string", 0)],
        _namespace_row,
    ),
    "ResourceQuota": (
        [
            ("Name", "string", 0),
            ("Request", "string", 0),
            ("Limit", "string", 0),
            ("Age", "string", 0),
        ],
        _quota_row,
    ),
    "Secret": (
        [("Name", "string", 0), ("Type", "string", 0), ("Data", "string", 0), ("Age", "string", 0)],
        _secret_row,
    ),
    "Event": (
        [
            ("Last Seen", "string", 0),
            ("Type", "string", 0),
            ("Reason", "string", 0),
            ("Object", "string", 0),
            ("Message", "string", 0),
        ],
        _event_row,
    ),
}


def _partial_metadata(obj: dict[str, Any]) -> dict[str, Any]:
    return {
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": obj.get("metadata", {}),
    }


def table(
    resource: Resource,
    objects: Sequence[dict[str, Any]],
    *,
    now: datetime,
    resource_version: str = "",
    continue_token: str | None = None,
    include_object: str = "Metadata",
) -> dict[str, Any]:
    """A Table of ``objects``; rows carry the object's metadata (kubectl reads the namespace)."""
    columns, printer = _PRINTERS.get(
        resource.kind, ([("Name", "string", 0), ("Age", "string", 0)], _default_row)
    )
    metadata: dict[str, Any] = {"resourceVersion": resource_version}
    if continue_token:
        metadata["continue"] = continue_token
    rows = []
    for obj in objects:
        row: dict[str, Any] = {"cells": printer(obj, now)}
        if include_object == "Object":
            row["object"] = obj
        elif include_object != "None":
            row["object"] = _partial_metadata(obj)
        rows.append(row)
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": metadata,
        "columnDefinitions": [
            {
                "name": name,
                "type": kind,
                "format": "name" if name == "Name" else "",
                "description": name,
                "priority": priority,
            }
            for name, kind, priority in columns
        ],
        "rows": rows,
    }
