"""Process settings, read once from the environment.

One frozen object instead of scattered ``os.environ`` reads, so tests can build a server with
exactly the settings they mean and nothing leaks in from the shell.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TypeVar

from app.logs import LOG_FORMATS, LOG_LEVELS
from app.network_guard import ALLOW_SETTING, DENY_SETTING, IPNetwork, parse_networks


class SettingError(ValueError):
    """A setting holds a value FleetGraph cannot use. The message is one paragraph naming the
    setting, what it holds (unless that may be a secret) and what is expected, so ``fleetgraph``
    can print it and exit 2 instead of failing later with a traceback."""

    def __init__(self, name: str, value: str | None, expected: str) -> None:
        shown = f"is {value!r}" if value is not None else "is not valid"
        super().__init__(f"{name} {shown}: expected {expected}.")
        self.setting = name


_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})
_N = TypeVar("_N", int, float)


def _text(e: Mapping[str, str], name: str) -> str | None:
    value = e.get(name)
    return value.strip() if value and value.strip() else None


def _flag(e: Mapping[str, str], name: str, default: bool) -> bool:
    value = _text(e, name)
    if value is None:
        return default
    if value.lower() in _TRUE | _FALSE:
        return value.lower() in _TRUE
    raise SettingError(name, value, f"true or false (also 1/0, yes/no, on/off; default "
                       f"{'true' if default else 'false'})")


def _number(e: Mapping[str, str], name: str, default: _N, *, minimum: _N, unit: str) -> _N:
    """A whole number (when ``default`` is an int) or a finite decimal, at least ``minimum``."""
    value = _text(e, name)
    if value is None:
        return default
    whole = isinstance(default, int)
    expected = (f"{'a whole number' if whole else 'a number'} of {unit}, at least {minimum} "
                f"(default {default})")
    try:
        parsed = type(default)(value)
    except ValueError:
        raise SettingError(name, value, expected) from None
    if not math.isfinite(parsed) or parsed < minimum:
        raise SettingError(name, value, expected)
    return parsed


def _choice(e: Mapping[str, str], name: str, choices: tuple[str, ...],
            default: str | None) -> str | None:
    value = _text(e, name)
    if value is None:
        return default
    if value.lower() not in choices:
        raise SettingError(name, value, f"one of {', '.join(choices)}")
    return value.lower()


def _database_url(e: Mapping[str, str]) -> str | None:
    """Only the form is checked here (reachability is checked when a command connects); the
    value is never echoed, as it may hold a password."""
    value = _text(e, "DATABASE_URL")
    if value is not None and not re.match(r"^postgres(ql)?://", value):
        raise SettingError("DATABASE_URL", None, "a PostgreSQL URL such as "
                           "postgresql://user:password@host:5432/database, or unset for the "
                           "embedded PostgreSQL in FLEETGRAPH_DATA_DIR")
    return value


def _directory(e: Mapping[str, str], name: str, *, must_exist: bool) -> Path | None:
    value = _text(e, name)
    if value is None:
        return None
    path = Path(value)
    if (path.exists() and not path.is_dir()) or (must_exist and not path.exists()):
        raise SettingError(name, value, "a directory" + (" that exists" if must_exist else ""))
    return path


def _origins(e: Mapping[str, str], name: str) -> tuple[str, ...]:
    origins = tuple(o.strip() for o in (e.get(name) or "").split(",") if o.strip())
    for origin in origins:
        if not re.match(r"^https?://[^/\s?#]+$", origin):
            raise SettingError(name, origin, "a comma-separated list of origins such as "
                               "https://ops.example.com,http://localhost:3000 (scheme, host "
                               "and optional port; no path)")
    return origins


PROMETHEUS_SETTING = "FLEETGRAPH_PROMETHEUS"


def _prometheus(e: Mapping[str, str]) -> tuple[bool, tuple[str, int] | None]:
    """``main`` (default: /metrics on the API port), ``off``, or ``[HOST:]PORT`` for a listener
    of its own (a bare port listens on every interface, as a pod's metrics port must)."""
    value = _text(e, PROMETHEUS_SETTING)
    if value is None or value.lower() == "main":
        return True, None
    if value.lower() == "off":
        return False, None
    host, _, port = value.rpartition(":")
    host = host.strip("[]") or "0.0.0.0"
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise SettingError(PROMETHEUS_SETTING, value, "main (serve /metrics on the API port), "
                           "off, or [HOST:]PORT for a metrics listener of its own, such as "
                           "9100 or 127.0.0.1:9100")
    return True, (host, int(port))


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
    # Logging (app.logs): None means the command's own default (json for serve, text else).
    log_format: str | None = None
    log_level: str = "INFO"
    # /metrics (app.metrics): on the API port, off, or on a listener of its own.
    prometheus: bool = True
    prometheus_listen: tuple[str, int] | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Every setting parsed and checked; a wrong one raises :class:`SettingError` (or, for
        the network lists, a ``ValueError`` that names it)."""
        e = os.environ if env is None else env
        prometheus, prometheus_listen = _prometheus(e)
        return cls(
            database_url=_database_url(e),
            data_dir=_directory(e, "FLEETGRAPH_DATA_DIR", must_exist=False) or Path(".fleetgraph"),
            encryption_keys=e.get("BYOK_ENCRYPTION_KEY") or None,
            graphiql=_flag(e, "FLEETGRAPH_GRAPHIQL", True),
            introspection=_flag(e, "FLEETGRAPH_INTROSPECTION", True),
            statement_timeout_ms=_number(e, "FLEETGRAPH_STATEMENT_TIMEOUT_MS", 15_000,
                                         minimum=1, unit="milliseconds"),
            sync_enabled=_flag(e, "FLEETGRAPH_SYNC", True),
            allow_local_clusters=_flag(e, "FLEETGRAPH_ALLOW_LOCAL_CLUSTERS", False),
            cluster_networks_deny=parse_networks(DENY_SETTING, e.get(DENY_SETTING)),
            cluster_networks_allow=parse_networks(ALLOW_SETTING, e.get(ALLOW_SETTING)),
            metrics_interval_s=_number(e, "FLEETGRAPH_METRICS_INTERVAL", 30.0, minimum=1.0,
                                       unit="seconds between metrics.k8s.io samples"),
            metrics_retention_days=_number(e, "FLEETGRAPH_METRICS_RETENTION_DAYS", 90,
                                           minimum=1, unit="days"),
            pod_retention_days=_number(e, "FLEETGRAPH_POD_RETENTION_DAYS", 30, minimum=1,
                                       unit="days"),
            request_read_timeout_s=_number(e, "FLEETGRAPH_REQUEST_READ_TIMEOUT", 30.0,
                                           minimum=0.1, unit="seconds"),
            **{f"query_cost_{role}": _number(
                e, f"FLEETGRAPH_QUERY_COST_LIMIT_{role.upper()}",
                _number(e, "FLEETGRAPH_QUERY_COST_LIMIT", 25_000, minimum=1, unit="cost units"),
                minimum=1, unit="cost units") for role in ("viewer", "operator", "admin")},
            request_deadline_s=_number(e, "FLEETGRAPH_REQUEST_DEADLINE", 30.0, minimum=0.1,
                                       unit="seconds"),
            cors_origins=_origins(e, "FLEETGRAPH_CORS_ORIGINS"),
            graphiql_assets_dir=_directory(e, "FLEETGRAPH_GRAPHIQL_ASSETS", must_exist=True),
            log_format=_choice(e, "FLEETGRAPH_LOG_FORMAT", LOG_FORMATS, None),
            log_level=(_choice(e, "FLEETGRAPH_LOG_LEVEL",
                               tuple(level.lower() for level in LOG_LEVELS), "info")
                       or "info").upper(),
            prometheus=prometheus,
            prometheus_listen=prometheus_listen,
        )

    @property
    def query_cost_limits(self) -> dict[str, int]:
        return {"viewer": self.query_cost_viewer, "operator": self.query_cost_operator,
                "admin": self.query_cost_admin}

    def with_(self, **changes: object) -> Settings:
        """A copy with some fields changed (tests and the CLI flags use this)."""
        return replace(self, **changes)  # type: ignore[arg-type]
