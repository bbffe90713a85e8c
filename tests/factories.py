"""Hand-made rows for tests: an organization and a cluster with the fewest fields that are valid.

Tests that need inventory insert their own rows beside these, so every figure they assert is
visible in the test itself.
"""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg


async def make_org(conn: asyncpg.Connection, slug: str | None = None) -> uuid.UUID:
    slug = slug or f"org-{uuid.uuid4().hex[:8]}"
    org_id: uuid.UUID = await conn.fetchval(
        "INSERT INTO organizations (slug, name) VALUES ($1, $1) RETURNING id", slug
    )
    return org_id


async def make_cluster(
    conn: asyncpg.Connection, org_id: uuid.UUID, name: str | None = None, **columns: Any
) -> uuid.UUID:
    values: dict[str, Any] = {
        "organization_id": org_id,
        "name": name or f"c-{uuid.uuid4().hex[:8]}",
        "provider": "vanilla",
        "api_server_url": "https://127.0.0.1:6443",
        "kubeconfig_encrypted": b"not-a-real-ciphertext",
        "kubeconfig_key_id": "test",
        **columns,
    }
    names = ", ".join(values)
    params = ", ".join(f"${i}" for i in range(1, len(values) + 1))
    cluster_id: uuid.UUID = await conn.fetchval(
        f"INSERT INTO k8s_clusters ({names}) VALUES ({params}) RETURNING id", *values.values()
    )
    return cluster_id
