"""DELETE as kube-apiserver answers it: DeleteOptions in, the object or a ``Status`` out.

Two things clients see and kubesim used to get wrong:

* the grace period. A Pod on a node is not removed at once: the apiserver sets
  ``deletionTimestamp`` (now + ``gracePeriodSeconds``, by default the pod's
  ``terminationGracePeriodSeconds``, itself 30 by default) and the kubelet removes it once its
  containers stopped. ``gracePeriodSeconds=0`` (``kubectl delete --force --grace-period=0``)
  removes it at once;
* the answer. An object that is gone at once is answered with ``Status`` ``Success`` and
  ``details`` (name, kind = the plural, uid, the group if any), except Pods, whose store
  returns the deleted object; an object whose deletion is pending (finalizers, a namespace
  that turns Terminating, a graceful Pod) is answered with the object as it now is.
"""

from __future__ import annotations

from typing import Any

from kubesim import errors
from kubesim.resources import Resource

DEFAULT_POD_GRACE_SECONDS = 30


def grace_period(
    resource: Resource, obj: dict[str, Any], query: str | None, body: Any
) -> int | None:
    """The grace period a DELETE asks for (query beats body), or the Pod's default."""
    if resource.kind != "Pod":
        return None
    raw: Any = query
    if raw in (None, "") and isinstance(body, dict):
        raw = body.get("gracePeriodSeconds")
    if raw in (None, ""):
        spec_grace = (obj.get("spec") or {}).get("terminationGracePeriodSeconds")
        return int(spec_grace) if spec_grace is not None else DEFAULT_POD_GRACE_SECONDS
    try:
        seconds = int(raw)
    except (TypeError, ValueError):
        raise errors.bad_request(f"gracePeriodSeconds: invalid integer {raw!r}") from None
    return max(0, seconds)


def response_body(resource: Resource, deleted: dict[str, Any]) -> dict[str, Any]:
    """What the DELETE answers with (see the module docstring)."""
    meta = deleted.get("metadata") or {}
    if resource.kind == "Pod" or meta.get("deletionTimestamp"):
        return deleted
    details: dict[str, Any] = {"name": meta.get("name", ""), "kind": resource.plural}
    if resource.group:
        details["group"] = resource.group
    details["uid"] = meta.get("uid", "")
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": details,
    }
