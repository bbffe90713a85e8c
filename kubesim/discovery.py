"""Discovery documents: ``/version``, ``/api``, ``/apis`` and each group-version's resources.

kubectl will not do anything before it has read these (it maps ``deploy`` to
``apps/v1 deployments`` from them), and client libraries check them too. kubectl asks for the
aggregated format first; answering the legacy ``APIVersions``/``APIGroupList`` with a plain
``application/json`` content type makes it fall back to per-group documents, as it does
against older servers.
"""

from __future__ import annotations

import hashlib
from typing import Any

from kubesim.resources import GROUP_VERSIONS, Resource

KUBERNETES_VERSION = {"major": "1", "minor": "32", "gitVersion": "v1.32.0-kubesim"}
# Since 1.32 /version also says which version the server emulates and the oldest it stays
# compatible with (compatibility versions, KEP-4330); a 1.32 server emulates itself.
_EMULATION = {
    "emulationMajor": "1",
    "emulationMinor": "32",
    "minCompatibilityMajor": "1",
    "minCompatibilityMinor": "31",
}

_SUBRESOURCE_VERBS = {"status": ["get", "patch", "update"], "scale": ["get", "patch", "update"]}


def version_info() -> dict[str, str]:
    return {
        **KUBERNETES_VERSION,
        **_EMULATION,
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2024-12-11T00:00:00Z",
        "goVersion": "go1.23.4",
        "compiler": "gc",
        "platform": "linux/amd64",
    }


def api_versions(server_address: str) -> dict[str, Any]:
    """``GET /api``."""
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [
            {"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}
        ],
    }


def api_group_list(*, metrics: bool) -> dict[str, Any]:
    """``GET /apis``; the metrics group is listed only while metrics-server is 'installed'."""
    groups = []
    for group_version in GROUP_VERSIONS:
        if "/" not in group_version:
            continue
        group, version = group_version.split("/")
        if group == "metrics.k8s.io" and not metrics:
            continue
        gv = {"groupVersion": group_version, "version": version}
        groups.append({"name": group, "versions": [gv], "preferredVersion": gv})
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


def api_group(group: str, *, metrics: bool) -> dict[str, Any] | None:
    """``GET /apis/{group}``."""
    for group_list_item in api_group_list(metrics=metrics)["groups"]:
        if group_list_item["name"] == group:
            return {"kind": "APIGroup", "apiVersion": "v1", **group_list_item}
    return None


def _resource_entry(resource: Resource) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "name": resource.plural,
        "singularName": resource.singular,
        "namespaced": resource.namespaced,
        "kind": resource.kind,
        "verbs": list(resource.verbs)
        + (["deletecollection"] if "delete" in resource.verbs else []),
    }
    if resource.short_names:
        entry["shortNames"] = list(resource.short_names)
    if resource.categories:
        entry["categories"] = list(resource.categories)
    digest = hashlib.sha256(resource.key.encode()).digest()[:8]
    entry["storageVersionHash"] = digest.hex()[:11]
    return entry


def api_resource_list(group_version: str) -> dict[str, Any] | None:
    """``GET /api/v1`` or ``GET /apis/{group}/{version}``."""
    resources = GROUP_VERSIONS.get(group_version)
    if resources is None:
        return None
    entries: list[dict[str, Any]] = []
    for resource in resources:
        entries.append(_resource_entry(resource))
        for sub in resource.subresources:
            sub_entry: dict[str, Any] = {
                "name": f"{resource.plural}/{sub}",
                "singularName": "",
                "namespaced": resource.namespaced,
                "kind": resource.kind,
                "verbs": _SUBRESOURCE_VERBS[sub],
            }
            if sub == "scale":
                sub_entry.update(kind="Scale", group="autoscaling", version="v1")
            entries.append(sub_entry)
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": entries,
    }
