"""Kubernetes' protobuf wire format, decoded for the objects kubectl creates.

kubectl 1.35 builds typed objects for ``kubectl create namespace|deployment|secret|quota|
serviceaccount`` and ``kubectl run`` and sends them as
``Content-Type: application/vnd.kubernetes.protobuf``.
A 415 does not help: client-go only falls back to JSON after a 415 to *CBOR*; generated
clients of built-in kinds are pinned to protobuf (``rest.requestClientContentConfigProvider``).
So kubesim reads the envelope itself: the magic ``k8s\\0``, then a ``runtime.Unknown``
(``typeMeta`` = 1, ``raw`` = 2, ``contentEncoding`` = 3, ``contentType`` = 4) whose ``raw`` is
the object's own message.

The schemas below are the field numbers of ``generated.proto`` in ``k8s.io/api`` and
``k8s.io/apimachinery`` (v0.35) for the fields those commands fill in. The result is the dict
the JSON form of the same object would give: Go's encoder writes every non-pointer field,
empty or not, so zero values of fields that JSON would omit are dropped (so are empty fields
kubesim has no schema for), and a non-empty field kubesim does not know is a 400 naming it
rather than a value silently lost.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from kubesim import errors

MEDIA_TYPE = "application/vnd.kubernetes.protobuf"
MAGIC = b"k8s\x00"


@dataclass(frozen=True, slots=True)
class Field:
    """One field of a message: its JSON name, its type, and whether it repeats.

    ``kind`` is ``string``, ``int``, ``bool``, ``bytes``, ``time``, ``intstr``, ``quantity``,
    ``map:string``, ``map:bytes``, ``map:quantity`` or the name of a message in
    :data:`SCHEMAS`. ``pointer`` marks Go pointer fields, whose zero value is still a value.
    """

    name: str
    kind: str
    repeated: bool = False
    pointer: bool = False


def _f(name: str, kind: str = "string", *, repeated: bool = False, pointer: bool = False) -> Field:
    return Field(name, kind, repeated, pointer)


_CONTAINER_FIELDS = {
    1: _f("name"),
    2: _f("image"),
    3: _f("command", repeated=True),
    4: _f("args", repeated=True),
    5: _f("workingDir"),
    6: _f("ports", "ContainerPort", repeated=True),
    7: _f("env", "EnvVar", repeated=True),
    8: _f("resources", "ResourceRequirements"),
    13: _f("terminationMessagePath"),
    14: _f("imagePullPolicy"),
    16: _f("stdin", "bool"),
    17: _f("stdinOnce", "bool"),
    18: _f("tty", "bool"),
    20: _f("terminationMessagePolicy"),
}

SCHEMAS: dict[str, dict[int, Field]] = {
    "Unknown": {
        1: _f("typeMeta", "TypeMeta"),
        2: _f("raw", "bytes"),
        3: _f("contentEncoding"),
        4: _f("contentType"),
    },
    "TypeMeta": {1: _f("apiVersion"), 2: _f("kind")},
    "ObjectMeta": {
        1: _f("name"),
        2: _f("generateName"),
        3: _f("namespace"),
        4: _f("selfLink"),
        5: _f("uid"),
        6: _f("resourceVersion"),
        7: _f("generation", "int"),
        8: _f("creationTimestamp", "time"),
        9: _f("deletionTimestamp", "time"),
        10: _f("deletionGracePeriodSeconds", "int", pointer=True),
        11: _f("labels", "map:string"),
        12: _f("annotations", "map:string"),
        13: _f("ownerReferences", "OwnerReference", repeated=True),
        14: _f("finalizers", repeated=True),
    },
    "OwnerReference": {
        1: _f("kind"),
        3: _f("name"),
        4: _f("uid"),
        5: _f("apiVersion"),
        6: _f("controller", "bool", pointer=True),
        7: _f("blockOwnerDeletion", "bool", pointer=True),
    },
    "LabelSelector": {
        1: _f("matchLabels", "map:string"),
        2: _f("matchExpressions", "LabelSelectorRequirement", repeated=True),
    },
    "LabelSelectorRequirement": {
        1: _f("key"),
        2: _f("operator"),
        3: _f("values", repeated=True),
    },
    # Status messages arrive empty from kubectl (the server owns them); any content is a 400.
    "EmptyStatus": {},
    "Namespace": {
        1: _f("metadata", "ObjectMeta"),
        2: _f("spec", "NamespaceSpec"),
        3: _f("status", "EmptyStatus"),
    },
    "NamespaceSpec": {1: _f("finalizers", repeated=True)},
    "Secret": {
        1: _f("metadata", "ObjectMeta"),
        2: _f("data", "map:bytes"),
        3: _f("type"),
        4: _f("stringData", "map:string"),
        5: _f("immutable", "bool", pointer=True),
    },
    "DeleteOptions": {
        1: _f("gracePeriodSeconds", "int", pointer=True),
        2: _f("preconditions", "Preconditions"),
        3: _f("orphanDependents", "bool", pointer=True),
        4: _f("propagationPolicy"),
        5: _f("dryRun", repeated=True),
        6: _f("ignoreStoreReadErrorWithClusterBreakingPotential", "bool", pointer=True),
    },
    "Preconditions": {1: _f("uid"), 2: _f("resourceVersion")},
    "ServiceAccount": {
        1: _f("metadata", "ObjectMeta"),
        3: _f("imagePullSecrets", "LocalObjectReference", repeated=True),
        4: _f("automountServiceAccountToken", "bool", pointer=True),
    },
    "LocalObjectReference": {1: _f("name")},
    "ResourceQuota": {
        1: _f("metadata", "ObjectMeta"),
        2: _f("spec", "ResourceQuotaSpec"),
        3: _f("status", "EmptyStatus"),
    },
    "ResourceQuotaSpec": {
        1: _f("hard", "map:quantity"),
        2: _f("scopes", repeated=True),
    },
    "Pod": {
        1: _f("metadata", "ObjectMeta"),
        2: _f("spec", "PodSpec"),
        3: _f("status", "EmptyStatus"),
    },
    "PodTemplateSpec": {1: _f("metadata", "ObjectMeta"), 2: _f("spec", "PodSpec")},
    "PodSpec": {
        2: _f("containers", "Container", repeated=True),
        3: _f("restartPolicy"),
        4: _f("terminationGracePeriodSeconds", "int", pointer=True),
        6: _f("dnsPolicy"),
        7: _f("nodeSelector", "map:string"),
        8: _f("serviceAccountName"),
        9: _f("serviceAccount"),
        10: _f("nodeName"),
        11: _f("hostNetwork", "bool"),
        16: _f("hostname"),
        17: _f("subdomain"),
        19: _f("schedulerName"),
        20: _f("initContainers", "Container", repeated=True),
        24: _f("priorityClassName"),
        25: _f("priority", "int", pointer=True),
        30: _f("enableServiceLinks", "bool", pointer=True),
        31: _f("preemptionPolicy"),
    },
    "Container": _CONTAINER_FIELDS,
    "ContainerPort": {
        1: _f("name"),
        2: _f("hostPort", "int"),
        3: _f("containerPort", "int"),
        4: _f("protocol"),
        5: _f("hostIP"),
    },
    "EnvVar": {1: _f("name"), 2: _f("value")},
    "ResourceRequirements": {1: _f("limits", "map:quantity"), 2: _f("requests", "map:quantity")},
    "Deployment": {
        1: _f("metadata", "ObjectMeta"),
        2: _f("spec", "DeploymentSpec"),
        3: _f("status", "EmptyStatus"),
    },
    "DeploymentSpec": {
        1: _f("replicas", "int", pointer=True),
        2: _f("selector", "LabelSelector"),
        3: _f("template", "PodTemplateSpec"),
        4: _f("strategy", "DeploymentStrategy"),
        5: _f("minReadySeconds", "int"),
        6: _f("revisionHistoryLimit", "int", pointer=True),
        7: _f("paused", "bool"),
        9: _f("progressDeadlineSeconds", "int", pointer=True),
    },
    "DeploymentStrategy": {1: _f("type"), 2: _f("rollingUpdate", "RollingUpdateDeployment")},
    "RollingUpdateDeployment": {
        1: _f("maxUnavailable", "intstr", pointer=True),
        2: _f("maxSurge", "intstr", pointer=True),
    },
}

# The kinds a protobuf body may carry, by apiVersion and kind (TypeMeta of the envelope).
TOP_LEVEL = {
    ("v1", "Namespace"): "Namespace",
    ("v1", "Secret"): "Secret",
    ("v1", "ResourceQuota"): "ResourceQuota",
    ("v1", "Pod"): "Pod",
    ("v1", "ServiceAccount"): "ServiceAccount",
    # A typed client's DELETE body (kubectl's own deletes send JSON).
    ("v1", "DeleteOptions"): "DeleteOptions",
    ("meta.k8s.io/v1", "DeleteOptions"): "DeleteOptions",
    ("apps/v1", "Deployment"): "Deployment",
}


class _Reader:
    """Protobuf wire-format primitives over one buffer."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def done(self) -> bool:
        return self.pos >= len(self.data)

    def varint(self) -> int:
        result = shift = 0
        while True:
            if self.pos >= len(self.data) or shift > 63:
                raise _malformed("truncated varint")
            byte = self.data[self.pos]
            self.pos += 1
            result |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return result
            shift += 7

    def chunk(self, size: int) -> bytes:
        end = self.pos + size
        if end > len(self.data):
            raise _malformed("truncated field")
        out = self.data[self.pos : end]
        self.pos = end
        return out

    def fields(self) -> list[tuple[int, int, int | bytes]]:
        """Every (field number, wire type, value) in order; length-delimited values as bytes."""
        out: list[tuple[int, int, int | bytes]] = []
        while not self.done():
            key = self.varint()
            number, wire = key >> 3, key & 7
            value: int | bytes
            if wire == 0:
                value = self.varint()
            elif wire == 2:
                value = self.chunk(self.varint())
            elif wire == 1:
                value = int.from_bytes(self.chunk(8), "little")
            elif wire == 5:
                value = int.from_bytes(self.chunk(4), "little")
            else:
                raise _malformed(f"unsupported wire type {wire}")
            out.append((number, wire, value))
        return out


