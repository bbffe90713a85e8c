"""Monthly partitions for pods and metrics, created relative to now, never from a calendar.

The work is done by the SQL function ``fleetgraph_ensure_partitions`` (installed by the first
migration, which also calls it) so that migrations and the scheduled job share one definition.
"""

from __future__ import annotations

from datetime import datetime

import asyncpg

PARTITIONED_TABLES = ("k8s_pods", "k8s_resource_metrics")


async def ensure_partitions(
    conn: asyncpg.Connection, now: datetime, months_ahead: int = 3
) -> list[str]:
    """Create the partitions from ``now``'s month to ``months_ahead`` months later (idempotent).

    Rows already caught by the DEFAULT partition for one of those months are moved into the
    new partition, so creating a partition late never loses or refuses a row.
    """
    rows = await conn.fetch(
        "SELECT fleetgraph_ensure_partitions($1, $2) AS name", now, months_ahead
    )
    return [r["name"] for r in rows]


async def split_default_partitions(conn: asyncpg.Connection) -> list[str]:
    """Give each month that has rows in a DEFAULT partition a partition of its own."""
    rows = await conn.fetch("SELECT fleetgraph_split_default_partitions() AS name")
    return [r["name"] for r in rows]


async def list_partitions(conn: asyncpg.Connection, parent: str) -> list[str]:
    rows = await conn.fetch(
        """
        SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
         WHERE i.inhparent = $1::regclass ORDER BY c.relname
        """,
        parent,
    )
    return [r["relname"] for r in rows]
