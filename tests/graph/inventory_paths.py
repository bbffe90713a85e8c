"""Running one request in-process through the planned schema and through the resolvers-only
schema, with the same context the HTTP endpoint builds, and the answer as the bytes the
endpoint would send (``orjson.dumps`` of data and errors, as ``encode_json`` does)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import asyncpg
import orjson
import strawberry

from app.auth import authenticate
from app.graphql_app import cursor_key_from
from app.settings import Settings
from resolvers.context import Context
from schema import build_schema
from tests.graph import rows


class Paths:
    """The planned and the reference schema over one pool."""

    def __init__(self, pool: asyncpg.Pool, settings: Settings, vault: Any) -> None:
        self.pool = pool
        self.settings = settings
        self.vault = vault
        self.planned = build_schema(settings, planned=True)
        self.reference = build_schema(settings, planned=False)

    async def answer(self, schema: strawberry.Schema, query: str, variables: dict[str, Any],
                     token: str | None) -> tuple[bytes, int]:
        principal = await authenticate(self.pool, token) if token else None
        ctx = Context(pool=self.pool, settings=self.settings, vault=self.vault,
                      cursor_key=cursor_key_from(self.settings), principal=principal)
        result = await schema.execute(query, variable_values=variables, context_value=ctx)
        body: dict[str, Any] = {"data": result.data}
        if result.errors:
            body["errors"] = [e.formatted for e in result.errors]
        return orjson.dumps(body), ctx.statements.count

    async def both(self, query: str, variables: dict[str, Any], token: str | None
                   ) -> tuple[bytes, bytes]:
        planned, _ = await self.answer(self.planned, query, variables, token)
        reference, _ = await self.answer(self.reference, query, variables, token)
        return planned, reference


async def varied_fleet(conn: asyncpg.Connection, org_id: Any, prefix: str) -> None:
    """Two clusters with odd values: nulls, deleted rows, every phase, health and order, and
    Helm releases in two of each cluster's namespaces."""
    when = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
    for c in range(2):
        cid = await rows.cluster(conn, org_id, f"{prefix}-{c}", labels={"env": f"e{c}"})
        await rows.node(conn, cid, f"node-{c}", ready=c == 0, capacity_cpu_cores=Decimal("4"),
                        capacity_memory_bytes=2 ** 40, hourly_cost=Decimal("0.125"))
        for n in range(3):
            ns = f"ns-{n}"
            await rows.namespace(conn, cid, ns, team=f"t{n % 2}", labels={"tier": str(n)},
                                 usage_cpu_cores=Decimal("1.5") if n else None,
                                 deleted_at=when if n == 2 else None)
            if n < 2:  # releases without stored values: ``values`` is null, or refused
                await rows.insert(conn, "k8s_helm_releases", cluster_id=cid, namespace=ns,
                                  name=f"rel-{n}", revision=n + 1, status="deployed")
            for d in range(2):
                await rows.deployment(conn, cid, ns, f"dep-{d}", replicas_desired=d + 1,
                                      health_status=("healthy", "degraded")[d],
                                      created_at=when + dt.timedelta(hours=d))
                for p in range(3):
                    await rows.pod(
                        conn, cid, ns, f"dep-{d}-{p}", deployment_name=f"dep-{d}",
                        node_name=f"node-{c}" if p else None,
                        phase=("Running", "Pending", "Failed")[p], restart_count=p * 2,
                        requests_cpu_cores=Decimal("0.25") if p != 1 else None,
                        requests_memory_bytes=2 ** 33 if p != 1 else None,
                        labels={"app": f"dep-{d}"},
                        created_at=when + dt.timedelta(minutes=p),
                        deleted_at=when if p == 2 and d == 1 else None)
