"""Just enough OpenAPI v3 for ``kubectl apply``.

kubectl validates manifests before applying them. With the default ``--validate=strict`` it
first asks the server's OpenAPI v3 documents whether each kind's PATCH accepts the
``fieldValidation`` query parameter; if so it leaves validation to the server, otherwise it
downloads the full schema and fails when there is none. So each group-version document here
lists, per resource, the item path with PATCH, its ``x-kubernetes-group-version-kind`` and
that parameter - no schemas (kubectl then builds strategic-merge patches from its compiled-in
types, which is what it does for built-in kinds anyway).
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

from kubesim.resources import GROUP_VERSIONS, Resource


def _doc_path(group_version: str) -> str:
    return "api/v1" if group_version == "v1" else f"apis/{group_version}"


def _item_path(resource: Resource) -> str:
    prefix = "/" + _doc_path(resource.api_version)
    if resource.namespaced:
        return f"{prefix}/namespaces/{{namespace}}/{resource.plural}/{{name}}"
    return f"{prefix}/{resource.plural}/{{name}}"


def group_version_document(group_version: str) -> dict[str, Any] | None:
    """``GET /openapi/v3/api/v1`` or ``/openapi/v3/apis/{group}/{version}``."""
    resources = GROUP_VERSIONS.get(group_version)
    if resources is None:
        return None
    paths: dict[str, Any] = {}
    for resource in resources:
        if "patch" not in resource.verbs:
            continue
        gvk = {"group": resource.group, "version": resource.version, "kind": resource.kind}
        paths[_item_path(resource)] = {
            "patch": {
                "operationId": f"patch{resource.kind}",
                "x-kubernetes-action": "patch",
                "x-kubernetes-group-version-kind": gvk,
                "parameters": [
                    {"name": name, "in": "query", "schema": {"type": "string", "uniqueItems": True}}
                    for name in ("dryRun", "fieldManager", "fieldValidation", "force")
                ],
                "responses": {"200": {"description": "OK"}},
            }
        }
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.32.0"},
        "paths": paths,
    }


def index() -> dict[str, Any]:
    """``GET /openapi/v3``: where each group-version document lives."""
    paths = {}
    for group_version in GROUP_VERSIONS:
        document = group_version_document(group_version)
        digest = hashlib.sha256(orjson.dumps(document)).hexdigest()[:32].upper()
        paths[_doc_path(group_version)] = {
            "serverRelativeURL": f"/openapi/v3/{_doc_path(group_version)}?hash={digest}"
        }
    return {"paths": paths}


def document_for_path(path: str) -> dict[str, Any] | None:
    """The document served at ``/openapi/v3/...``, or None."""
    rest = path.removeprefix("/openapi/v3").strip("/")
    if not rest:
        return index()
    if rest == "api/v1":
        return group_version_document("v1")
    if rest.startswith("apis/"):
        return group_version_document(rest.removeprefix("apis/"))
    return None
