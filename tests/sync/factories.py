"""Sync-test helpers: a vault, clusters registered the way the API stores them, k8s objects.

Clusters are inserted directly (the GraphQL registry is built elsewhere) but exactly as it
stores them: the sanitized kubeconfig sealed by the vault with the row's associated data.
"""

from __future__ import annotations

import base64
import gzip
import uuid
from typing import Any

import asyncpg
import orjson

from app.vault import Vault, generate_key
from sync.cluster_sync import kubeconfig_aad
from tests.factories import make_cluster, make_org

TEST_KEY = generate_key()


def make_vault() -> Vault:
    return Vault.from_env(TEST_KEY)


def kubeconfig_for(server: str, *, token: str = "test-token") -> str:
    return orjson.dumps(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "sim", "cluster": {"server": server}}],
            "users": [{"name": "sim", "user": {"token": token}}],
            "contexts": [{"name": "sim", "context": {"cluster": "sim", "user": "sim"}}],
            "current-context": "sim",
        }
    ).decode()


async def register_cluster(
    conn: asyncpg.Connection,
    vault: Vault,
    *,
    server: str,
    org_id: uuid.UUID | None = None,
    name: str | None = None,
    token: str = "test-token",
    status: str = "pending",
) -> uuid.UUID:
    """Insert a cluster with a placeholder ciphertext, then seal its kubeconfig to its id."""
    org_id = org_id or await make_org(conn)
    cluster_id = await make_cluster(conn, org_id, name, api_server_url=server, status=status)
    await set_kubeconfig(conn, vault, cluster_id=cluster_id, server=server, token=token)
    return cluster_id


async def set_kubeconfig(
    conn: asyncpg.Connection, vault: Vault, *, cluster_id: uuid.UUID, server: str, token: str
) -> None:
    sealed = vault.encrypt(
        kubeconfig_for(server, token=token).encode(), aad=kubeconfig_aad(cluster_id)
    )
    await conn.execute(
        "UPDATE k8s_clusters SET kubeconfig_encrypted = $2, kubeconfig_key_id = $3,"
        " api_server_url = $4, updated_at = now() WHERE id = $1",
        cluster_id,
        sealed.ciphertext,
        sealed.key_id,
        server,
    )


def helm_secret(
    *,
    namespace: str,
    release: str,
    revision: int,
    status: str = "deployed",
    values: dict[str, Any] | None = None,
    chart: str = "nginx",
    chart_version: str = "1.0.0",
) -> dict[str, Any]:
    """A Helm 3 storage secret, encoded exactly the way Helm encodes it."""
    document = {
        "name": release,
        "namespace": namespace,
        "version": revision,
        "info": {
            "first_deployed": "2024-01-01T00:00:00Z",
            "last_deployed": "2024-01-02T00:00:00Z",
            "status": status,
            "description": "Install complete",
        },
        "chart": {"metadata": {"name": chart, "version": chart_version, "appVersion": "1.25"}},
        "config": values or {},
    }
    helm_encoded = base64.b64encode(gzip.compress(orjson.dumps(document)))
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "helm.sh/release.v1",
        "metadata": {
            "name": f"sh.helm.release.v1.{release}.v{revision}",
            "namespace": namespace,
            "uid": str(uuid.uuid4()),
            "labels": {"owner": "helm", "name": release, "version": str(revision),
                       "status": status},
        },
        "data": {"release": base64.b64encode(helm_encoded).decode()},
    }
