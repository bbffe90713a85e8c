"""PersistentVolumeClaims and PersistentVolumes → table rows, for storage cost.

OpenCost charges persistent storage on the *requested* capacity of each claim bound in a
namespace, per GiB-hour, at the price of the volume's storage class where one is known. So a
claim's row keeps its request, its phase (only ``Bound`` claims are charged), its storage
class and the volume it is bound to; a volume's row keeps its class, its capacity and the claim
it serves, so the cost engine can price a claim by the class of the volume it really got.

Kept apart from :mod:`sync.mappers` (the same forgiving readers, the same rules: an odd field
becomes ``None``, only an object without a uid or name is a :class:`~sync.mappers.BadObject`)
because storage is its own concern and the core mappers change for other reasons.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sync.mappers import (
    JSON,
    Row,
    _base,
    _bytes,
    _dict,
    _list,
    _metadata,
    _str,
    _string_map,
)

__all__ = ["map_persistent_volume", "map_persistent_volume_claim"]


def _storage(amounts: object) -> int | None:
    """The ``storage`` quantity of a ResourceList, in bytes."""
    return _bytes(_dict(amounts).get("storage"))


def _access_modes(value: object) -> list[str]:
    return [mode for mode in _list(value) if isinstance(mode, str) and mode]


def map_persistent_volume_claim(obj: JSON) -> Row:
    metadata = _metadata(obj, kind="PersistentVolumeClaim")
    spec = _dict(obj.get("spec"))
    status = _dict(obj.get("status"))
    return {
        **_base(metadata),
        "namespace": _str(metadata.get("namespace")) or "",
        "labels": _string_map(metadata.get("labels")),
        "storage_class": _str(spec.get("storageClassName")),
        "volume_name": _str(spec.get("volumeName")),
        "phase": _str(status.get("phase")),
        "access_modes": _access_modes(spec.get("accessModes")),
        "requests_storage_bytes": _storage(_dict(spec.get("resources")).get("requests")),
        "capacity_bytes": _storage(status.get("capacity")),
    }


def _csi_driver(spec: Mapping[str, Any]) -> str | None:
    return _str(_dict(spec.get("csi")).get("driver"))


def map_persistent_volume(obj: JSON) -> Row:
    metadata = _metadata(obj, kind="PersistentVolume")
    spec = _dict(obj.get("spec"))
    claim = _dict(spec.get("claimRef"))
    return {
        **_base(metadata),
        "labels": _string_map(metadata.get("labels")),
        "storage_class": _str(spec.get("storageClassName")),
        "capacity_bytes": _storage(spec.get("capacity")),
        "phase": _str(_dict(obj.get("status")).get("phase")),
        "reclaim_policy": _str(spec.get("persistentVolumeReclaimPolicy")),
        "claim_namespace": _str(claim.get("namespace")),
        "claim_name": _str(claim.get("name")),
        "claim_uid": _str(claim.get("uid")),
        "csi_driver": _csi_driver(spec),
    }
