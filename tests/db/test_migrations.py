"""The revision chain builds the whole model and its downgrade removes all of it."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import asyncpg

from app.migrations import downgrade_to_base, upgrade_to_head

TABLES = {
    "organizations", "api_tokens", "k8s_clusters", "k8s_namespaces", "k8s_nodes",
    "k8s_deployments", "k8s_replicasets", "k8s_pods", "k8s_resource_metrics",
    "k8s_helm_releases", "k8s_cost_attribution",
}
VIEWS = {"v_k8s_cluster_health", "v_k8s_namespace_costs"}
INDEXES = {
    "k8s_clusters_org_status_idx", "k8s_namespaces_team_idx", "k8s_namespaces_cost_center_idx",
    "k8s_deployments_health_idx", "k8s_resource_metrics_sampled_brin",
    "k8s_cost_attribution_period_idx",
}


def _month_suffixes(now: datetime, count: int) -> list[str]:
    year, month = now.year, now.month
    out = []
    for _ in range(count):
        out.append(f"y{year:04d}m{month:02d}")
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return out


async def _relations(conn: asyncpg.Connection) -> dict[str, str]:
    rows = await conn.fetch(
        """SELECT c.relname, c.relkind::text AS relkind
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = 'public' AND c.relname <> 'alembic_version'
              AND c.relname NOT LIKE 'alembic_version%'"""
    )
    return {r["relname"]: r["relkind"] for r in rows}


async def _functions(conn: asyncpg.Connection) -> set[str]:
    rows = await conn.fetch(
        """SELECT p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
            WHERE n.nspname = 'public'"""
    )
    return {r["proname"] for r in rows}


async def test_upgrade_downgrade_upgrade_builds_and_removes_the_whole_model(
    empty_database_url: str,
) -> None:
    conn = await asyncpg.connect(empty_database_url)
    try:
        for _round in range(2):
            await asyncio.to_thread(upgrade_to_head, empty_database_url)
            relations = await _relations(conn)
            assert relations.keys() >= TABLES | VIEWS | INDEXES
            assert {relations[v] for v in VIEWS} == {"v"}
            assert relations["k8s_pods"] == "p" and relations["k8s_resource_metrics"] == "p"
            now = await conn.fetchval("SELECT now()")
            for parent in ("k8s_pods", "k8s_resource_metrics"):
                for suffix in _month_suffixes(now.astimezone(UTC), 4):
                    assert f"{parent}_{suffix}" in relations, f"{parent}_{suffix} missing"
                assert f"{parent}_default" in relations
            assert "fleetgraph_ensure_partitions" in await _functions(conn)

            await asyncio.to_thread(downgrade_to_base, empty_database_url)
            assert await _relations(conn) == {}
            assert not {f for f in await _functions(conn) if f.startswith("fleetgraph")}
    finally:
        await conn.close()
