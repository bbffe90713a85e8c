"""``fleetgraph demo``: a living fleet in GraphiQL within a minute, through the real paths.

It starts kubesim with a seeded fleet moving in real time, registers it under a ``demo``
organization exactly as a user would (kubeconfig → sanitizer → vault → registry → sync), prints
an admin token and the GraphiQL URL, and serves. Without ``BYOK_ENCRYPTION_KEY`` it keeps a
demo-only key in ``FLEETGRAPH_DATA_DIR/demo.key`` (0600) so a restart can still decrypt, and
its admin token beside it in ``demo.token`` (0600) so a restart reuses it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING

import asyncpg
import uvicorn
import yaml

from app.auth import Role, authenticate
from app.db import close_pool, create_pool, database_url_or_embedded
from app.settings import Settings
from app.tenancy import create_organization, create_token
from app.vault import Vault, generate_key

if TYPE_CHECKING:
    from kubesim import KubeSim

log = logging.getLogger(__name__)

DEMO_ORG = "demo"
DEMO_CLUSTER = "demo-cluster"
DEMO_TOKEN_FILE = "demo.token"
# Days of history a fresh demo starts with, by fleet: the simulator's step grows with the
# fleet (small ~5 ms, medium ~130 ms; 3 days are 869 steps), so the bigger fleets start with
# less, the large one with none.
DEFAULT_HISTORY_DAYS = {"small": 3, "medium": 1, "large": 0}
# A monthly budget for one of the fleet's teams, so budgets and forecasts have one to show.
DEMO_BUDGET_TEAM = "payments"
DEMO_BUDGET = Decimal("250")


def demo_key(data_dir: Path) -> str:
    """The demo's encryption key, created once and kept beside the embedded database."""
    path = data_dir / "demo.key"
    if path.exists():
        return path.read_text().strip()
    data_dir.mkdir(parents=True, exist_ok=True)
    key = generate_key()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(key + "\n")
    return key


