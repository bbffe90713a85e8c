"""``metadata.managedFields``: who wrote which fields, as server-side field management records.

Every object written through kube-apiserver carries one entry per (manager, operation): the
manager is the request's ``fieldManager`` or, without one, the client's User-Agent up to the
first ``/`` (``kubectl-create``, ``curl``); the operation is ``Update`` for POST, PUT and
PATCH. kubectl shows them with ``--show-managed-fields`` and tools read them, so objects
written through kubesim's HTTP API get them too. The fleet simulator's own writes skip this
(it stands in for controllers whose entries nobody reads, and it is the fast path).

``fieldsV1`` is the set of fields the request sent, as ``f:<name>`` keys. Real servers key
list items by their merge key (``k:{"name":"web"}``) where the schema has one; kubesim has no
schemas, so a list is recorded as one field.
"""

from __future__ import annotations

from typing import Any

_SERVER_OWNED_METADATA = frozenset(
    {
        "name",
        "namespace",
        "uid",
        "resourceVersion",
        "generation",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "managedFields",
        "selfLink",
    }
)
_TOP_LEVEL_SKIPPED = frozenset({"apiVersion", "kind", "status"})


def manager_name(field_manager: str | None, user_agent: str | None) -> str:
    """The manager a request writes as: ``fieldManager``, else the User-Agent's product."""
    if field_manager:
        return field_manager
    product = (user_agent or "").split("/", 1)[0].strip()
    return product or "unknown"


def _fields(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        return {}
    return {f"f:{key}": _fields(item) for key, item in value.items()}


def fields_v1(sent: dict[str, Any]) -> dict[str, Any]:
    """The ``fieldsV1`` tree of a request body (server-owned metadata and status left out)."""
    tree: dict[str, Any] = {}
    for key, value in sent.items():
        if key in _TOP_LEVEL_SKIPPED:
            continue
        if key == "metadata" and isinstance(value, dict):
            meta = {k: v for k, v in value.items() if k not in _SERVER_OWNED_METADATA}
            if meta:
                tree["f:metadata"] = _fields(meta)
            continue
        tree[f"f:{key}"] = _fields(value)
    return tree


def record(
    obj: dict[str, Any],
    previous: list[dict[str, Any]] | None,
    *,
    manager: str,
    sent: dict[str, Any],
    time: str,
) -> None:
    """Set ``obj``'s managedFields: ``previous`` with this manager's Update entry replaced."""
    entry = {
        "manager": manager,
        "operation": "Update",
        "apiVersion": obj.get("apiVersion", ""),
        "time": time,
        "fieldsType": "FieldsV1",
        "fieldsV1": fields_v1(sent),
    }
    kept = [
        e
        for e in previous or []
        if isinstance(e, dict) and (e.get("manager"), e.get("operation")) != (manager, "Update")
    ]
    obj["metadata"]["managedFields"] = [*kept, entry]
