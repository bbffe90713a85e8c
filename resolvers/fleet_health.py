"""``fleetHealth``: the organization's clusters summed by health state, in one statement."""

from __future__ import annotations

from dataclasses import dataclass, field

from resolvers.context import Context

HEALTH_STATES = ("healthy", "degraded", "critical", "unreachable", "unknown")
_TOTALS = ("nodes_total", "nodes_ready", "deployments_total", "deployments_healthy",
           "pods_total", "pods_running", "pods_pending", "pods_failed", "restarts_24h",
           "oom_kills_24h")


@dataclass
class FleetHealthFigures:
    clusters_total: int = 0
    by_state: dict[str, int] = field(default_factory=lambda: dict.fromkeys(HEALTH_STATES, 0))
    totals: dict[str, int] = field(default_factory=lambda: dict.fromkeys(_TOTALS, 0))


async def fleet_health(ctx: Context) -> FleetHealthFigures:
    principal = ctx.require()
    sums = ", ".join(f"sum({name})::bigint AS {name}" for name in _TOTALS)
    rows = await ctx.pool.fetch(
        f"SELECT health_status, count(*) AS clusters, {sums} FROM v_k8s_cluster_health "
        "WHERE organization_id = $1 GROUP BY health_status",
        principal.organization_id,
    )
    figures = FleetHealthFigures()
    for row in rows:
        figures.clusters_total += row["clusters"]
        figures.by_state[row["health_status"]] = row["clusters"]
        for name in _TOTALS:
            figures.totals[name] += row[name] or 0
    return figures
