"""Price sheets: provider defaults, the on-prem sheet, and each cluster's price history.

A cost figure is only trusted when one can say where its price came from, so every default
below names its public source, and every change a cluster's prices go through is appended to
``k8s_cluster_prices`` with the moment it takes effect. An hour is priced with the sheet in
effect at the hour's start: a change made at 14:20 applies from the 15:00 hour on, and an hour
that is recomputed later keeps the price of its own time.

Resolution order for one cluster and hour:

1. the latest ``k8s_cluster_prices`` row with ``effective_from <= hour``;
2. if the cluster has no history at all, its ``k8s_clusters.price_*`` columns (each one that is
   set), the rest from
3. the provider default (k3s and vanilla use the on-prem sheet).

The first change also pins the sheet that applied before it (from the epoch), so hours before
the first change keep their price too.

Two kinds of override have the same history semantics: an hourly price per node instance type
(``k8s_instance_type_prices``, used before capacity times prices) and a GiB-hour price per
storage class (``k8s_storage_class_prices``, used for a claim's volume before the sheet's
storage price).
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg

PROVIDERS = ("eks", "gke", "aks", "k3s", "vanilla")
ONPREM_PRICING_ENV = "FLEETGRAPH_ONPREM_PRICING"
# Where the pre-history sheet is pinned on a cluster's first price change.
BASELINE_FROM = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class PriceSheet:
    """Unit prices in ``currency``: per core-hour, GiB-hour of memory and storage, GiB sent."""

    cpu_core_hour: Decimal
    memory_gib_hour: Decimal
    storage_gib_hour: Decimal
    network_gib: Decimal
    currency: str = "USD"
    source: str = "default"


# OpenCost's ``configs/default.json`` ("Default prices based on GCP us-central1"), the sheet
# OpenCost itself uses for custom / on-prem clusters: CPU 0.031611 /core-hour, RAM 0.004237
# /GiB-hour, storage 0.00005479452 /GiB-hour (= 0.04 /GiB-month over 730 h), zone and region
# network egress 0.01 /GiB.
OPENCOST_DEFAULT = PriceSheet(
    cpu_core_hour=Decimal("0.031611"),
    memory_gib_hour=Decimal("0.004237"),
    storage_gib_hour=Decimal("0.00005479"),
    network_gib=Decimal("0.01"),
    source="opencost-default",
)

# Network is charged on a pod's transmitted bytes; pod counters cannot tell internet egress
# from in-cluster traffic, so every provider uses its inter-zone transfer list price (AWS,
# GCP and Azure all list 0.01 /GiB between zones), which is also OpenCost's zone egress default.
PROVIDER_DEFAULTS: dict[str, PriceSheet] = {
    # AWS Fargate on-demand list price, us-east-1 (the per-vCPU / per-GB figure AWS publishes
    # for EKS pods): 0.04048 /vCPU-hour, 0.004445 /GB-hour; storage: EBS gp3 0.08 /GB-month
    # over 730 h = 0.00010959 /GiB-hour.
    "eks": PriceSheet(
        cpu_core_hour=Decimal("0.04048"),
        memory_gib_hour=Decimal("0.004445"),
        storage_gib_hour=Decimal("0.00010959"),
        network_gib=Decimal("0.01"),
        source="eks-fargate-us-east-1",
    ),
    # GKE Autopilot general-purpose pod list price, us-central1: 0.0445 /vCPU-hour,
    # 0.0049225 /GiB-hour, ephemeral storage 0.0000548 /GiB-hour.
    "gke": PriceSheet(
        cpu_core_hour=Decimal("0.0445"),
        memory_gib_hour=Decimal("0.0049225"),
        storage_gib_hour=Decimal("0.0000548"),
        network_gib=Decimal("0.01"),
        source="gke-autopilot-us-central1",
    ),
    # Azure Container Instances Linux list price, East US: 0.0000135 /vCPU-second
    # (0.0486 /vCPU-hour), 0.0000015 /GB-second (0.0054 /GB-hour); storage: Standard SSD
    # managed disk E10 (128 GiB, 9.60 /month) = 0.075 /GiB-month = 0.00010274 /GiB-hour.
    "aks": PriceSheet(
        cpu_core_hour=Decimal("0.0486"),
        memory_gib_hour=Decimal("0.0054"),
        storage_gib_hour=Decimal("0.00010274"),
        network_gib=Decimal("0.01"),
        source="aks-aci-eastus",
    ),
}


def _sheet_from_mapping(data: Mapping[str, Any], *, source: str) -> PriceSheet:
    """Read an OpenCost-style ``default.json`` (``CPU``, ``RAM``, ``storage``,
    ``zoneNetworkEgress``) or our own keys; unknown keys are ignored, missing ones default."""

    def pick(*keys: str, default: Decimal) -> Decimal:
        for key in keys:
            if key in data and data[key] not in (None, ""):
                value = Decimal(str(data[key]))
                if value < 0:
                    raise ValueError(f"on-prem pricing: {key} must not be negative")
                return value
        return default

    base = OPENCOST_DEFAULT
    return PriceSheet(
        cpu_core_hour=pick("cpu_core_hour", "CPU", default=base.cpu_core_hour),
        memory_gib_hour=pick("memory_gib_hour", "RAM", default=base.memory_gib_hour),
        storage_gib_hour=pick("storage_gib_hour", "storage", default=base.storage_gib_hour),
        network_gib=pick(
            "network_gib", "zoneNetworkEgress", "regionNetworkEgress", default=base.network_gib
        ),
        currency=str(data.get("currency") or "USD"),
        source=source,
    )


def load_onprem_sheet(env: Mapping[str, str] | None = None) -> PriceSheet:
    """The on-prem sheet: ``FLEETGRAPH_ONPREM_PRICING`` names a JSON file or holds JSON inline;
    unset, it is OpenCost's default sheet."""
    e = os.environ if env is None else env
    raw = (e.get(ONPREM_PRICING_ENV) or "").strip()
    if not raw:
        return OPENCOST_DEFAULT
    if raw.startswith("{"):
        return _sheet_from_mapping(json.loads(raw), source="onprem-env")
    data = json.loads(Path(raw).read_text())
    if not isinstance(data, dict):
        raise ValueError(f"{ONPREM_PRICING_ENV}: {raw} must hold a JSON object")
    return _sheet_from_mapping(data, source=f"onprem-file:{Path(raw).name}")


