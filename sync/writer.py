"""Bulk writes: a batch of changes for one cluster becomes one transaction and one NOTIFY.

Row-at-a-time upserts cost a round trip each; a large cluster lists tens of thousands of pods
and churns hundreds a second. So every flush COPYs its rows into a temporary table and moves
them with one ``INSERT … SELECT … ON CONFLICT … DO UPDATE … WHERE (…) IS DISTINCT FROM (…)``
per table. The ``WHERE`` makes a no-op relist cost reads, not writes: unchanged rows are not
touched (no dead tuples, no WAL), and the statement's row count says which kinds changed,
which is what the coalesced NOTIFY names.

``resource_version`` is deliberately not compared: an object whose only change is a new
version (a kubelet heartbeat) is not a change anyone can see.

Objects never disappear from the tables: a DELETED event, or absence from a relist's
snapshot, sets ``deleted_at``.

One object never stops a cluster: every value is fitted to its column before it is copied
(:mod:`sync.columns`: sums past int64 clamped, times before year 1 in UTC nulled, NULs dropped,
text too long for its index nulled), and each object that needed it is logged by kind,
namespace and name and counted in :attr:`ClusterWriter.stats`. An object whose identity cannot
be stored (a 10 KB name) is skipped, and counted too.

Resource quotas and Helm revisions are folded (quotas summed into their namespace; the newest
revision is the release) from small in-memory stores that are swapped in only after the
transaction commits, so a failed flush can be retried as is.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg

from app.vault import Vault
from sync.collector import collector_paused
from sync.columns import Adjustment, Column, FitStats, RowFitter, Unstorable, load_columns
from sync.health import update_cluster_health, update_deployment_health
from sync.helm import HelmRevision, values_aad
from sync.mappers import QuotaRow, Row
from sync.notify import notify_changes
from sync.quantity import exact_sum

__all__ = [
    "HELM",
    "QUOTAS",
    "TABLES",
    "TABLE_KINDS",
    "UNCHANGED",
    "Batch",
    "ClusterWriter",
    "FitStats",
    "FlushResult",
    "OomLedger",
    "TableSpec",
]

log = logging.getLogger(__name__)

QUOTAS = "resourcequotas"
HELM = "helmreleases"


@dataclass(frozen=True, slots=True)
class TableSpec:
    """How one kind's rows land in its table."""

    kind: str
    table: str
    columns: tuple[str, ...]
    conflict: tuple[str, ...] = ("cluster_id", "uid")
    # Columns written but not compared (see the module docstring).
    uncompared: tuple[str, ...] = ("resource_version",)
    # SQL expressions replacing a plain ``s.<column>`` in the SELECT (aliases: s = stage).
    select: tuple[tuple[str, str], ...] = ()
    join: str = ""
    object_kind: str = ""  # the Kubernetes kind, for log lines

    @property
    def stage(self) -> str:
        return f"fg_stage_{self.table}"

    @property
    def stage_columns(self) -> tuple[str, ...]:
        return (*self.columns, "deleted_at")


_COMMON = ("uid", "name", "resource_version", "created_at")

