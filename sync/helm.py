"""Helm releases, read from Helm's own storage secrets.

Helm 3 keeps one Secret per release revision (``type: helm.sh/release.v1``, labels
``owner=helm``, ``name``, ``version``, ``status``). Its ``data.release`` is base64 (the
Secret encoding) of Helm's own encoding: base64 of gzip of the release JSON. Only the newest
revision of a release is its current state; once every revision's Secret is gone the release
was uninstalled and its row is marked deleted.

The release's ``config`` (the user-supplied values) routinely holds passwords, so it leaves
this module only as a vault ciphertext whose associated data names the row
(:func:`values_aad`): a ciphertext copied to another release fails to decrypt.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import io
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from sync.mappers import BadObject, describe, parse_time

__all__ = [
    "HELM_LABEL_SELECTOR",
    "HelmRevision",
    "decode_release_payload",
    "decode_storage_secret",
    "values_aad",
]

HELM_LABEL_SELECTOR = "owner=helm"
_GZIP_MAGIC = b"\x1f\x8b"
# A release document is a few hundred KiB at most; refuse to inflate a zip bomb.
_MAX_RELEASE_BYTES = 32 * 1024 * 1024


@dataclass(frozen=True, slots=True, repr=False)
class HelmRevision:
    """One revision of one release, as decoded from its storage secret."""

    secret_uid: str
    secret_name: str
    namespace: str
    name: str
    revision: int
    chart_name: str | None
    chart_version: str | None
    app_version: str | None
    status: str | None
    description: str | None
    first_deployed_at: datetime | None
    last_deployed_at: datetime | None
    values_json: bytes | None

    def __repr__(self) -> str:  # never print values
        return f"HelmRevision({self.namespace}/{self.name} v{self.revision} {self.status})"


def values_aad(cluster_id: uuid.UUID | str, namespace: str, name: str) -> bytes:
    """Associated data binding a values ciphertext to its row (cluster, namespace, release)."""
    return f"k8s_helm_releases.values:{cluster_id}:{namespace}:{name}".encode()


def decode_release_payload(encoded: bytes) -> dict[str, Any]:
    """Helm's storage encoding (base64 of gzip of JSON; plain JSON is accepted too)."""
    try:
        raw = base64.b64decode(encoded, validate=False)
    except (binascii.Error, ValueError):
        raise BadObject("helm release payload is not base64") from None
    if raw[:2] == _GZIP_MAGIC:
        try:
            with gzip.GzipFile(fileobj=io.BytesIO(raw)) as stream:
                raw = stream.read(_MAX_RELEASE_BYTES + 1)
        except (OSError, EOFError):
            raise BadObject("helm release payload is not valid gzip") from None
        if len(raw) > _MAX_RELEASE_BYTES:
            raise BadObject("helm release payload is too large")
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise BadObject("helm release payload is not JSON") from None
    if not isinstance(document, dict):
        raise BadObject("helm release payload is not a JSON object")
    return document


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def decode_storage_secret(secret: Mapping[str, Any]) -> HelmRevision:
    """Decode one ``owner=helm`` Secret; raises :class:`BadObject` (without its body)."""
    metadata = secret.get("metadata")
    if not isinstance(metadata, Mapping) or not _text(metadata.get("uid")):
        raise BadObject(f"{describe(secret, kind='Secret')} has no metadata.uid")
    where = describe(secret, kind="Secret")
    data = secret.get("data")
    payload = data.get("release") if isinstance(data, Mapping) else None
    if not isinstance(payload, str) or not payload:
        raise BadObject(f"{where} has no data.release")
    try:
        document = decode_release_payload(base64.b64decode(payload, validate=False))
    except (binascii.Error, ValueError) as exc:
        raise BadObject(f"{where}: {exc}") from None
    labels = _mapping(metadata.get("labels"))
    info = _mapping(document.get("info"))
    chart_meta = _mapping(_mapping(document.get("chart")).get("metadata"))
    name = _text(document.get("name")) or _text(labels.get("name"))
    revision = document.get("version")
    if not isinstance(revision, int) or isinstance(revision, bool):
        label_version = str(labels.get("version", ""))
        revision = int(label_version) if label_version.isdigit() else None
    if name is None or revision is None or not 0 < revision < 2**31:
        raise BadObject(f"{where} has no release name or revision")
    config = document.get("config")
    # The secret's own namespace wins: a release payload naming another namespace must not
    # let whoever can write secrets here overwrite a release there.
    namespace = _text(metadata.get("namespace")) or _text(document.get("namespace")) or ""
    return HelmRevision(
        secret_uid=str(metadata["uid"]),
        secret_name=str(metadata.get("name", "")),
        namespace=namespace,
        name=name,
        revision=revision,
        chart_name=_text(chart_meta.get("name")),
        chart_version=_text(chart_meta.get("version")),
        app_version=_text(chart_meta.get("appVersion")),
        status=_text(info.get("status")) or _text(labels.get("status")),
        description=_text(info.get("description")),
        first_deployed_at=parse_time(info.get("first_deployed")),
        last_deployed_at=parse_time(info.get("last_deployed")),
        values_json=orjson.dumps(config, option=orjson.OPT_SORT_KEYS) if config else None,
    )