def _malformed(why: str) -> errors.ApiError:
    return errors.bad_request(f"the protobuf body of the request could not be decoded: {why}")


def _signed(value: int) -> int:
    """int32/int64 fields are plain varints: negative numbers arrive as 64-bit two's
    complement."""
    return value - (1 << 64) if value >= 1 << 63 else value


def _as_bytes(value: int | bytes, where: str) -> bytes:
    if not isinstance(value, bytes):
        raise _malformed(f"{where}: expected a length-delimited field")
    return value


def _as_int(value: int | bytes, where: str) -> int:
    if isinstance(value, bytes):
        raise _malformed(f"{where}: expected a varint")
    return value


def _time(data: bytes, where: str) -> str | None:
    seconds = 0
    for number, _, value in _Reader(data).fields():
        if number == 1:
            seconds = _signed(_as_int(value, where))
    if seconds == 0:
        return None  # metav1.Time's zero value, which JSON writes as null
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _intstr(data: bytes, where: str) -> int | str:
    kind, int_val, str_val = 0, 0, ""
    for number, _, value in _Reader(data).fields():
        if number == 1:
            kind = _as_int(value, where)
        elif number == 2:
            int_val = _signed(_as_int(value, where)) & 0xFFFFFFFF
            int_val = int_val - (1 << 32) if int_val >= 1 << 31 else int_val
        elif number == 3:
            str_val = _as_bytes(value, where).decode()
    return str_val if kind == 1 else int_val