@dataclass(frozen=True)
class PriceBook:
    """Defaults by provider. Built once per process; tests build their own."""

    by_provider: Mapping[str, PriceSheet]

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> PriceBook:
        onprem = load_onprem_sheet(env)
        return cls({**PROVIDER_DEFAULTS, "k3s": onprem, "vanilla": onprem})

    def default_for(self, provider: str) -> PriceSheet:
        return self.by_provider.get(provider) or OPENCOST_DEFAULT


_EFFECTIVE_SELECT = """
SELECT c.id, c.provider, c.price_cpu_core_hour, c.price_memory_gib_hour,
       c.price_storage_gib_hour, c.price_network_gib,
       EXISTS (SELECT 1 FROM k8s_cluster_prices h WHERE h.cluster_id = c.id) AS has_history,
       p.price_cpu_core_hour AS h_cpu, p.price_memory_gib_hour AS h_memory,
       p.price_storage_gib_hour AS h_storage, p.price_network_gib AS h_network,
       p.currency AS h_currency, p.source AS h_source, p.effective_from AS h_from
  FROM k8s_clusters c
  LEFT JOIN LATERAL (
        SELECT * FROM k8s_cluster_prices h
         WHERE h.cluster_id = c.id AND h.effective_from <= $2
         ORDER BY h.effective_from DESC LIMIT 1) p ON true
"""
_EFFECTIVE_SQL = _EFFECTIVE_SELECT + " WHERE c.id = $1"
_EFFECTIVE_MANY_SQL = _EFFECTIVE_SELECT + " WHERE c.id = ANY($1::uuid[]) AND c.organization_id = $3"



@dataclass(frozen=True)
class _Overrides:
    """One table of per-name price overrides with history (instance types, storage classes)."""

    table: str
    key: str
    price: str

    def current_sql(self) -> str:
        """The override in effect at $2 per cluster in $1 and name (a NULL price: removed)."""
        return f"""(SELECT DISTINCT ON (cluster_id, {self.key}) '{self.table}' AS kind,
                           cluster_id, {self.key} AS name, {self.price} AS price
                      FROM {self.table}
                     WHERE cluster_id = ANY($1::uuid[]) AND effective_from <= $2
                     ORDER BY cluster_id, {self.key}, effective_from DESC)"""

    def upsert_sql(self) -> str:
        return f"""INSERT INTO {self.table} (cluster_id, {self.key}, effective_from, {self.price})
                   VALUES ($1, $2, $3, $4)
                   ON CONFLICT (cluster_id, {self.key}, effective_from)
                   DO UPDATE SET {self.price} = EXCLUDED.{self.price}"""


