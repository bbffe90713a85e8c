"""The server shell over real HTTP: liveness, readiness and a GraphQL round trip."""

from __future__ import annotations

from typing import Any

import httpx

from app.migrations import head_revision
from app.server import create_app
from app.settings import Settings
from app.vault import generate_key
from tests.api import running_api
from tests.live_server import live_server


async def test_healthz_readyz_and_typename_over_http(database_url: str, db_pool: Any) -> None:
    async with running_api(database_url, db_pool, slug_prefix="srv") as api:
        http = api.http
        assert (await http.get("/healthz")).json() == {"status": "ok"}
        ready = await http.get("/readyz")
        assert ready.status_code == 200
        assert ready.json() == {"status": "ok", "database": "reachable",
                                "revision": head_revision()}
        answer = await api.gql("{ __typename }", token=api.a.tokens["viewer"])
        assert answer == {"data": {"__typename": "Query"}}
        page = await http.get("/graphql", headers={"Accept": "text/html"})
        assert page.status_code == 200 and "graphiql" in page.text.lower()


async def test_readyz_is_unavailable_when_the_database_is_not_migrated(
    empty_database_url: str,
) -> None:
    settings = Settings(database_url=empty_database_url, sync_enabled=False,
                        encryption_keys=generate_key())
    app = create_app(settings, migrate=False)
    async with live_server(app) as base, httpx.AsyncClient(base_url=base) as http:
        ready = await http.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["revision"] is None
        assert (await http.get("/healthz")).status_code == 200
