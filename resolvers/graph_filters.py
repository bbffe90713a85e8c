"""Filters on inventory lists, turned into SQL clauses (filtering never happens in Python).

The arguments are frozen and hashable because they are part of a dataloader's identity: two
connections with different filters must never share a batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from resolvers.graph_sql import Entity
from resolvers.label_selector import label_selector_sql
from resolvers.sql import Params


@dataclass(frozen=True)
class InventoryFilterArgs:
    """Every field applies only where the entity has the column (see ``filter_clauses``)."""

    label_selector: str | None = None
    search: str | None = None
    namespace: tuple[str, ...] | None = None
    team: tuple[str, ...] | None = None
    cost_center: tuple[str, ...] | None = None
    include_deleted: bool = False
    status: tuple[str, ...] | None = None  # namespace phase, deployment health, helm status
    ready: bool | None = None  # nodes
    phase: tuple[str, ...] | None = None  # pods
    node: str | None = None
    deployment: str | None = None
    restarts_greater_than: int | None = None
    oom_killed_since: datetime | None = None


_STATUS_COLUMN = {"Namespace": "phase", "Deployment": "health_status", "HelmRelease": "status"}


def like_pattern(text: str) -> str:
    """``%text%`` with LIKE's wildcards escaped, so a search for ``a_b`` means exactly that."""
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _ownership_clauses(e: Entity, f: InventoryFilterArgs, params: Params) -> list[str]:
    """Team and cost center live on the namespace; other kinds inherit them from theirs."""
    a = e.alias
    pairs = [("team", f.team), ("cost_center", f.cost_center)]
    wanted = [(column, values) for column, values in pairs if values]
    if not wanted:
        return []
    if e.type_name == "Namespace":
        return [f"{a}.{col} = ANY({params.add(list(vals))}::text[])" for col, vals in wanted]
    tests = " AND ".join(f"o.{col} = ANY({params.add(list(vals))}::text[])" for col, vals in wanted)
    return [f"EXISTS (SELECT 1 FROM k8s_namespaces o WHERE o.cluster_id = {a}.cluster_id "
            f"AND o.name = {a}.namespace AND o.deleted_at IS NULL AND {tests})"]


def _pod_clauses(f: InventoryFilterArgs, params: Params) -> list[str]:
    clauses = []
    if f.phase:
        clauses.append(f"p.phase = ANY({params.add(list(f.phase))}::text[])")
    if f.node is not None:
        clauses.append(f"p.node_name = {params.add(f.node)}")
    if f.deployment is not None:
        clauses.append(f"p.deployment_name = {params.add(f.deployment)}")
    if f.restarts_greater_than is not None:
        clauses.append(f"p.restart_count > {params.add(f.restarts_greater_than)}")
    if f.oom_killed_since is not None:
        clauses.append(f"p.last_oom_killed_at >= {params.add(f.oom_killed_since)}")
    return clauses


def filter_clauses(e: Entity, f: InventoryFilterArgs | None, params: Params) -> list[str]:
    """SQL clauses (to be ANDed) for ``f`` on ``e``; deleted rows are out unless asked for."""
    f = f or InventoryFilterArgs()
    a = e.alias
    clauses = [] if f.include_deleted else [f"{a}.deleted_at IS NULL"]
    if f.label_selector and e.type_name != "HelmRelease":
        clauses += label_selector_sql(f.label_selector, f"{a}.labels", params,
                                      field="filter.labelSelector")
    if f.search:
        clauses.append(f"{a}.name ILIKE {params.add(like_pattern(f.search))}")
    if f.namespace and e.namespaced:
        clauses.append(f"{a}.namespace = ANY({params.add(list(f.namespace))}::text[])")
    if f.status and e.type_name in _STATUS_COLUMN:
        column = _STATUS_COLUMN[e.type_name]
        clauses.append(f"{a}.{column} = ANY({params.add(list(f.status))}::text[])")
    if f.ready is not None and e.type_name == "ClusterNode":
        clauses.append(f"{a}.ready = {params.add(f.ready)}")
    if e.type_name == "Pod":
        clauses += _pod_clauses(f, params)
    return clauses + _ownership_clauses(e, f, params)
