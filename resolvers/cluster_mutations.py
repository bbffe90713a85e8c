"""Registry writes: register, update, re-key, delete, test and resync clusters.

Every write is scoped to the caller's organization (another tenant's cluster is NOT_FOUND,
exactly like a missing one), checks the role first, validates input into field-level errors,
and tells the sync supervisors through ``NOTIFY fleetgraph_registry`` so a change is picked
up without a restart.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import asyncpg
import orjson

from app.auth import Role
from app.credentials import open_kubeconfig, seal_kubeconfig
from app.kube_client import ConnectionProbe, probe_connection
from app.kubeconfig import KubeconfigError, SanitizedKubeconfig, sanitize_kubeconfig_off_loop
from app.network_guard import NetworkPolicy
from cost.pricing import set_cluster_pricing
from resolvers.clusters import CLUSTER_COLUMNS
from resolvers.context import Context
from resolvers.costs import price_book
from resolvers.errors import NotFound

REGISTRY_CHANNEL = "fleetgraph_registry"
PROVIDERS = ("eks", "gke", "aks", "k3s", "vanilla")
# \Z, not $: `$` also matches before a final newline, so "web\n" used to pass.
_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\Z")
_LABEL_KEY = re.compile(
    r"^([a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?/)?[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?\Z"
)
_LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?)?\Z")
# Provider region names (us-east-1, europe-west4, eastus, "local"): one line, no controls.
_REGION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._/-]{0,62}\Z")
_PRICE_NAMES = {
    "cpu_core_hour": "cpuCoreHour", "memory_gib_hour": "memoryGibHour",
    "storage_gib_hour": "storageGibHour", "network_gib": "networkGib",
}


@dataclass(frozen=True)
class FieldProblem:
    field: str
    message: str


class InvalidInputError(Exception):
    """Collected field problems; the schema turns them into the typed error result."""

    def __init__(self, problems: list[FieldProblem]) -> None:
        super().__init__("; ".join(f"{p.field}: {p.message}" for p in problems))
        self.problems = problems


@dataclass(frozen=True)
class ClusterInputArgs:
    name: str | None = None
    provider: str | None = None
    kubeconfig: str | None = None
    context: str | None = None
    region: str | None = None
    labels: Any = None
    pricing: dict[str, Decimal | None] | None = None
    enabled: bool | None = None


def _check_name(name: str, problems: list[FieldProblem]) -> None:
    if not _NAME.match(name):
        problems.append(FieldProblem(
            "name", "use 1-63 lowercase letters, digits or '-', starting and ending with a "
            "letter or digit"))


def _check_region(region: str, problems: list[FieldProblem]) -> None:
    if not _REGION.match(region):
        problems.append(FieldProblem(
            "region", "use 1-63 letters, digits, spaces or '._/-', starting with a letter or "
            "digit, on one line"))


def _check_labels(labels: Any, problems: list[FieldProblem]) -> dict[str, str] | None:
    if labels is None:
        return None
    if not isinstance(labels, dict) or len(labels) > 64:
        problems.append(FieldProblem("labels", "must be an object of at most 64 string pairs"))
        return None
    for key, value in labels.items():
        if not isinstance(key, str) or not _LABEL_KEY.match(key):
            problems.append(FieldProblem(f"labels.{str(key)[:80]}", "not a valid label key"))
        elif not isinstance(value, str) or not _LABEL_VALUE.match(value):
            problems.append(FieldProblem(f"labels.{key}", "value must be a valid label value"))
    return labels


def _check_pricing(
    pricing: dict[str, Decimal | None] | None, problems: list[FieldProblem]
) -> dict[str, Decimal | None]:
    out: dict[str, Decimal | None] = {}
    for key, value in (pricing or {}).items():
        if value is not None and not (Decimal(0) <= value < Decimal(10_000)):
            problems.append(FieldProblem(f"pricing.{_PRICE_NAMES[key]}",
                                         "must be at least 0 and below 10000"))
        if value is not None:
            out[key] = value
    return out


async def _record_prices(
    conn: asyncpg.Connection, ctx: Context, cluster_id: uuid.UUID,
    prices: dict[str, Decimal | None],
) -> None:
    """Prices go into the cost engine's history (effective now), never straight into the
    cluster row, so hours already computed keep the price they were computed with."""
    if prices:
        await set_cluster_pricing(
            conn, organization_id=ctx.require().organization_id, cluster_id=cluster_id,
            effective_from=datetime.now(UTC), book=price_book(ctx), **prices,  # type: ignore[arg-type]
        )


def _input_field(kubeconfig_field: str) -> str:
    """The GraphQL input field a sanitizer error is about: ``kubeconfig`` itself, the
    ``context`` argument, or a path inside the kubeconfig (``kubeconfig.users[u].user.token``)."""
    if kubeconfig_field in ("kubeconfig", "context"):
        return kubeconfig_field
    return f"kubeconfig.{kubeconfig_field}"


async def _check_kubeconfig(
    ctx: Context, text: str, context: str | None, problems: list[FieldProblem]
) -> SanitizedKubeconfig | None:
    """Sanitize off the event loop, then refuse servers the network policy certainly refuses.

    The network check here is the early, explanatory one; every connection is checked again
    where it is made (app.network_guard), whatever DNS answers by then."""
    try:
        kc = await sanitize_kubeconfig_off_loop(text, context=context)
    except KubeconfigError as exc:
        problems.append(FieldProblem(_input_field(exc.field), exc.reason))
        return None
    refusal = NetworkPolicy.from_settings(ctx.settings).url_refusal(kc.server_url)
    if refusal is not None:
        problems.append(FieldProblem("kubeconfig.server", refusal))
        return None
    return kc


async def _notify(conn: asyncpg.Connection, cluster_id: uuid.UUID, action: str) -> None:
    payload = orjson.dumps({"cluster_id": str(cluster_id), "action": action}).decode()
    await conn.execute("SELECT pg_notify($1, $2)", REGISTRY_CHANNEL, payload)


async def _fetch_owned(conn: asyncpg.Connection, ctx: Context, cluster_id: uuid.UUID,
                       *, lock: bool = False) -> asyncpg.Record:
    principal = ctx.require()
    row = await conn.fetchrow(
        f"SELECT {CLUSTER_COLUMNS}, c.kubeconfig_encrypted, c.kubeconfig_key_id "
        "FROM k8s_clusters c WHERE c.organization_id = $1 AND c.id = $2"
        + (" FOR UPDATE" if lock else ""),
        principal.organization_id, cluster_id,
    )
    if row is None:
        raise NotFound("cluster not found")
    return row


async def register_cluster(ctx: Context, args: ClusterInputArgs) -> asyncpg.Record:
    principal = ctx.require(Role.ADMIN)
    problems: list[FieldProblem] = []
    name = args.name or ""
    _check_name(name, problems)
    if args.region is not None:
        _check_region(args.region, problems)
    if args.provider not in PROVIDERS:
        problems.append(FieldProblem("provider", f"must be one of {', '.join(PROVIDERS)}"))
    labels = _check_labels(args.labels, problems)
    prices = _check_pricing(args.pricing, problems)
    kc = await _check_kubeconfig(ctx, args.kubeconfig or "", args.context, problems)
    if problems or kc is None:
        raise InvalidInputError(problems)
    cluster_id = uuid.uuid4()
    sealed = seal_kubeconfig(ctx.vault, cluster_id, kc)
    columns: dict[str, Any] = {
        "id": cluster_id, "organization_id": principal.organization_id, "name": name,
        "provider": args.provider, "region": args.region, "api_server_url": kc.server_url,
        "kubeconfig_encrypted": sealed.ciphertext, "kubeconfig_key_id": sealed.key_id,
        "context_name": kc.context_name, "labels": labels or {},
    }
    placeholders = ", ".join(f"${i}" for i in range(1, len(columns) + 1))
    async with ctx.pool.acquire() as conn, conn.transaction():
        try:
            await conn.execute(
                f"INSERT INTO k8s_clusters ({', '.join(columns)}) VALUES ({placeholders})",
                *columns.values(),
            )
        except asyncpg.UniqueViolationError:
            raise InvalidInputError(
                [FieldProblem("name", f"a cluster named {name!r} already exists")]
            ) from None
        await _record_prices(conn, ctx, cluster_id, prices)
        await _notify(conn, cluster_id, "registered")
        return await _fetch_owned(conn, ctx, cluster_id)


async def update_cluster(
    ctx: Context, cluster_id: uuid.UUID, args: ClusterInputArgs
) -> asyncpg.Record:
    ctx.require(Role.ADMIN)
    problems: list[FieldProblem] = []
    changes: dict[str, Any] = {}
    if args.name is not None:
        _check_name(args.name, problems)
        changes["name"] = args.name
    if args.region is not None:
        _check_region(args.region, problems)
        changes["region"] = args.region
    if args.labels is not None:
        changes["labels"] = _check_labels(args.labels, problems)
    prices = _check_pricing(args.pricing, problems)
    if problems:
        raise InvalidInputError(problems)
    async with ctx.pool.acquire() as conn, conn.transaction():
        row = await _fetch_owned(conn, ctx, cluster_id, lock=True)
        if args.enabled is not None:
            if not args.enabled:
                changes["status"] = "disabled"
            elif row["status"] == "disabled":
                changes["status"] = "pending"
        await _record_prices(conn, ctx, cluster_id, prices)
        if changes:
            sets = ", ".join(f"{col} = ${i}" for i, col in enumerate(changes, start=2))
            try:
                await conn.execute(
                    f"UPDATE k8s_clusters SET {sets}, updated_at = now() WHERE id = $1",
                    cluster_id, *changes.values(),
                )
            except asyncpg.UniqueViolationError:
                raise InvalidInputError(
                    [FieldProblem("name", f"a cluster named {args.name!r} already exists")]
                ) from None
            await _notify(conn, cluster_id, "updated")
        return await _fetch_owned(conn, ctx, cluster_id)


async def rotate_credentials(
    ctx: Context, cluster_id: uuid.UUID, kubeconfig: str, context: str | None
) -> asyncpg.Record:
    ctx.require(Role.ADMIN)
    problems: list[FieldProblem] = []
    # Checked before the row is locked: parsing may take a while, and a missing cluster and
    # another tenant's answer alike either way.
    kc = await _check_kubeconfig(ctx, kubeconfig, context, problems)
    async with ctx.pool.acquire() as conn, conn.transaction():
        row = await _fetch_owned(conn, ctx, cluster_id, lock=True)
        if kc is None:
            raise InvalidInputError(problems)
        sealed = seal_kubeconfig(ctx.vault, cluster_id, kc)
        await conn.execute(
            """UPDATE k8s_clusters SET kubeconfig_encrypted = $2, kubeconfig_key_id = $3,
                   api_server_url = $4, context_name = $5, updated_at = now(),
                   status = CASE WHEN status = 'disabled' THEN status ELSE 'pending' END
             WHERE id = $1""",
            cluster_id, sealed.ciphertext, sealed.key_id, kc.server_url, kc.context_name,
        )
        await _notify(conn, row["id"], "rotated")
        return await _fetch_owned(conn, ctx, cluster_id)


async def delete_cluster(ctx: Context, cluster_id: uuid.UUID) -> uuid.UUID:
    principal = ctx.require(Role.ADMIN)
    async with ctx.pool.acquire() as conn, conn.transaction():
        deleted = await conn.fetchval(
            "DELETE FROM k8s_clusters WHERE organization_id = $1 AND id = $2 RETURNING id",
            principal.organization_id, cluster_id,
        )
        if deleted is None:
            raise NotFound("cluster not found")
        await _notify(conn, cluster_id, "deleted")
    return cluster_id


async def test_connection(ctx: Context, cluster_id: uuid.UUID) -> ConnectionProbe:
    ctx.require(Role.OPERATOR)
    async with ctx.pool.acquire() as conn:
        row = await _fetch_owned(conn, ctx, cluster_id)
    kc = open_kubeconfig(ctx.vault, cluster_id, row["kubeconfig_encrypted"],
                         row["kubeconfig_key_id"])
    probe = await probe_connection(
        kc, timeout=5.0, network=NetworkPolicy.from_settings(ctx.settings)
    )
    if probe.reachable and probe.server_version:
        await ctx.pool.execute(
            "UPDATE k8s_clusters SET kubernetes_version = $2 WHERE id = $1",
            cluster_id, probe.server_version,
        )
    return probe


async def trigger_sync(ctx: Context, cluster_id: uuid.UUID) -> asyncpg.Record:
    ctx.require(Role.OPERATOR)
    async with ctx.pool.acquire() as conn, conn.transaction():
        await _fetch_owned(conn, ctx, cluster_id, lock=True)
        await conn.execute(
            "UPDATE k8s_clusters SET sync_requested_at = now() WHERE id = $1", cluster_id
        )
        await _notify(conn, cluster_id, "resync")
        return await _fetch_owned(conn, ctx, cluster_id)