TABLES: dict[str, TableSpec] = {
    spec.kind: spec
    for spec in (
        TableSpec(
            kind="namespaces",
            table="k8s_namespaces",
            object_kind="Namespace",
            columns=(*_COMMON, "phase", "labels", "annotations", "team", "cost_center"),
        ),
        TableSpec(
            kind="nodes",
            table="k8s_nodes",
            object_kind="Node",
            columns=(
                *_COMMON, "labels", "taints", "conditions", "ready", "unschedulable",
                "instance_type", "zone", "kubelet_version", "capacity_cpu_cores",
                "capacity_memory_bytes", "capacity_pods", "capacity_ephemeral_storage_bytes",
                "allocatable_cpu_cores", "allocatable_memory_bytes", "allocatable_pods",
                "allocatable_ephemeral_storage_bytes",
            ),
        ),
        TableSpec(
            kind="replicasets",
            table="k8s_replicasets",
            object_kind="ReplicaSet",
            columns=(
                *_COMMON, "namespace", "deployment_name", "deployment_uid",
                "replicas_desired", "replicas_ready",
            ),
        ),
        TableSpec(
            kind="deployments",
            table="k8s_deployments",
            object_kind="Deployment",
            columns=(
                *_COMMON, "namespace", "labels", "annotations", "selector",
                "replicas_desired", "replicas_ready", "replicas_available", "replicas_updated",
                "replicas_unavailable", "strategy", "strategy_params", "containers",
                "conditions", "generation", "observed_generation",
            ),
        ),
        TableSpec(
            kind="pods",
            table="k8s_pods",
            object_kind="Pod",
            columns=(
                *_COMMON, "namespace", "node_name", "owner_kind", "owner_name",
                "deployment_name", "labels", "phase", "reason", "qos_class", "pod_ip",
                "requests_cpu_cores", "requests_memory_bytes", "limits_cpu_cores",
                "limits_memory_bytes", "containers", "restart_count", "oom_kill_count",
                "last_oom_killed_at", "ready", "start_time", "deletion_timestamp",
            ),
            # k8s_pods is partitioned by created_at, so it is part of every unique key.
            conflict=("cluster_id", "uid", "created_at"),
            # Pod -> ReplicaSet -> Deployment: the ReplicaSet row is the truth when we have it.
            select=(("deployment_name", "COALESCE(rs.deployment_name, s.deployment_name)"),),
            join="""LEFT JOIN LATERAL (
                        SELECT r.deployment_name FROM k8s_replicasets r
                         WHERE r.cluster_id = $1 AND r.namespace = s.namespace
                           AND r.name = s.owner_name AND s.owner_kind = 'ReplicaSet'
                         ORDER BY r.deleted_at IS NULL DESC, r.created_at DESC LIMIT 1
                    ) rs ON true""",
        ),
    )
}
# Storage, for cost (sync/storage_mappers.py): claims and the volumes they bind.
TABLES.update((spec.kind, spec) for spec in (
    TableSpec(
        kind="persistentvolumeclaims",
        table="k8s_persistent_volume_claims",
        object_kind="PersistentVolumeClaim",
        columns=(*_COMMON, "namespace", "labels", "storage_class", "volume_name", "phase",
                 "access_modes", "requests_storage_bytes", "capacity_bytes"),
    ),
    TableSpec(
        kind="persistentvolumes",
        table="k8s_persistent_volumes",
        object_kind="PersistentVolume",
        columns=(*_COMMON, "labels", "storage_class", "capacity_bytes", "phase",
                 "reclaim_policy", "claim_namespace", "claim_name", "claim_uid", "csi_driver"),
    ),
))
# Order matters inside a flush: namespaces before quotas, ReplicaSets before pods.
TABLE_KINDS = tuple(TABLES)
ALL_KINDS = (*TABLE_KINDS, QUOTAS, HELM)