def _write_private(path: Path, text: str) -> None:
    """Replace ``path`` atomically with a file only its owner can read (0600 from creation,
    never briefly world-readable)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text + "\n")
    os.replace(temporary, path)


async def demo_token(pool: asyncpg.Pool, data_dir: Path) -> str:
    """The demo's admin token: the one an earlier start stored beside ``demo.key``, while it
    still authenticates as the demo organization's admin; else a newly issued one, stored.

    So restarting the demo does not leave one more valid admin token behind each time; a
    revoked (or lost, or another database's) token is replaced."""
    path = data_dir / DEMO_TOKEN_FILE
    stored = path.read_text().strip() if path.exists() else None
    if stored:
        principal = await authenticate(pool, stored)
        if (principal is not None and principal.organization_slug == DEMO_ORG
                and principal.role is Role.ADMIN):
            return stored
    async with pool.acquire() as conn:
        issued = await create_token(conn, org_slug=DEMO_ORG, role="admin", name="demo")
    _write_private(path, issued.token)
    return issued.token


async def register_demo_cluster(pool: asyncpg.Pool, settings: Settings,
                                kubeconfig_text: str) -> str:
    """Register (or re-key, on a later run) the demo cluster; returns the demo admin token."""
    from resolvers import cluster_mutations
    from resolvers.context import Context

    async with pool.acquire() as conn:
        org_id = await conn.fetchval("SELECT id FROM organizations WHERE slug = $1", DEMO_ORG)
        if org_id is None:
            org_id = await create_organization(conn, slug=DEMO_ORG, name="Demo")
        existing = await conn.fetchval(
            "SELECT id FROM k8s_clusters WHERE organization_id = $1 AND name = $2",
            org_id, DEMO_CLUSTER,
        )
    token = await demo_token(pool, settings.data_dir)
    ctx = Context(pool=pool, settings=settings, vault=Vault.from_env(settings.encryption_keys),
                  cursor_key=b"", principal=await authenticate(pool, token))
    if existing is None:
        await cluster_mutations.register_cluster(ctx, cluster_mutations.ClusterInputArgs(
            name=DEMO_CLUSTER, provider="k3s", kubeconfig=kubeconfig_text, region="local",
            labels={"env": "demo"},
        ))
    else:
        await cluster_mutations.rotate_credentials(ctx, existing, kubeconfig_text, None)
    return token


async def _demo_cluster(
    db: asyncpg.Pool | asyncpg.Connection,
) -> tuple[uuid.UUID, uuid.UUID] | None:
    """The demo organization's id and its cluster's, once registered."""
    row = await db.fetchrow(
        """SELECT o.id AS organization_id, c.id AS cluster_id
             FROM organizations o JOIN k8s_clusters c ON c.organization_id = o.id
            WHERE o.slug = $1 AND c.name = $2""",
        DEMO_ORG, DEMO_CLUSTER,
    )
    return (row["organization_id"], row["cluster_id"]) if row is not None else None


async def _history_start(url: str, history_days: int) -> datetime | None:
    """Where a fresh demo's history starts (``history_days`` before the current hour); None
    when there is to be none: asked for none, or the demo cluster is there from before."""
    if history_days <= 0:
        return None
    conn = await asyncpg.connect(url)
    try:
        if await _demo_cluster(conn) is not None:
            return None
    finally:
        await conn.close()
    return datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(
        days=history_days)


async def _first_start(pool: asyncpg.Pool, settings: Settings, sim: KubeSim) -> None:
    """On a fresh database: the fleet's past days (app.demo_history) and a team budget to
    measure them against, so costs, budgets, forecasts and daily rollups show at once."""
    from app.demo_history import build_history
    from cost.budgets import set_budget

    registered = await _demo_cluster(pool)
    assert registered is not None
    organization_id, cluster_id = registered
    history = await build_history(
        pool, sim=sim, vault=Vault.from_env(settings.encryption_keys), cluster_id=cluster_id,
        organization_id=organization_id, clock=lambda: datetime.now(UTC),
    )
    async with pool.acquire() as conn:
        await set_budget(conn, organization_id=organization_id, scope_kind="team",
                         scope_value=DEMO_BUDGET_TEAM, amount_monthly=DEMO_BUDGET)
    print(f"History: {history.started_at:%Y-%m-%d %H:%M} UTC to now, "
          f"{len(history.costed.computed)} hours costed, in {history.seconds:.0f} s.",
          flush=True)


async def run_demo(settings: Settings, *, host: str, port: int, fleet: str, seed: int,
                   history_days: int | None = None) -> None:
    """kubesim first, then the demo cluster registered (or re-keyed to this run's kubesim)
    before the server starts: the sync's first attempt already goes to the right address, so
    a restart never warns about the previous run's kubesim port.

    On a fresh database the fleet starts ``history_days`` in the past (by default
    :data:`DEFAULT_HISTORY_DAYS` for its size) and lives them at speed before the server
    starts (app.demo_history); a restart keeps the history it has."""
    from app.migrations import upgrade_to_head_async
    from kubesim import KubeSim

    with database_url_or_embedded(settings.database_url, settings.data_dir) as url:
        settings = settings.with_(database_url=url)
        await upgrade_to_head_async(url)
        days = DEFAULT_HISTORY_DAYS.get(fleet, 0) if history_days is None else history_days
        start_time = await _history_start(url, days)
        async with KubeSim.start(fleet=fleet, seed=seed, start_time=start_time) as sim:
            pool = await create_pool(url, max_size=2)
            try:
                token = await register_demo_cluster(pool, settings,
                                                    yaml.safe_dump(sim.kubeconfig))
                if start_time is not None:
                    await _first_start(pool, settings, sim)
            finally:
                await close_pool(pool)
            sim.start_realtime()
            await _serve(settings, host=host, port=port, token=token,
                         banner=f"kubesim ({fleet} fleet, seed {seed}) at {sim.url}")


async def _serve(settings: Settings, *, host: str, port: int, token: str, banner: str) -> None:
    from app.http_protocol import uvicorn_http_options
    from app.server import create_app

    app = create_app(settings, migrate=False)
    # Demo only: GraphiQL opens with the admin token already in its headers editor. A real
    # server never sets this, so its pages never carry a token.
    app.state.graphiql_initial_headers = {"Authorization": f"Bearer {token}"}
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, lifespan="on",
                                           log_config=None, log_level="warning",
                                           **uvicorn_http_options(settings)))
    serving = asyncio.create_task(server.serve())
    while not server.started:
        if serving.done():
            await serving
            return
        await asyncio.sleep(0.05)
    print(f"\nFleetGraph demo is up. {banner}")
    print(f"GraphiQL: http://{host}:{port}/graphql")
    print(f'Send the header {{"Authorization": "Bearer {token}"}} (admin, org "demo").\n',
          flush=True)
    await serving