def _quantity(data: bytes, where: str) -> str:
    for number, _, value in _Reader(data).fields():
        if number == 1:
            return _as_bytes(value, where).decode()
    return "0"


def _map_entry(data: bytes, value_kind: str, where: str) -> tuple[str, Any]:
    key = ""
    value: Any = b"" if value_kind == "bytes" else ""
    for number, _, raw in _Reader(data).fields():
        if number == 1:
            key = _as_bytes(raw, where).decode()
        elif number == 2:
            payload = _as_bytes(raw, where)
            if value_kind == "bytes":
                value = base64.b64encode(payload).decode()
            elif value_kind == "quantity":
                value = _quantity(payload, where)
            else:
                value = payload.decode()
    if value == b"":
        value = ""
    return key, value


def _scalar(spec: Field, value: int | bytes, where: str) -> Any:
    kind = spec.kind
    if kind == "string":
        return _as_bytes(value, where).decode()
    if kind == "int":
        return _signed(_as_int(value, where))
    if kind == "bool":
        return bool(_as_int(value, where))
    if kind == "bytes":
        return _as_bytes(value, where)
    if kind == "time":
        return _time(_as_bytes(value, where), where)
    if kind == "intstr":
        return _intstr(_as_bytes(value, where), where)
    if kind == "quantity":
        return _quantity(_as_bytes(value, where), where)
    return decode_message(kind, _as_bytes(value, where), where=where)


