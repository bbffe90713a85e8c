"""A running FleetGraph API for tests: real uvicorn, real HTTP, two organizations with a token
per role each, so tenancy and role checks are exercised by every test that wants them."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import httpx
from starlette.applications import Starlette

from app.server import create_app
from app.settings import Settings
from app.tenancy import create_organization, create_token
from app.vault import generate_key
from tests.live_server import live_server


@dataclass
class Tenant:
    slug: str
    org_id: Any
    tokens: dict[str, str] = field(default_factory=dict)


@dataclass
class Api:
    base_url: str
    http: httpx.AsyncClient
    settings: Settings
    pool: asyncpg.Pool
    a: Tenant
    b: Tenant
    app: Starlette  # the served app, for tests that hand it a service (tests/clock.py)

    async def gql(self, query: str, variables: dict[str, Any] | None = None, *,
                  token: str | None = None) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        response = await self.http.post(
            "/graphql", json={"query": query, "variables": variables or {}}, headers=headers
        )
        body: dict[str, Any] = response.json()
        return body

    @property
    def ws_url(self) -> str:
        return self.base_url.replace("http://", "ws://") + "/graphql"


async def make_tenant(pool: asyncpg.Pool, slug: str) -> Tenant:
    async with pool.acquire() as conn:
        org_id = await create_organization(conn, slug=slug, name=slug.upper())
        tenant = Tenant(slug=slug, org_id=org_id)
        for role in ("viewer", "operator", "admin"):
            tenant.tokens[role] = (await create_token(conn, org_slug=slug, role=role)).token
    return tenant


@contextlib.asynccontextmanager
async def running_api(
    database_url: str, pool: asyncpg.Pool, *, slug_prefix: str, ws: str | None = None,
    **overrides: Any
) -> AsyncIterator[Api]:
    # Tests point clusters at kubesim and stub servers on 127.0.0.1.
    settings = Settings(database_url=database_url, encryption_keys=generate_key(),
                        sync_enabled=False, allow_local_clusters=True).with_(**overrides)
    app = create_app(settings, migrate=False)
    a = await make_tenant(pool, f"{slug_prefix}-a")
    b = await make_tenant(pool, f"{slug_prefix}-b")
    async with live_server(app, ws=ws) as base, \
            httpx.AsyncClient(base_url=base, timeout=30) as http:
        yield Api(base_url=base, http=http, settings=settings, pool=pool, a=a, b=b,
                  app=app)
