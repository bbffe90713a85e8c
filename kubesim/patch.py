"""The three PATCH flavours clients send: JSON merge, strategic merge and JSON patch.

kubectl uses strategic merge for ``apply``/``label`` on built-in kinds and merge patch for
``scale``; informer-based controllers use all three. Strategic merge is implemented for the
lists kubectl actually touches (containers, env, ports, volumes, conditions...) using the
same merge keys as the Kubernetes Go types; other lists are replaced, as JSON merge does.
"""

from __future__ import annotations

import copy
from typing import Any

from kubesim.errors import ApiError, bad_request

# Field name -> merge key, as declared by `patchMergeKey` on the core/apps Go types.
MERGE_KEYS: dict[str, str] = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "env": "name",
    "ports": "containerPort",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "volumeDevices": "devicePath",
    "imagePullSecrets": "name",
    "conditions": "type",
    "ownerReferences": "uid",
    "hostAliases": "ip",
    "topologySpreadConstraints": "topologyKey",
    "resourceClaims": "name",
    "addresses": "type",
    "taints": "key",
    "containerStatuses": "name",
    "initContainerStatuses": "name",
}
# Primitive lists with `patchStrategy: merge` (union instead of replace).
MERGED_PRIMITIVE_LISTS = frozenset({"finalizers"})

_SET_ORDER_PREFIX = "$setElementOrder/"
_DELETE_PRIMITIVE_PREFIX = "$deleteFromPrimitiveList/"


def json_merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: objects merge recursively, ``null`` deletes, everything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = json_merge_patch(result.get(key), value)
    return result


def strategic_merge_patch(target: Any, patch: Any) -> Any:
    """Kubernetes strategic merge patch for the fields kubectl touches."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    if patch.get("$patch") == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
    if patch.get("$patch") == "delete":
        return None
    result = dict(target) if isinstance(target, dict) else {}
    retain = patch.get("$retainKeys")
    for key, value in patch.items():
        if key in ("$patch", "$retainKeys") or key.startswith(_SET_ORDER_PREFIX):
            continue
        if key.startswith(_DELETE_PRIMITIVE_PREFIX):
            field = key[len(_DELETE_PRIMITIVE_PREFIX) :]
            if isinstance(result.get(field), list):
                result[field] = [v for v in result[field] if v not in value]
            continue
        if value is None:
            result.pop(key, None)
        elif isinstance(value, list):
            result[key] = _merge_list(key, result.get(key), value)
        elif isinstance(value, dict):
            merged = strategic_merge_patch(result.get(key), value)
            if merged is None:
                result.pop(key, None)
            else:
                result[key] = merged
        else:
            result[key] = value
    if isinstance(retain, list):
        result = {k: v for k, v in result.items() if k in retain}
    return result


def _merge_list(field: str, current: Any, patch: list[Any]) -> list[Any]:
    existing = list(current) if isinstance(current, list) else []
    merge_key = MERGE_KEYS.get(field)
    if merge_key and all(isinstance(item, dict) for item in patch):
        if any(item.get("$patch") == "replace" for item in patch):
            return [
                {k: v for k, v in item.items() if k != "$patch"}
                for item in patch
                if item.get("$patch") != "replace"
            ]
        merged = [copy.deepcopy(item) for item in existing]
        for item in patch:
            key_value = item.get(merge_key)
            index = next(
                (
                    i
                    for i, e in enumerate(merged)
                    if isinstance(e, dict) and e.get(merge_key) == key_value
                ),
                None,
            )
            if item.get("$patch") == "delete":
                if index is not None:
                    merged.pop(index)
                continue
            if index is None:
                merged.append(strategic_merge_patch({}, item))
            else:
                merged[index] = strategic_merge_patch(merged[index], item)
        return merged
    if field in MERGED_PRIMITIVE_LISTS:
        return existing + [v for v in patch if v not in existing]
    return copy.deepcopy(patch)


def json_patch(target: Any, operations: Any) -> Any:
    """RFC 6902 (add, remove, replace, move, copy, test)."""
    if not isinstance(operations, list):
        raise bad_request("json patch must be a list of operations")
    doc = copy.deepcopy(target)
    for op in operations:
        if not isinstance(op, dict) or "op" not in op or "path" not in op:
            raise bad_request(f"invalid json patch operation: {op!r}")
        kind = op["op"]
        if kind in ("add", "replace", "test"):
            value = copy.deepcopy(op.get("value"))
        elif kind in ("move", "copy"):
            value = copy.deepcopy(_get(doc, _pointer(op["from"])))
            if kind == "move":
                doc = _remove(doc, _pointer(op["from"]))
        elif kind == "remove":
            doc = _remove(doc, _pointer(op["path"]))
            continue
        else:
            raise bad_request(f"unknown json patch op {kind!r}")
        path = _pointer(op["path"])
        if kind == "test":
            if _get(doc, path) != value:
                raise ApiError(422, "Invalid", f"json patch test failed at {op['path']}")
            continue
        doc = _set(doc, path, value, insert=kind in ("add", "move", "copy"))
    return doc


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise bad_request(f"invalid json pointer {path!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _get(doc: Any, parts: list[str]) -> Any:
    for part in parts:
        try:
            doc = doc[int(part)] if isinstance(doc, list) else doc[part]
        except (KeyError, IndexError, ValueError, TypeError) as exc:
            raise ApiError(
                422, "Invalid", f"json patch path not found: /{'/'.join(parts)}"
            ) from exc
    return doc


def _set(doc: Any, parts: list[str], value: Any, *, insert: bool) -> Any:
    if not parts:
        return value
    parent = _get(doc, parts[:-1])
    last = parts[-1]
    if isinstance(parent, list):
        index = len(parent) if last == "-" else int(last)
        if insert:
            parent.insert(index, value)
        else:
            parent[index] = value
    elif isinstance(parent, dict):
        if not insert and last not in parent:
            raise ApiError(422, "Invalid", f"json patch replace of missing key {last!r}")
        parent[last] = value
    else:
        raise ApiError(422, "Invalid", "json patch path does not point into an object")
    return doc


def _remove(doc: Any, parts: list[str]) -> Any:
    parent = _get(doc, parts[:-1])
    last = parts[-1]
    try:
        if isinstance(parent, list):
            parent.pop(int(last))
        else:
            del parent[last]
    except (KeyError, IndexError, ValueError) as exc:
        raise ApiError(422, "Invalid", f"json patch remove of missing path {last!r}") from exc
    return doc


PATCH_TYPES = {
    "application/merge-patch+json": json_merge_patch,
    "application/strategic-merge-patch+json": strategic_merge_patch,
    "application/json-patch+json": json_patch,
}