class _Unchanged:
    """The type of :data:`UNCHANGED` (one instance; its repr says what it means)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "UNCHANGED"


# A snapshot's value for an object the informer already handed over at the same
# resourceVersion: it is still there, and its row is whatever was last written for it. A
# resourceVersion changes with every write to an object, so the same version is the same
# object and would map to the same row: a relist of an unchanged cluster maps nothing and
# writes nothing; only the deletion of what the snapshot lacks is still checked.
UNCHANGED: Any = _Unchanged()


def _merge_unchanged(older: dict[str, Any], newer: dict[str, Any]) -> dict[str, Any]:
    """``newer`` (a snapshot) on top of ``older``: an UNCHANGED in ``newer`` keeps the real
    value ``older`` still holds for that uid (it was handed over but not written yet)."""
    if not older:
        return newer
    merged = dict(newer)
    for uid, value in newer.items():
        if value is UNCHANGED:
            pending = older.get(uid, UNCHANGED)
            if pending is not UNCHANGED:
                merged[uid] = pending
    return merged


@dataclass
class Batch:
    """Pending changes of one cluster, keyed by kind then uid; the newest state wins.

    A *snapshot* (a relist) replaces everything pending for its kind, and tells the flush to
    mark deleted whatever of that kind is not in it. Its values may be :data:`UNCHANGED`,
    which never replaces a value still pending for the same uid.
    """

    items: dict[str, dict[str, Any]] = field(default_factory=dict)
    snapshots: set[str] = field(default_factory=set)

    def put(self, kind: str, uid: str, value: Any) -> None:
        self.items.setdefault(kind, {})[uid] = value

    def put_many(self, kind: str, values: Mapping[str, Any]) -> None:
        self.items.setdefault(kind, {}).update(values)

    def replace(self, kind: str, values: dict[str, Any]) -> None:
        self.items[kind] = _merge_unchanged(self.items.get(kind, {}), values)
        self.snapshots.add(kind)

    def absorb(self, newer: Batch) -> None:
        """Fold a newer batch on top of this one (used when a flush must be retried)."""
        for kind, values in newer.items.items():
            if kind in newer.snapshots:
                self.items[kind] = _merge_unchanged(self.items.get(kind, {}), values)
                self.snapshots.add(kind)
            else:
                self.items.setdefault(kind, {}).update(values)

    def __len__(self) -> int:
        return sum(len(v) for v in self.items.values())

    def __bool__(self) -> bool:
        return bool(self.items)


class OomLedger:
    """Turns what a Pod shows (``lastState.terminated.reason == "OOMKilled"`` at some time)
    into a count: the API keeps only the *last* termination per container, so each new
    OOM termination time seen for a container adds one. Only pods that were ever OOM-killed
    are remembered, and the ledger is reloaded from ``k8s_pods.containers`` on start."""

    def __init__(self) -> None:
        self._seen: dict[str, dict[str, tuple[int, str | None]]] = {}

    async def load(self, conn: asyncpg.Connection, cluster_id: uuid.UUID) -> None:
        rows = await conn.fetch(
            "SELECT uid, containers FROM k8s_pods WHERE cluster_id = $1"
            " AND deleted_at IS NULL AND oom_kill_count > 0",
            cluster_id,
        )
        self._seen = {
            r["uid"]: {
                str(c.get("name")): (int(c.get("oomKills") or 0), c.get("lastOOMKill"))
                for c in r["containers"] or []
                if isinstance(c, dict)
            }
            for r in rows
        }

    def apply(self, row: Row) -> Row:
        uid = row["uid"]
        known = self._seen.get(uid, {})
        containers = []
        ledger: dict[str, tuple[int, str | None]] = {}
        for container in row["containers"]:
            name = str(container.get("name"))
            seen = container.get("lastOOMKill")
            count, last = known.get(name, (0, None))
            if seen and seen != last:
                count, last = count + 1, seen
            if count:
                ledger[name] = (count, last)
            containers.append({**container, "oomKills": count})
        if ledger:
            self._seen[uid] = ledger
        row["containers"] = containers
        row["oom_kill_count"] = sum(c["oomKills"] for c in containers)
        return row

    def forget(self, uid: str) -> None:
        self._seen.pop(uid, None)


@dataclass(frozen=True, slots=True)
class FlushResult:
    kinds: frozenset[str]
    rows: int
    health_changed: bool
    health_status: str | None


JSON_COLUMNS = frozenset(
    {"labels", "annotations", "taints", "conditions", "selector", "strategy_params", "containers"}
)


NAMESPACES_TABLE = "k8s_namespaces"
HELM_TABLE = "k8s_helm_releases"
_QUOTA_COLUMNS = (
    "quota_hard_cpu_cores", "quota_hard_memory_bytes", "quota_hard_pods",
    "quota_used_cpu_cores", "quota_used_memory_bytes", "quota_used_pods",
)
_HELM_COLUMNS = (
    "namespace", "name", "revision", "chart_name", "chart_version", "app_version", "status",
    "description", "first_deployed_at", "last_deployed_at", "storage_secret",
)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _where(kind: str, namespace: object, name: object) -> str:
    """``Kind namespace/name`` for a log line, cut short: the odd value may be the name."""
    parts = [_CONTROL.sub("?", str(p))[:253] for p in (namespace, name) if p]
    return f"{kind} {'/'.join(parts) or '?'}"


def _count(status: str) -> int:
    """Rows affected, from a command tag such as ``INSERT 0 12`` or ``UPDATE 3``."""
    try:
        return int(status.rsplit(" ", 1)[-1])
    except ValueError:
        return 0


class ClusterWriter:
    """Writes one cluster's batches. Not safe for concurrent flushes (one flusher owns it)."""

    def __init__(
        self,
        *,
        pool: asyncpg.Pool,
        vault: Vault,
        cluster_id: uuid.UUID,
        organization_id: uuid.UUID,
    ) -> None:
        self._pool = pool
        self._vault = vault
        self.cluster_id = cluster_id
        self.organization_id = organization_id
        self._quotas: dict[str, QuotaRow] = {}
        self._helm: dict[str, HelmRevision] = {}
        # What had to change for objects to fit their columns, since this writer started;
        # a flush's own counts join it once its transaction has committed.
        self.stats = FitStats()
        self._fitting = FitStats()
        self._columns: dict[str, dict[str, Column]] = {}
        # Flushes and the metrics job both update k8s_pods rows; taking turns here keeps them
        # from deadlocking on each other's row locks.
        self.lock = asyncio.Lock()

    async def flush(
        self,
        batch: Batch,
        *,
        extra_kinds: Iterable[str] = (),
        assess: bool = False,
        health: bool = True,
    ) -> FlushResult:
        """Write ``batch`` in one transaction, recompute health, send one NOTIFY.

        ``extra_kinds`` names changes already written by someone else (the metrics job, a
        status update) so they share this flush's notification; ``assess`` recomputes
        health even when nothing changed (time-based signals, reachability).
        """
        changed: set[str] = set(extra_kinds)
        rows = 0
        quotas, helm = self._quotas, self._helm
        async with self.lock, self._pool.acquire() as conn, conn.transaction():
            self._fitting = FitStats()
            if not self._columns:
                self._columns = await load_columns(
                    conn, [*(t.table for t in TABLES.values()), NAMESPACES_TABLE, HELM_TABLE]
                )
            for kind in TABLE_KINDS:
                values = batch.items.get(kind)
                if values is None:
                    continue
                written = [v for v in values.values() if v is not UNCHANGED]
                count = await self._upsert(
                    conn, TABLES[kind], written,
                    listed=list(values) if kind in batch.snapshots else None,
                )
                rows += count
                if count:
                    changed.add(kind)
                if kind == "replicasets" and written and await self._relink_pods(conn):
                    changed.add("pods")
            touched_namespaces = {
                r["name"] for r in batch.items.get("namespaces", {}).values()
                if r is not UNCHANGED
            }
            if QUOTAS in batch.items or touched_namespaces:
                quotas, count = await self._write_quotas(conn, batch, touched_namespaces)
                rows += count
                if count:
                    changed.add(QUOTAS)
            if HELM in batch.items:
                helm, count = await self._write_helm(conn, batch)
                rows += count
                if count:
                    changed.add(HELM)
            health_changed, health_status = False, None
            if assess or (changed and health):
                await update_deployment_health(conn, self.cluster_id)
                report, health_changed = await update_cluster_health(conn, self.cluster_id)
                health_status = report.status.value
            await conn.execute(
                "UPDATE k8s_clusters SET last_synced_at = now() WHERE id = $1"
                " AND status = 'active'",
                self.cluster_id,
            )
            if changed or health_changed:
                await notify_changes(
                    conn,
                    cluster_id=self.cluster_id,
                    organization_id=self.organization_id,
                    kinds=changed,
                    health_changed=health_changed,
                    health_status=health_status,
                )
        self._quotas, self._helm = quotas, helm
        self.stats.add(self._fitting)
        return FlushResult(frozenset(changed), rows, health_changed, health_status)

    # --- fitting values to columns -----------------------------------------------------

    def _note(self, where: str, adjustments: Sequence[Adjustment]) -> None:
        self._fitting.count(adjustments)
        log.warning("cluster %s: %s stored with %s", self.cluster_id, where,
                    "; ".join(map(str, adjustments)))

    def _fitted(
        self, table: str, names: Sequence[str], rows: Iterable[Mapping[str, Any]], kind: str
    ) -> list[tuple[Any, ...]]:
        """The COPY records of ``rows``, each value fitted to its column; an object that
        cannot be stored at all is left out (and logged, and counted)."""
        fitter = RowFitter(self._columns.get(table, {}), names)
        with collector_paused():  # records are trees of plain values: see sync.collector
            return self._fit_all(fitter, rows, kind)

    def _fit_all(
        self, fitter: RowFitter, rows: Iterable[Mapping[str, Any]], kind: str
    ) -> list[tuple[Any, ...]]:
        records = []
        for row in rows:
            try:
                record, adjustments = fitter.fit(row)
            except Unstorable as exc:
                self._fitting.objects_skipped += 1
                log.warning("cluster %s: %s not written: %s", self.cluster_id,
                            _where(kind, row.get("namespace"), row.get("name")), exc)
                continue
            if adjustments:
                self._note(_where(kind, row.get("namespace"), row.get("name")), adjustments)
            records.append(record)
        return records

    # --- tables ----------------------------------------------------------------------

    async def _stage(
        self, conn: asyncpg.Connection, spec: TableSpec, rows: Sequence[Row]
    ) -> None:
        columns = spec.stage_columns
        # jsonb travels as text: COPY is binary and the pool's jsonb codec is a text codec;
        # orjson serializes faster than the server would parse a binary jsonb anyway (the
        # fitting encodes it).
        shape = ", ".join(f"{c}::text AS {c}" if c in JSON_COLUMNS else c for c in columns)
        await conn.execute(
            f"CREATE TEMP TABLE IF NOT EXISTS {spec.stage} ON COMMIT DELETE ROWS AS "
            f"SELECT {shape} FROM {spec.table} WITH NO DATA"
        )
        await conn.copy_records_to_table(
            spec.stage,
            records=self._fitted(spec.table, columns, rows, spec.object_kind),
            columns=columns,
        )

    async def _upsert(
        self,
        conn: asyncpg.Connection,
        spec: TableSpec,
        rows: Sequence[Row],
        *,
        listed: Sequence[str] | None = None,
    ) -> int:
        """Write ``rows``; for a snapshot, ``listed`` holds every uid the relist saw (the
        rows to write and the UNCHANGED ones), and every other live row is marked deleted."""
        changed = await self._insert(conn, spec, rows) if rows else 0
        if listed is not None:
            # After a relist, whatever the snapshot does not hold left the cluster while we
            # were not watching: mark it deleted (never erase it). An anti-join on the listed
            # uids (hashed), not the staging table: unchanged objects are not staged at all.
            changed += _count(
                await conn.execute(
                    f"""
                    UPDATE {spec.table} t SET deleted_at = now(), synced_at = now()
                     WHERE t.cluster_id = $1 AND t.deleted_at IS NULL
                       AND NOT EXISTS (SELECT 1 FROM unnest($2::text[]) AS l(uid)
                                        WHERE l.uid = t.uid)
                    """,
                    self.cluster_id,
                    listed,
                )
            )
        return changed

    async def _insert(self, conn: asyncpg.Connection, spec: TableSpec, rows: Sequence[Row]) -> int:
        await self._stage(conn, spec, rows)
        overrides = dict(spec.select)
        columns = spec.columns
        select = ", ".join(
            overrides.get(c, f"s.{c}::jsonb" if c in JSON_COLUMNS else f"s.{c}") for c in columns
        )
        compared = [c for c in columns if c not in spec.conflict and c not in spec.uncompared]
        updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in columns if c not in spec.conflict)
        changed = _count(
            await conn.execute(
                f"""
                INSERT INTO {spec.table} AS t (cluster_id, {", ".join(columns)}, deleted_at)
                SELECT $1, {select}, s.deleted_at FROM {spec.stage} s {spec.join}
                ON CONFLICT ({", ".join(spec.conflict)}) DO UPDATE SET {updates},
                    deleted_at = CASE WHEN EXCLUDED.deleted_at IS NULL THEN NULL
                                      ELSE COALESCE(t.deleted_at, EXCLUDED.deleted_at) END,
                    synced_at = now()
                WHERE ({", ".join(f"t.{c}" for c in compared)}, t.deleted_at IS NULL)
                      IS DISTINCT FROM
                      ({", ".join(f"EXCLUDED.{c}" for c in compared)},
                       EXCLUDED.deleted_at IS NULL)
                """,
                self.cluster_id,
            )
        )
        return changed

    async def _relink_pods(self, conn: asyncpg.Connection) -> int:
        """Pods stored before their ReplicaSet get its Deployment now."""
        return _count(
            await conn.execute(
                """
                UPDATE k8s_pods p SET deployment_name = s.deployment_name, synced_at = now()
                  FROM fg_stage_k8s_replicasets s
                 WHERE p.cluster_id = $1 AND p.deleted_at IS NULL
                   AND p.owner_kind = 'ReplicaSet' AND p.namespace = s.namespace
                   AND p.owner_name = s.name AND s.deleted_at IS NULL
                   AND s.deployment_name IS NOT NULL
                   AND p.deployment_name IS DISTINCT FROM s.deployment_name
                """,
                self.cluster_id,
            )
        )

    # --- resource quotas -------------------------------------------------------------

    async def _write_quotas(
        self, conn: asyncpg.Connection, batch: Batch, touched: set[str]
    ) -> tuple[dict[str, QuotaRow], int]:
        quotas = dict(self._quotas)
        values = batch.items.get(QUOTAS, {})
        affected = set(touched)
        snapshot = QUOTAS in batch.snapshots
        kept: dict[str, QuotaRow] = {}
        if snapshot:
            kept = {uid: q for uid, q in quotas.items() if values.get(uid) is UNCHANGED}
            affected |= {q.namespace for uid, q in quotas.items() if uid not in kept}
            quotas = kept
        for uid, quota in values.items():
            if quota is UNCHANGED:
                continue
            old = quotas.pop(uid, None)
            if old is not None:
                affected.add(old.namespace)
            if quota is not None:
                quotas[uid] = quota
                affected.add(quota.namespace)
        sums: dict[str, list[Any]] = {}
        for quota in quotas.values():
            if quota.namespace not in affected:
                continue
            total = sums.setdefault(quota.namespace, [None] * 6)
            for i, value in enumerate(
                (
                    quota.hard_cpu_cores, quota.hard_memory_bytes, quota.hard_pods,
                    quota.used_cpu_cores, quota.used_memory_bytes, quota.used_pods,
                )
            ):
                if value is not None:
                    total[i] = value if total[i] is None else exact_sum((total[i], value))
        # A snapshot of new quotas is compared with every namespace (stale sums from before
        # this writer started are cleared); one that only confirms what this writer wrote
        # (UNCHANGED) touches just the namespaces whose quotas changed, if any.
        everywhere = snapshot and not kept
        names = sorted(affected)
        if not names and not everywhere:
            return quotas, 0
        fitted = dict(zip(names, self._fitted(
            NAMESPACES_TABLE, _QUOTA_COLUMNS,
            (dict(zip(_QUOTA_COLUMNS, sums.get(n, [None] * 6), strict=True), name=n)
             for n in names),
            "ResourceQuota totals of Namespace",
        ), strict=True))
        columns = [[fitted[n][i] for n in names] for i in range(6)]
        status = await conn.execute(
            """
            UPDATE k8s_namespaces n
               SET quota_hard_cpu_cores = v.hc, quota_hard_memory_bytes = v.hm,
                   quota_hard_pods = v.hp, quota_used_cpu_cores = v.uc,
                   quota_used_memory_bytes = v.um, quota_used_pods = v.up, synced_at = now()
              FROM (SELECT n2.id, q.hc, q.hm, q.hp, q.uc, q.um, q.up
                      FROM k8s_namespaces n2
                      LEFT JOIN unnest($2::text[], $3::numeric[], $4::bigint[], $5::int[],
                                       $6::numeric[], $7::bigint[], $8::int[])
                                AS q(name, hc, hm, hp, uc, um, up) ON q.name = n2.name
                     WHERE n2.cluster_id = $1 AND n2.deleted_at IS NULL
                       AND ($9 OR n2.name = ANY($2::text[]))) v
             WHERE n.id = v.id
               AND (n.quota_hard_cpu_cores, n.quota_hard_memory_bytes, n.quota_hard_pods,
                    n.quota_used_cpu_cores, n.quota_used_memory_bytes, n.quota_used_pods)
                   IS DISTINCT FROM (v.hc, v.hm, v.hp, v.uc, v.um, v.up)
            """,
            self.cluster_id,
            names,
            *columns,
            everywhere,
        )
        return quotas, _count(status)

    # --- helm ------------------------------------------------------------------------

    async def _write_helm(
        self, conn: asyncpg.Connection, batch: Batch
    ) -> tuple[dict[str, HelmRevision], int]:
        helm = dict(self._helm)
        values = {uid: self._fit_revision(r) for uid, r in batch.items.get(HELM, {}).items()}
        affected: set[tuple[str, str]] = set()
        snapshot = HELM in batch.snapshots
        kept: dict[str, HelmRevision] = {}
        if snapshot:
            kept = {uid: r for uid, r in helm.items() if values.get(uid) is UNCHANGED}
            affected |= {(r.namespace, r.name) for uid, r in helm.items() if uid not in kept}
            helm = kept
        for uid, revision in values.items():
            if revision is UNCHANGED:
                continue
            old = helm.pop(uid, None)
            if old is not None:
                affected.add((old.namespace, old.name))
            if revision is not None:
                helm[uid] = revision
                affected.add((revision.namespace, revision.name))
        latest: dict[tuple[str, str], HelmRevision] = {}
        for revision in helm.values():
            key = (revision.namespace, revision.name)
            if key in affected and (key not in latest or revision.revision > latest[key].revision):
                latest[key] = revision
        changed = 0
        if latest:
            changed += await self._upsert_releases(conn, list(latest.values()))
        gone = sorted(affected - latest.keys())
        # As with quotas: a snapshot of new revisions is compared with every stored release;
        # one that confirms what this writer wrote only deletes the releases that went.
        everywhere = snapshot and not kept
        if gone or everywhere:
            live = sorted({(r.namespace, r.name) for r in helm.values()}) if everywhere else []
            changed += _count(
                await conn.execute(
                    """
                    UPDATE k8s_helm_releases h SET deleted_at = now(), synced_at = now()
                     WHERE h.cluster_id = $1 AND h.deleted_at IS NULL
                       AND (($2 AND (h.namespace, h.name) NOT IN (
                                SELECT * FROM unnest($5::text[], $6::text[])))
                            OR (h.namespace, h.name) IN (
                                SELECT * FROM unnest($3::text[], $4::text[])))
                    """,
                    self.cluster_id,
                    everywhere,
                    [k[0] for k in gone],
                    [k[1] for k in gone],
                    [k[0] for k in live],
                    [k[1] for k in live],
                )
            )
        return helm, changed

    def _fit_revision(self, revision: HelmRevision | None) -> HelmRevision | None:
        """The revision with every column value fitted; None (as if its secret were gone)
        when its namespace or name cannot be stored."""
        if revision is None or revision is UNCHANGED:
            return revision
        row = {"storage_secret": revision.secret_name,
               **{c: getattr(revision, c) for c in _HELM_COLUMNS if c != "storage_secret"}}
        records = self._fitted(HELM_TABLE, _HELM_COLUMNS, [row], "Helm release")
        if not records:
            return None
        fitted = dict(zip(_HELM_COLUMNS, records[0], strict=True))
        secret_name = fitted.pop("storage_secret")
        return dataclasses.replace(revision, secret_name=secret_name, **fitted)

    async def _upsert_releases(
        self, conn: asyncpg.Connection, releases: Sequence[HelmRevision]
    ) -> int:
        sealed = [
            self._vault.encrypt(r.values_json, aad=values_aad(self.cluster_id, r.namespace, r.name))
            if r.values_json is not None
            else None
            for r in releases
        ]
        columns: list[list[Any]] = [
            [r.namespace for r in releases],
            [r.name for r in releases],
            [r.revision for r in releases],
            [r.chart_name for r in releases],
            [r.chart_version for r in releases],
            [r.app_version for r in releases],
            [r.status for r in releases],
            [r.description for r in releases],
            [r.first_deployed_at for r in releases],
            [r.last_deployed_at for r in releases],
            [s.ciphertext if s else None for s in sealed],
            [s.key_id if s else None for s in sealed],
            [r.secret_name for r in releases],
        ]
        status = await conn.execute(
            """
            INSERT INTO k8s_helm_releases AS t (
                cluster_id, namespace, name, revision, chart_name, chart_version, app_version,
                status, description, first_deployed_at, last_deployed_at, values_encrypted,
                values_key_id, storage_secret)
            SELECT $1, * FROM unnest($2::text[], $3::text[], $4::int[], $5::text[], $6::text[],
                                     $7::text[], $8::text[], $9::text[], $10::timestamptz[],
                                     $11::timestamptz[], $12::bytea[], $13::text[], $14::text[])
            ON CONFLICT (cluster_id, namespace, name) DO UPDATE SET
                revision = EXCLUDED.revision, chart_name = EXCLUDED.chart_name,
                chart_version = EXCLUDED.chart_version, app_version = EXCLUDED.app_version,
                status = EXCLUDED.status, description = EXCLUDED.description,
                first_deployed_at = EXCLUDED.first_deployed_at,
                last_deployed_at = EXCLUDED.last_deployed_at,
                values_encrypted = EXCLUDED.values_encrypted,
                values_key_id = EXCLUDED.values_key_id,
                storage_secret = EXCLUDED.storage_secret,
                deleted_at = NULL, synced_at = now()
            -- values are re-sealed with a fresh nonce each time, so they are not compared:
            -- a revision's values never change, a new revision changes the revision column.
            WHERE (t.revision, t.chart_name, t.chart_version, t.app_version, t.status,
                   t.description, t.first_deployed_at, t.last_deployed_at, t.storage_secret,
                   t.deleted_at IS NULL)
                  IS DISTINCT FROM
                  (EXCLUDED.revision, EXCLUDED.chart_name, EXCLUDED.chart_version,
                   EXCLUDED.app_version, EXCLUDED.status, EXCLUDED.description,
                   EXCLUDED.first_deployed_at, EXCLUDED.last_deployed_at,
                   EXCLUDED.storage_secret, true)
            """,
            self.cluster_id,
            *columns,
        )
        return _count(status)


def now_utc() -> datetime:
    return datetime.now(UTC)
