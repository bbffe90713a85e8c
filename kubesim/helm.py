"""Helm 3 release records, in the exact storage format Helm's Secret driver writes.

Helm keeps each revision of a release in a Secret of type ``helm.sh/release.v1`` named
``sh.helm.release.v1.<release>.v<revision>``, labelled ``owner=helm``, ``name``, ``status``,
``version`` (and ``modifiedAt``). The release is JSON, gzipped, then base64-encoded into
``data.release``. Because a Secret's ``data`` values are themselves base64 on the wire,
what a client reads from the API is ``base64(base64(gzip(json)))``: code that decodes only
once gets gzip-looking base64 text, which is the classic mistake these fixtures catch.
"""

from __future__ import annotations

import base64
import gzip
from typing import Any

import orjson

SECRET_TYPE = "helm.sh/release.v1"
GZIP_MAGIC = b"\x1f\x8b\x08"


def secret_name(release: str, revision: int) -> str:
    return f"sh.helm.release.v1.{release}.v{revision}"


def encode_release(release: dict[str, Any]) -> str:
    """What Helm stores as the Secret's (decoded) ``release`` value: base64(gzip(json))."""
    raw = orjson.dumps(release)
    # mtime=0 keeps the bytes reproducible for a given release.
    return base64.b64encode(gzip.compress(raw, compresslevel=9, mtime=0)).decode()


def decode_release(encoded: str | bytes) -> dict[str, Any]:
    """Inverse of :func:`encode_release` (Helm also accepts un-gzipped JSON, so do we)."""
    data = base64.b64decode(encoded)
    if data[:3] == GZIP_MAGIC:
        data = gzip.decompress(data)
    release: dict[str, Any] = orjson.loads(data)
    return release


def release_secret(release: dict[str, Any], *, modified_at: int) -> dict[str, Any]:
    """The Secret object for one release revision, with ``data`` in wire (base64) form."""
    name = release["name"]
    revision = int(release["version"])
    status = release["info"]["status"]
    stored = encode_release(release)
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": secret_name(name, revision),
            "namespace": release["namespace"],
            "labels": {
                "modifiedAt": str(modified_at),
                "name": name,
                "owner": "helm",
                "status": status,
                "version": str(revision),
            },
        },
        "type": SECRET_TYPE,
        # Secret.data is base64 on the wire, so the Helm payload is encoded a second time.
        "data": {"release": base64.b64encode(stored.encode()).decode()},
    }


def decode_release_secret(secret: dict[str, Any]) -> dict[str, Any]:
    """Read the release back from a Secret as returned by the API (``data`` in wire form)."""
    if secret.get("type") != SECRET_TYPE:
        raise ValueError(f"not a Helm release secret: type {secret.get('type')!r}")
    stored = base64.b64decode(secret["data"]["release"])
    return decode_release(stored)


def build_release(
    *,
    name: str,
    namespace: str,
    revision: int,
    status: str,
    chart_name: str,
    chart_version: str,
    app_version: str,
    values: dict[str, Any],
    config: dict[str, Any],
    manifest: str,
    first_deployed: str,
    last_deployed: str,
    description: str,
) -> dict[str, Any]:
    """A release document with the fields Helm 3 writes (``chart``, ``info``, ``config``...)."""
    return {
        "name": name,
        "info": {
            "first_deployed": first_deployed,
            "last_deployed": last_deployed,
            "deleted": "",
            "description": description,
            "status": status,
            "notes": f"{chart_name} {app_version} has been deployed to {namespace}.",
        },
        "chart": {
            "metadata": {
                "name": chart_name,
                "version": chart_version,
                "description": f"A Helm chart for {chart_name}",
                "apiVersion": "v2",
                "appVersion": app_version,
                "type": "application",
            },
            "lock": None,
            "templates": [
                {
                    "name": "templates/deployment.yaml",
                    "data": base64.b64encode(b"apiVersion: apps/v1\nkind: Deployment\n").decode(),
                }
            ],
            "values": values,
            "schema": None,
            "files": [],
        },
        "config": config,
        "manifest": manifest,
        "version": revision,
        "namespace": namespace,
    }
