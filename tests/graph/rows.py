"""Hand-made inventory rows, inserted with SQL so every figure a test asserts is in the test."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg

from tests.factories import make_cluster

NOW = datetime.now(UTC)


async def insert(conn: asyncpg.Connection, table: str, **columns: Any) -> Any:
    names = ", ".join(columns)
    params = ", ".join(f"${i}" for i in range(1, len(columns) + 1))
    returning = "" if table == "k8s_resource_metrics" else " RETURNING id"
    return await conn.fetchval(
        f"INSERT INTO {table} ({names}) VALUES ({params}){returning}", *columns.values()
    )


def _uid() -> str:
    return uuid.uuid4().hex


async def namespace(conn: asyncpg.Connection, cluster_id: uuid.UUID, name: str,
                    **cols: Any) -> uuid.UUID:
    values: dict[str, Any] = {"phase": "Active", "created_at": NOW, **cols}
    return await insert(conn, "k8s_namespaces", cluster_id=cluster_id, uid=_uid(), name=name,
                        **values)


async def node(conn: asyncpg.Connection, cluster_id: uuid.UUID, name: str,
               **cols: Any) -> uuid.UUID:
    values: dict[str, Any] = {"created_at": NOW, **cols}
    return await insert(conn, "k8s_nodes", cluster_id=cluster_id, uid=_uid(), name=name,
                        **values)


async def deployment(conn: asyncpg.Connection, cluster_id: uuid.UUID, ns: str, name: str,
                     **cols: Any) -> uuid.UUID:
    values: dict[str, Any] = {"created_at": NOW, **cols}
    return await insert(conn, "k8s_deployments", cluster_id=cluster_id, uid=_uid(),
                        namespace=ns, name=name, **values)


async def pod(conn: asyncpg.Connection, cluster_id: uuid.UUID, ns: str, name: str,
              **cols: Any) -> uuid.UUID:
    values: dict[str, Any] = {"phase": "Running", "created_at": NOW, **cols}
    return await insert(conn, "k8s_pods", cluster_id=cluster_id, uid=_uid(), namespace=ns,
                        name=name, **values)


async def cluster(conn: asyncpg.Connection, org_id: uuid.UUID, name: str,
                  **cols: Any) -> uuid.UUID:
    return await make_cluster(conn, org_id, name, **cols)


async def tree(conn: asyncpg.Connection, org_id: uuid.UUID, *, clusters: int, namespaces: int,
               deployments: int, pods: int) -> None:
    """A regular fleet: every cluster has the same namespaces, deployments and pods."""
    for c in range(clusters):
        cid = await cluster(conn, org_id, f"tree-{c}")
        for n in range(namespaces):
            await namespace(conn, cid, f"ns-{n}")
            for d in range(deployments):
                await deployment(conn, cid, f"ns-{n}", f"dep-{d}")
                for p in range(pods):
                    await pod(conn, cid, f"ns-{n}", f"dep-{d}-{p}", deployment_name=f"dep-{d}")
