"""Failures a client cannot cause still get a GraphQL error body with a code: a request over
its execution deadline is stopped with 503 DEADLINE_EXCEEDED, and a database that is down
(before or during execution) gives 503 SERVICE_UNAVAILABLE with Retry-After instead of a
plain-text 500 or an INTERNAL error."""

from __future__ import annotations

import asyncio
import logging
import tempfile
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from graphql import GraphQLError

from app.db import EmbeddedPostgres
from app.migrations import upgrade_to_head
from app.server import create_app
from app.settings import Settings
from app.tenancy import create_organization, create_token
from app.vault import generate_key
from schema.extensions import public_error
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
            # Never used before the outage, so no recent lookup of it is cached (app.auth):
            # authenticating it is the first thing that needs the database.
            unseen = (await create_token(conn, org_slug="down", role="viewer")).token
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
                                   headers={"Authorization": f"Bearer {unseen}"})
        assert down.status_code == 503
        assert down.headers["retry-after"] == "2"
        assert down.json() == {"errors": [{
            "message": "the database is unavailable; retry shortly",
            "extensions": {"code": "SERVICE_UNAVAILABLE"}}]}


async def test_a_session_ended_mid_query_gives_503_service_unavailable(
    database_url: str, db_pool: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """The resolver's session is ended by the server while its statement runs (what a
    restart or failover does): the answer is the retryable 503, logged as a warning without a
    traceback, not an INTERNAL error at ERROR."""
    caplog.set_level(logging.INFO)
    async with running_api(database_url, db_pool, slug_prefix="midquery") as api:
        blocker = await asyncpg.connect(database_url)
        observer = await asyncpg.connect(database_url)  # outside a transaction: fresh stats
        try:
            tx = blocker.transaction()
            await tx.start()
            await blocker.execute("LOCK TABLE k8s_clusters IN ACCESS EXCLUSIVE MODE")
            request = asyncio.create_task(api.http.post("/graphql", json={
                "query": "{ clusters(first: 1) { totalCount } }"},
                headers={"Authorization": f"Bearer {api.a.tokens['viewer']}"}))
            ended = 0
            for _ in range(500):  # end every session that waits on the lock, until answered
                ended += sum(r["ended"] for r in await observer.fetch(
                    "SELECT pg_terminate_backend(pid, 5000) AS ended FROM pg_stat_activity"
                    " WHERE wait_event_type = 'Lock' AND pid <> $1", blocker.get_server_pid()))
                if request.done():
                    break
                await asyncio.sleep(0.02)
            assert ended >= 1
            response = await request
            await tx.rollback()
        finally:
            await blocker.close()
            await observer.close()
        assert response.status_code == 503
        assert response.headers["retry-after"] == "2"
        assert response.json() == {"data": None, "errors": [{
            "message": "the database is unavailable; retry shortly",
            "locations": [{"line": 1, "column": 3}], "path": ["clusters"],
            "extensions": {"code": "SERVICE_UNAVAILABLE"}}]}
        graphql_logs = [(r.levelname, r.exc_info) for r in caplog.records
                        if r.name == "fleetgraph.graphql"]
        assert graphql_logs == [("WARNING", None)]
        assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []
        # The pool replaced the ended session: the next request is answered.
        after = await api.gql("{ clusters(first: 1) { totalCount } }",
                              token=api.a.tokens["viewer"])
        assert after == {"data": {"clusters": {"totalCount": 0}}}


def test_a_statement_past_the_database_statement_timeout_is_a_deadline() -> None:
    """PostgreSQL's statement timeout is the request's deadline kept by the database, not an
    outage and not a server fault (asyncpg files the cancel under operator intervention)."""
    cancelled = asyncpg.QueryCanceledError("canceling statement due to statement timeout")
    coded = public_error(GraphQLError("x", path=["clusters"], original_error=cancelled))
    assert (coded.message, coded.extensions) == (
        "a statement of this request ran past the database's statement timeout",
        {"code": "DEADLINE_EXCEEDED"})
    lost = asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation")
    assert public_error(GraphQLError("x", original_error=lost)).extensions == {
        "code": "SERVICE_UNAVAILABLE"}
