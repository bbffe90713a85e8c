"""Small builders shared by the cost tests: a cluster with one priced node."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from decimal import Decimal

import asyncpg

from cost.pricing import BASELINE_FROM, PriceBook, set_cluster_pricing
from tests.factories import make_cluster, make_org

GIB = 1024**3
BOOK = PriceBook.from_env({})


async def one_node_cluster(
    conn: asyncpg.Connection, *, created_at: datetime, cpu_price: str = "1.00",
    org: uuid.UUID | None = None, cores: int = 1, memory_gib: int = 0,
    storage_price: str = "0.01", network_price: str = "0.05",
    storage_classes: dict[str, Decimal | None] | None = None,
) -> tuple[uuid.UUID, uuid.UUID]:
    """A cluster with one node (1 core and no memory unless told) priced ``cpu_price`` per
    core-hour and 0.10 per GiB-hour of memory from the epoch, so every hour it costs exactly
    ``cores x cpu_price + memory_gib x 0.10`` (idle unless pods run). Storage 0.01 per
    GiB-hour and network 0.05 per GiB unless told."""
    org = org or await make_org(conn)
    cluster = await make_cluster(conn, org, created_at=created_at)
    await set_cluster_pricing(
        conn, organization_id=org, cluster_id=cluster, effective_from=BASELINE_FROM, book=BOOK,
        cpu_core_hour=Decimal(cpu_price), memory_gib_hour=Decimal("0.10"),
        storage_gib_hour=Decimal(storage_price), network_gib=Decimal(network_price),
        storage_classes=storage_classes,
    )
    await conn.execute(
        """INSERT INTO k8s_nodes (cluster_id, uid, name, capacity_cpu_cores,
               capacity_memory_bytes, created_at)
           VALUES ($1, 'n', 'n', $3, $4, $2)""",
        cluster, created_at - timedelta(days=60), cores, memory_gib * GIB,
    )
    return org, cluster
