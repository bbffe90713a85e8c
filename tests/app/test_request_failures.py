"""Failures a client cannot cause still get a GraphQL error body with a code: a request over
its execution deadline is stopped with 503 DEADLINE_EXCEEDED, and a database that is down
gives 503 SERVICE_UNAVAILABLE with Retry-After instead of a plain-text 500."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from app.db import EmbeddedPostgres
from app.migrations import upgrade_to_head
from app.server import create_app
from app.settings import Settings
from app.tenancy import create_organization, create_token
from app.vault import generate_key
from tests.api import running_api
from tests.live_server import live_server


async def test_a_request_past_its_deadline_is_stopped_with_503(
    database_url: str, db_pool: Any
) -> None:
    async with running_api(database_url, db_pool, slug_prefix="deadline",
                           request_deadline_s=0.5) as api:
        # Another session holds the clusters table, so the query waits on its lock.
        blocker = await asyncpg.connect(database_url)
        try:
            tx = blocker.transaction()
            await tx.start()
            await blocker.execute("LOCK TABLE k8s_clusters IN ACCESS EXCLUSIVE MODE")
            response = await api.http.post("/graphql", json={
                "query": "{ clusters(first: 1) { totalCount } }"},
                headers={"Authorization": f"Bearer {api.a.tokens['viewer']}"})
            await tx.rollback()
        finally:
            await blocker.close()
        assert response.status_code == 503
        assert response.json() == {"errors": [{
            "message": "the request did not finish within its 0.5 s deadline",
            "extensions": {"code": "DEADLINE_EXCEEDED"}}]}
        # The server is fine afterwards.
        after = await api.gql("{ clusters(first: 1) { totalCount } }",
                              token=api.a.tokens["viewer"])
        assert after == {"data": {"clusters": {"totalCount": 0}}}


async def test_a_database_that_is_down_gives_503_with_a_code() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        embedded = EmbeddedPostgres(Path(tmp) / "pg", delete_on_stop=True)
        url = await asyncio.to_thread(embedded.start)
        await asyncio.to_thread(upgrade_to_head, url)
        conn = await asyncpg.connect(url)
        try:
            await create_organization(conn, slug="down", name="Down")
            token = (await create_token(conn, org_slug="down", role="viewer")).token
        finally:
            await conn.close()
        app = create_app(Settings(database_url=url, encryption_keys=generate_key(),
                                  sync_enabled=False), migrate=False)
        async with live_server(app) as base, httpx.AsyncClient(base_url=base) as http:
            ok = await http.post("/graphql", json={"query": "{ __typename }"},
                                 headers={"Authorization": f"Bearer {token}"})
            assert ok.json() == {"data": {"__typename": "Query"}}
            await asyncio.to_thread(embedded.stop)
            down = await http.post("/graphql", json={"query": "{ __typename }"},
                                   headers={"Authorization": f"Bearer {token}"})
        assert down.status_code == 503
        assert down.headers["retry-after"] == "2"
        assert down.json() == {"errors": [{
            "message": "the database is unavailable; retry shortly",
            "extensions": {"code": "SERVICE_UNAVAILABLE"}}]}