INSTANCE_TYPES = _Overrides("k8s_instance_type_prices", "instance_type", "hourly_cost")
STORAGE_CLASSES = _Overrides("k8s_storage_class_prices", "storage_class", "gib_hour")
# Both kinds in one statement, so ``Cluster.pricing`` costs two statements per request.
_OVERRIDES_SQL = f"{INSTANCE_TYPES.current_sql()} UNION ALL {STORAGE_CLASSES.current_sql()}"


async def effective_prices(
    conn: asyncpg.Connection, *, cluster_id: uuid.UUID, at: datetime, book: PriceBook
) -> PriceSheet | None:
    """The sheet that prices ``at`` for a cluster (None if the cluster does not exist)."""
    row = await conn.fetchrow(_EFFECTIVE_SQL, cluster_id, at)
    return _sheet(row, book) if row is not None else None


def _sheet(row: asyncpg.Record, book: PriceBook) -> PriceSheet:
    """The history row in effect, else the provider default once a history exists, else the
    cluster row's columns over the default."""
    default = book.default_for(row["provider"])
    if row["h_cpu"] is not None:
        return PriceSheet(
            row["h_cpu"], row["h_memory"], row["h_storage"], row["h_network"],
            currency=row["h_currency"], source=row["h_source"],
        )
    if row["has_history"]:
        return default
    columns = (
        row["price_cpu_core_hour"], row["price_memory_gib_hour"],
        row["price_storage_gib_hour"], row["price_network_gib"],
    )
    if all(value is None for value in columns):
        return default
    return PriceSheet(
        cpu_core_hour=columns[0] if columns[0] is not None else default.cpu_core_hour,
        memory_gib_hour=columns[1] if columns[1] is not None else default.memory_gib_hour,
        storage_gib_hour=columns[2] if columns[2] is not None else default.storage_gib_hour,
        network_gib=columns[3] if columns[3] is not None else default.network_gib,
        currency=default.currency,
        source="cluster",
    )


async def _pin_baseline(
    conn: asyncpg.Connection, *, cluster_id: uuid.UUID, book: PriceBook
) -> None:
    """Before a cluster's first price change, record the sheet that applied until then (from
    the epoch), so hours before the change keep being priced as they were."""
    if await conn.fetchval("SELECT 1 FROM k8s_cluster_prices WHERE cluster_id = $1", cluster_id):
        return
    before = await effective_prices(conn, cluster_id=cluster_id, at=BASELINE_FROM, book=book)
    assert before is not None
    await conn.execute(
        """INSERT INTO k8s_cluster_prices
               (cluster_id, effective_from, price_cpu_core_hour, price_memory_gib_hour,
                price_storage_gib_hour, price_network_gib, currency, source)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8)""",
        cluster_id, BASELINE_FROM, before.cpu_core_hour, before.memory_gib_hour,
        before.storage_gib_hour, before.network_gib, before.currency, before.source,
    )


@dataclass(frozen=True)
class ClusterPricing:
    """What ``Cluster.pricing`` shows: the sheet in effect now, its origin, the instance-type
    (per node-hour) and storage-class (per GiB-hour) prices."""

    cluster_id: uuid.UUID
    sheet: PriceSheet
    effective_from: datetime | None
    instance_types: dict[str, Decimal]
    storage_classes: dict[str, Decimal]


async def get_clusters_pricing(
    conn: asyncpg.Connection,
    *,
    organization_id: uuid.UUID,
    cluster_ids: list[uuid.UUID],
    at: datetime,
    book: PriceBook,
) -> dict[uuid.UUID, ClusterPricing]:
    """Pricing at ``at`` for many clusters in two statements (what ``Cluster.pricing``'s
    dataloader needs); clusters not in the organization are absent from the answer."""
    rows = await conn.fetch(_EFFECTIVE_MANY_SQL, cluster_ids, at, organization_id)
    owned = [r["id"] for r in rows]
    overrides: dict[tuple[str, uuid.UUID], dict[str, Decimal]] = {
        (kind.table, c): {} for kind in (INSTANCE_TYPES, STORAGE_CLASSES) for c in owned
    }
    for r in await conn.fetch(_OVERRIDES_SQL, owned, at) if owned else []:
        if r["price"] is not None:  # a NULL row removed the override
            overrides[r["kind"], r["cluster_id"]][r["name"]] = r["price"]
    return {
        r["id"]: ClusterPricing(r["id"], _sheet(r, book), r["h_from"],
                                overrides[INSTANCE_TYPES.table, r["id"]],
                                overrides[STORAGE_CLASSES.table, r["id"]])
        for r in rows
    }


