"""The resource types kubesim serves, described once.

Discovery documents, URL routing, the store's keys and kubectl's short names all come from
this table, so adding a kind is one line here and nothing drifts apart.
"""

from __future__ import annotations

from dataclasses import dataclass

_STORE_VERBS = ("create", "delete", "get", "list", "patch", "update", "watch")


@dataclass(frozen=True, slots=True)
class Resource:
    """One REST resource, as the API server's discovery describes it."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    verbs: tuple[str, ...] = _STORE_VERBS
    subresources: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def key(self) -> str:
        """Store key: ``pods``, ``apps/deployments``, ``metrics.k8s.io/pods``."""
        return f"{self.group}/{self.plural}" if self.group else self.plural

    @property
    def list_kind(self) -> str:
        return f"{self.kind}List"

    @property
    def singular(self) -> str:
        return self.kind.lower()


CORE = (
    Resource("", "v1", "namespaces", "Namespace", False, ("ns",), subresources=("status",)),
    Resource("", "v1", "nodes", "Node", False, ("no",), subresources=("status",)),
    Resource("", "v1", "pods", "Pod", True, ("po",), subresources=("status",), categories=("all",)),
    Resource(
        "", "v1", "resourcequotas", "ResourceQuota", True, ("quota",), subresources=("status",)
    ),
    Resource("", "v1", "secrets", "Secret", True),
    Resource("", "v1", "serviceaccounts", "ServiceAccount", True, ("sa",)),
    Resource(
        "", "v1", "persistentvolumeclaims", "PersistentVolumeClaim", True, ("pvc",),
        subresources=("status",),
    ),
    Resource("", "v1", "persistentvolumes", "PersistentVolume", False, ("pv",),
             subresources=("status",)),
    Resource("", "v1", "events", "Event", True, ("ev",)),
)
APPS = (
    Resource(
        "apps",
        "v1",
        "deployments",
        "Deployment",
        True,
        ("deploy",),
        subresources=("scale", "status"),
        categories=("all",),
    ),
    Resource(
        "apps",
        "v1",
        "replicasets",
        "ReplicaSet",
        True,
        ("rs",),
        subresources=("scale", "status"),
        categories=("all",),
    ),
)
METRICS = (
    Resource("metrics.k8s.io", "v1beta1", "nodes", "NodeMetrics", False, verbs=("get", "list")),
    Resource("metrics.k8s.io", "v1beta1", "pods", "PodMetrics", True, verbs=("get", "list")),
)

STORED: tuple[Resource, ...] = CORE + APPS
ALL: tuple[Resource, ...] = STORED + METRICS

GROUP_VERSIONS: dict[str, tuple[Resource, ...]] = {
    "v1": CORE,
    "apps/v1": APPS,
    "metrics.k8s.io/v1beta1": METRICS,
}


def by_path(group: str, version: str, plural: str) -> Resource | None:
    """The resource at ``/api[s]/{group}/{version}/{plural}``, if served."""
    for resource in ALL:
        if (resource.group, resource.version, resource.plural) == (group, version, plural):
            return resource
    return None


def resolve(name: str | Resource) -> Resource:
    """Find a stored resource by plural, kind, short name or ``group/plural`` key.

    The Python API accepts any of these so tests can say ``"pods"``, ``"Pod"`` or ``"deploy"``.
    """
    if isinstance(name, Resource):
        return name
    try:
        return _BY_NAME[name]
    except KeyError:
        raise KeyError(f"kubesim does not store {name!r}") from None


_BY_NAME: dict[str, Resource] = {}
for _resource in reversed(STORED):
    for _alias in (
        *_resource.short_names,
        _resource.singular,
        _resource.kind,
        _resource.plural,
        _resource.key,
    ):
        _BY_NAME[_alias] = _resource