def _is_zero(value: Any) -> bool:
    return value is None or value in ("", 0, False, b"") or value == {} or value == []


def decode_message(schema: str, data: bytes, *, where: str = "") -> dict[str, Any]:
    """Decode one message of ``schema`` into its JSON-shaped dict."""
    fields = SCHEMAS[schema]
    out: dict[str, Any] = {}
    for number, _, value in _Reader(data).fields():
        spec = fields.get(number)
        path = f"{where}.{spec.name}" if spec and where else (spec.name if spec else where)
        if spec is None and value in (0, b""):
            continue  # Go writes every non-pointer field; an empty one says nothing
        if spec is None:
            raise errors.bad_request(
                f"kubesim cannot decode field {number} of a protobuf {schema} "
                f"(at {where or 'the top level'}); send it as application/json"
            )
        if spec.kind.startswith("map:"):
            key, item = _map_entry(_as_bytes(value, path), spec.kind[4:], path)
            out.setdefault(spec.name, {})[key] = item
            continue
        decoded = _scalar(spec, value, path)
        if spec.repeated:
            out.setdefault(spec.name, []).append(decoded)
        elif spec.pointer or not _is_zero(decoded):
            out[spec.name] = decoded
    return out


def decode_object(body: bytes) -> dict[str, Any]:
    """The object in a ``application/vnd.kubernetes.protobuf`` request body, as JSON would
    give it (with ``apiVersion`` and ``kind`` from the envelope)."""
    if not body.startswith(MAGIC):
        raise _malformed("the body does not start with the k8s protobuf magic bytes")
    envelope = decode_message("Unknown", body[len(MAGIC) :])
    type_meta = envelope.get("typeMeta") or {}
    api_version, kind = type_meta.get("apiVersion", ""), type_meta.get("kind", "")
    if envelope.get("contentEncoding"):
        raise _malformed(f"content encoding {envelope['contentEncoding']!r} is not supported")
    schema = TOP_LEVEL.get((api_version, kind))
    if schema is None:
        raise errors.unsupported_media_type(
            f"{MEDIA_TYPE} for {api_version} {kind}", accepted=("application/json",)
        )
    obj = decode_message(schema, envelope.get("raw", b""))
    return {"apiVersion": api_version, "kind": kind, **obj}