async def get_cluster_pricing(
    conn: asyncpg.Connection,
    *,
    organization_id: uuid.UUID,
    cluster_id: uuid.UUID,
    at: datetime,
    book: PriceBook,
) -> ClusterPricing | None:
    """The cluster's pricing at ``at``; None when the cluster is not the organization's."""
    found = await get_clusters_pricing(conn, organization_id=organization_id,
                                       cluster_ids=[cluster_id], at=at, book=book)
    return found.get(cluster_id)


async def set_cluster_pricing(
    conn: asyncpg.Connection,
    *,
    organization_id: uuid.UUID,
    cluster_id: uuid.UUID,
    effective_from: datetime,
    book: PriceBook,
    cpu_core_hour: Decimal | None = None,
    memory_gib_hour: Decimal | None = None,
    storage_gib_hour: Decimal | None = None,
    network_gib: Decimal | None = None,
    currency: str | None = None,
    instance_types: Mapping[str, Decimal | None] | None = None,
    storage_classes: Mapping[str, Decimal | None] | None = None,
) -> ClusterPricing | None:
    """Append a price change taking effect at ``effective_from`` (admin only, checked by the
    caller). Fields left None keep the value in effect then; an instance type or storage
    class mapped to None drops its override. Also mirrors the sheet onto
    ``k8s_clusters.price_*`` so the health view's hourly estimate follows. Returns None when
    the cluster is not the organization's."""
    for name, value in (
        ("cpuCoreHour", cpu_core_hour), ("memoryGibHour", memory_gib_hour),
        ("storageGibHour", storage_gib_hour), ("networkGib", network_gib),
    ):
        if value is not None and value < 0:
            raise ValueError(f"{name}: a price must not be negative")
    for name, mapping in (
        ("instanceTypes", instance_types), ("storageClasses", storage_classes),
    ):
        if any(v is not None and v < 0 for v in (mapping or {}).values()):
            raise ValueError(f"{name}: a price must not be negative")
    async with conn.transaction():
        owned = await conn.fetchval(
            "SELECT true FROM k8s_clusters WHERE id = $1 AND organization_id = $2 FOR UPDATE",
            cluster_id, organization_id,
        )
        if not owned:
            return None
        current = await effective_prices(conn, cluster_id=cluster_id, at=effective_from, book=book)
        assert current is not None
        await _pin_baseline(conn, cluster_id=cluster_id, book=book)
        sheet = replace(
            current,
            cpu_core_hour=current.cpu_core_hour if cpu_core_hour is None else cpu_core_hour,
            memory_gib_hour=(
                current.memory_gib_hour if memory_gib_hour is None else memory_gib_hour
            ),
            storage_gib_hour=(
                current.storage_gib_hour if storage_gib_hour is None else storage_gib_hour
            ),
            network_gib=current.network_gib if network_gib is None else network_gib,
            currency=currency or current.currency,
            source="custom",
        )
        await conn.execute(
            """INSERT INTO k8s_cluster_prices
                   (cluster_id, effective_from, price_cpu_core_hour, price_memory_gib_hour,
                    price_storage_gib_hour, price_network_gib, currency, source)
               VALUES ($1, $2, $3, $4, $5, $6, $7, 'custom')
               ON CONFLICT (cluster_id, effective_from) DO UPDATE SET
                   price_cpu_core_hour = EXCLUDED.price_cpu_core_hour,
                   price_memory_gib_hour = EXCLUDED.price_memory_gib_hour,
                   price_storage_gib_hour = EXCLUDED.price_storage_gib_hour,
                   price_network_gib = EXCLUDED.price_network_gib,
                   currency = EXCLUDED.currency, created_at = now()""",
            cluster_id, effective_from, sheet.cpu_core_hour, sheet.memory_gib_hour,
            sheet.storage_gib_hour, sheet.network_gib, sheet.currency,
        )
        for kind, mapping in ((INSTANCE_TYPES, instance_types),
                              (STORAGE_CLASSES, storage_classes)):
            if mapping:
                await conn.executemany(
                    kind.upsert_sql(),
                    [(cluster_id, name, effective_from, price) for name, price in mapping.items()],
                )
        await conn.execute(
            """UPDATE k8s_clusters SET price_cpu_core_hour = $2, price_memory_gib_hour = $3,
                      price_storage_gib_hour = $4, price_network_gib = $5, updated_at = now()
                WHERE id = $1""",
            cluster_id, sheet.cpu_core_hour, sheet.memory_gib_hour, sheet.storage_gib_hour,
            sheet.network_gib,
        )
    return await get_cluster_pricing(
        conn, organization_id=organization_id, cluster_id=cluster_id, at=effective_from,
        book=book,
    )
