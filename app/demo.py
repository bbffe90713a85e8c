"""``fleetgraph demo``: a living fleet in GraphiQL within a minute, through the real paths.

It starts kubesim with a seeded fleet moving in real time, registers it under a ``demo``
organization exactly as a user would (kubeconfig → sanitizer → vault → registry → sync), prints
an admin token and the GraphiQL URL, and serves. Without ``BYOK_ENCRYPTION_KEY`` it keeps a
demo-only key in ``FLEETGRAPH_DATA_DIR/demo.key`` (0600) so a restart can still decrypt.
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

import uvicorn
import yaml

from app.auth import Principal, Role
from app.settings import Settings
from app.tenancy import create_organization, create_token
from app.vault import generate_key

log = logging.getLogger(__name__)

DEMO_ORG = "demo"
DEMO_CLUSTER = "demo-cluster"


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


async def register_demo_cluster(app: object, kubeconfig_text: str) -> str:
    """Register (or re-key, on a later run) the demo cluster; returns a fresh admin token."""
    from resolvers import cluster_mutations
    from resolvers.context import Context

    state = app.state  # type: ignore[attr-defined]
    pool, settings, vault = state.pool, state.settings, state.vault
    async with pool.acquire() as conn:
        org_id = await conn.fetchval("SELECT id FROM organizations WHERE slug = $1", DEMO_ORG)
        if org_id is None:
            org_id = await create_organization(conn, slug=DEMO_ORG, name="Demo")
        issued = await create_token(conn, org_slug=DEMO_ORG, role="admin", name="demo")
        existing = await conn.fetchval(
            "SELECT id FROM k8s_clusters WHERE organization_id = $1 AND name = $2",
            org_id, DEMO_CLUSTER,
        )
    ctx = Context(
        pool=pool, settings=settings, vault=vault, cursor_key=b"",
        principal=Principal(organization_id=org_id, organization_slug=DEMO_ORG,
                            role=Role.ADMIN, token_id=issued.id),
    )
    if existing is None:
        await cluster_mutations.register_cluster(ctx, cluster_mutations.ClusterInputArgs(
            name=DEMO_CLUSTER, provider="k3s", kubeconfig=kubeconfig_text, region="local",
            labels={"env": "demo"},
        ))
    else:
        await cluster_mutations.rotate_credentials(ctx, existing, kubeconfig_text, None)
    return issued.token


async def run_demo(settings: Settings, *, host: str, port: int, fleet: str, seed: int) -> None:
    from app.http_protocol import uvicorn_http_options
    from app.server import create_app
    from kubesim import KubeSim

    app = create_app(settings)
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, lifespan="on",
                                           log_level="warning",
                                           **uvicorn_http_options(settings)))
    async with KubeSim.start(fleet=fleet, seed=seed, realtime=True) as sim:
        serving = asyncio.create_task(server.serve())
        while not server.started:
            if serving.done():
                await serving
                return
            await asyncio.sleep(0.05)
        token = await register_demo_cluster(app, yaml.safe_dump(sim.kubeconfig))
        # Demo only: GraphiQL opens with the admin token already in its headers editor. A
        # real server never sets this, so its pages never carry a token.
        app.state.graphiql_initial_headers = {"Authorization": f"Bearer {token}"}
        print(f"\nFleetGraph demo is up. kubesim ({fleet} fleet, seed {seed}) at {sim.url}")
        print(f"GraphiQL: http://{host}:{port}/graphql")
        print(f'Send the header {{"Authorization": "Bearer {token}"}} (admin, org "demo").\n',
              flush=True)
        await serving
