"""Process settings, read once from the environment.

One frozen object instead of scattered ``os.environ`` reads, so tests can build a server with
exactly the settings they mean and nothing leaks in from the shell.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

from app.network_guard import ALLOW_SETTING, DENY_SETTING, IPNetwork, parse_networks


def _flag(value: str | None, default: bool) -> bool:
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class Settings:
    """What a FleetGraph process needs to know about its environment."""

    database_url: str | None = None
    data_dir: Path = field(default_factory=lambda: Path(".fleetgraph"))
    encryption_keys: str | None = field(default=None, repr=False)
    graphiql: bool = True
    introspection: bool = True
    statement_timeout_ms: int = 15_000
    max_body_bytes: int = 1_048_576 + 65_536
    max_page_size: int = 500
    max_query_depth: int = 15
    max_aliases: int = 30
    max_tokens: int = 5_000
    sync_enabled: bool = True
    allow_local_clusters: bool = False
    # Where cluster connections may not / may go, over app.network_guard's built-in rules.
    cluster_networks_deny: tuple[IPNetwork, ...] = ()
    cluster_networks_allow: tuple[IPNetwork, ...] = ()
    metrics_interval_s: float = 30.0
    metrics_retention_days: int = 90
    pod_retention_days: int = 30
    pool_min_size: int = 1
    pool_max_size: int = 20  # the API, each cluster sync, the LISTEN hub and the lease share it
    cors_origins: tuple[str, ...] = ()
    request_read_timeout_s: float = 30.0
    # Static query cost budgets per role (schema.query_cost), and the execution deadline.
    query_cost_viewer: int = 25_000
    query_cost_operator: int = 25_000
    query_cost_admin: int = 25_000
    request_deadline_s: float = 30.0
    graphiql_assets_dir: Path | None = None

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        e = os.environ if env is None else env
        return cls(
            database_url=e.get("DATABASE_URL") or None,
            data_dir=Path(e.get("FLEETGRAPH_DATA_DIR") or ".fleetgraph"),
            encryption_keys=e.get("BYOK_ENCRYPTION_KEY") or None,
            graphiql=_flag(e.get("FLEETGRAPH_GRAPHIQL"), True),
            introspection=_flag(e.get("FLEETGRAPH_INTROSPECTION"), True),
            statement_timeout_ms=int(e.get("FLEETGRAPH_STATEMENT_TIMEOUT_MS") or 15_000),
            sync_enabled=_flag(e.get("FLEETGRAPH_SYNC"), True),
            allow_local_clusters=_flag(e.get("FLEETGRAPH_ALLOW_LOCAL_CLUSTERS"), False),
            cluster_networks_deny=parse_networks(DENY_SETTING, e.get(DENY_SETTING)),
            cluster_networks_allow=parse_networks(ALLOW_SETTING, e.get(ALLOW_SETTING)),
            metrics_interval_s=float(e.get("FLEETGRAPH_METRICS_INTERVAL") or 30.0),
            metrics_retention_days=int(e.get("FLEETGRAPH_METRICS_RETENTION_DAYS") or 90),
            pod_retention_days=int(e.get("FLEETGRAPH_POD_RETENTION_DAYS") or 30),
            request_read_timeout_s=float(e.get("FLEETGRAPH_REQUEST_READ_TIMEOUT") or 30.0),
            **{f"query_cost_{role}": int(e.get(f"FLEETGRAPH_QUERY_COST_LIMIT_{role.upper()}")
                                         or e.get("FLEETGRAPH_QUERY_COST_LIMIT") or 25_000)
               for role in ("viewer", "operator", "admin")},
            request_deadline_s=float(e.get("FLEETGRAPH_REQUEST_DEADLINE") or 30.0),
            cors_origins=tuple(
                o.strip() for o in (e.get("FLEETGRAPH_CORS_ORIGINS") or "").split(",") if o.strip()
            ),
            graphiql_assets_dir=Path(e["FLEETGRAPH_GRAPHIQL_ASSETS"])
            if e.get("FLEETGRAPH_GRAPHIQL_ASSETS") else None,
        )

    @property
    def query_cost_limits(self) -> dict[str, int]:
        return {"viewer": self.query_cost_viewer, "operator": self.query_cost_operator,
                "admin": self.query_cost_admin}

    def with_(self, **changes: object) -> Settings:
        """A copy with some fields changed (tests and the CLI flags use this)."""
        return replace(self, **changes)  # type: ignore[arg-type]
