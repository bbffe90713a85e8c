"""Sealing and opening the secrets FleetGraph stores, and re-keying them.

The associated data binds each ciphertext to its row, so a ciphertext copied into another
cluster's row (or another tenant's) fails to open rather than handing over credentials.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import asyncpg

from app.kubeconfig import SanitizedKubeconfig, sanitize_kubeconfig
from app.vault import Sealed, Vault


def kubeconfig_aad(cluster_id: uuid.UUID) -> bytes:
    return f"k8s_clusters.kubeconfig:{cluster_id}".encode()


def helm_values_aad(cluster_id: uuid.UUID, namespace: str, name: str) -> bytes:
    return f"k8s_helm_releases.values:{cluster_id}:{namespace}:{name}".encode()


def seal_kubeconfig(vault: Vault, cluster_id: uuid.UUID, kc: SanitizedKubeconfig) -> Sealed:
    """Only the sanitized form is ever stored: what was refused never reaches the database."""
    return vault.encrypt(kc.to_yaml().encode(), aad=kubeconfig_aad(cluster_id))


def open_kubeconfig(
    vault: Vault, cluster_id: uuid.UUID, ciphertext: bytes, key_id: str
) -> SanitizedKubeconfig:
    text = vault.decrypt(ciphertext, key_id=key_id, aad=kubeconfig_aad(cluster_id)).decode()
    return sanitize_kubeconfig(text)


@dataclass(frozen=True)
class RotationReport:
    kubeconfigs: int
    helm_values: int


async def rotate_secrets(pool: asyncpg.Pool, vault: Vault) -> RotationReport:
    """Re-seal every stored secret not sealed with the first key, one transaction per table.

    Rows are locked while re-sealed, so a concurrent sync writing Helm values cannot interleave.
    """
    primary = vault.primary_key_id
    async with pool.acquire() as conn, conn.transaction():
        rows = await conn.fetch(
            """SELECT id, kubeconfig_encrypted, kubeconfig_key_id FROM k8s_clusters
                WHERE kubeconfig_key_id <> $1 FOR UPDATE""",
            primary,
        )
        for row in rows:
            sealed = vault.reencrypt(
                row["kubeconfig_encrypted"], key_id=row["kubeconfig_key_id"],
                aad=kubeconfig_aad(row["id"]),
            )
            await conn.execute(
                """UPDATE k8s_clusters SET kubeconfig_encrypted = $2, kubeconfig_key_id = $3
                    WHERE id = $1""",
                row["id"], sealed.ciphertext, sealed.key_id,
            )
    async with pool.acquire() as conn, conn.transaction():
        helm = await conn.fetch(
            """SELECT id, cluster_id, namespace, name, values_encrypted, values_key_id
                 FROM k8s_helm_releases
                WHERE values_encrypted IS NOT NULL AND values_key_id <> $1 FOR UPDATE""",
            primary,
        )
        for row in helm:
            sealed = vault.reencrypt(
                row["values_encrypted"], key_id=row["values_key_id"],
                aad=helm_values_aad(row["cluster_id"], row["namespace"], row["name"]),
            )
            await conn.execute(
                """UPDATE k8s_helm_releases SET values_encrypted = $2, values_key_id = $3
                    WHERE id = $1""",
                row["id"], sealed.ciphertext, sealed.key_id,
            )
    return RotationReport(kubeconfigs=len(rows), helm_values=len(helm))
