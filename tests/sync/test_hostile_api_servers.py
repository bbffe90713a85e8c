"""A registered "API server" that is not one: junk answers, redirects, loopback behind a name.

Each cluster is registered over GraphQL, synced by a real ClusterSync against a fake server
on a loopback port, and judged the way a user sees it: ``status`` and ``lastSyncError`` on
the cluster, plus what the fake server received.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from typing import Any

import asyncpg
import pytest
from aiohttp import web

from app.network_guard import NetworkPolicy
from app.settings import Settings
from app.vault import Vault
from sync.cluster_sync import SyncOptions
from sync.supervisor import options_from_settings
from tests.api import Api, running_api
from tests.app.test_kube_client import VERSION_INFO, RecordingServer, serve
from tests.graphql.registry_helpers import REGISTER, cluster_input, kubeconfig
from tests.sync.conftest import FAST, eventually, running_sync

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
STATUS = "query($id: ID!) { cluster(id: $id) { status lastSyncError kubernetesVersion } }"
# Two seconds of sync against each server; before answers were checked, a junk server got
# about a thousand requests a second.
WINDOW_S = 2.0
MAX_REQUESTS_IN_WINDOW = 120


def _empty_list(request: web.Request, **metadata: Any) -> web.StreamResponse:
    return web.json_response({"kind": "PodList", "apiVersion": "v1", "items": [],
                              "metadata": {"resourceVersion": "7", **metadata}})


def _kubernetes_until_watch(watch: Handler) -> Handler:
    """/version and lists as a real API server answers them; ``watch`` answers watches."""

    async def handle(request: web.Request) -> web.StreamResponse:
        if request.path == "/version":
            return web.json_response(VERSION_INFO)
        if request.query.get("watch") == "true":
            return await watch(request)
        return _empty_list(request)

    return handle


async def _object(request: web.Request) -> web.StreamResponse:
    return web.json_response({"hello": "world"})


async def _array(request: web.Request) -> web.StreamResponse:
    return web.json_response([])


async def _html(request: web.Request) -> web.StreamResponse:
    return web.Response(text="<html><body>login</body></html>", content_type="text/html")


async def _list_without_version(request: web.Request) -> web.StreamResponse:
    if request.path == "/version":
        return web.json_response(VERSION_INFO)
    return web.json_response({"kind": "PodList", "items": [], "metadata": {}})


async def _continue_forever(request: web.Request) -> web.StreamResponse:
    if request.path == "/version":
        return web.json_response(VERSION_INFO)
    return _empty_list(request, **{"continue": "again"})


async def _not_events(request: web.Request) -> web.StreamResponse:
    return web.Response(text='{"hello": "world"}\n', content_type="application/json")


async def _ends_at_once(request: web.Request) -> web.StreamResponse:
    return web.Response(body=b"", content_type="application/json")


JUNK: dict[str, Handler] = {
    "object-to-every-path": _object,
    "array-to-every-path": _array,
    "html-to-every-path": _html,
    "lists-without-resourceVersion": _list_without_version,
    "the-same-continue-token-forever": _continue_forever,
    "watch-answers-non-events": _kubernetes_until_watch(_not_events),
    "watch-ends-at-once-every-time": _kubernetes_until_watch(_ends_at_once),
}


class Counting:
    """Wraps a handler and counts what it is asked."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.paths: list[str] = []

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.paths.append(request.path_qs)
        return await self.handler(request)


@pytest.fixture(scope="module")
async def api(database_url: str, db_pool: asyncpg.Pool) -> AsyncIterator[Api]:
    """A server of this module's own (local clusters allowed, like the session-wide one), so
    the clusters registered here land in tenants no other test counts."""
    async with running_api(database_url, db_pool,
                           slug_prefix=f"hostile{uuid.uuid4().hex[:4]}") as running:
        yield running


def _vault(api: Api) -> Vault:
    assert api.settings.encryption_keys is not None
    return Vault.from_env(api.settings.encryption_keys)


async def _register(api: Api, server: str) -> tuple[str, uuid.UUID]:
    name = f"hostile-{uuid.uuid4().hex[:8]}"
    body = await api.gql(REGISTER, {"input": cluster_input(
        name, kubeconfig=kubeconfig(server=server))}, token=api.a.tokens["admin"])
    created = body["data"]["registerCluster"]
    assert created["__typename"] == "Cluster", body
    cluster_id = await api.pool.fetchval("SELECT id FROM k8s_clusters WHERE name = $1", name)
    return created["id"], cluster_id


async def _status(api: Api, global_id: str) -> dict[str, Any]:
    body = await api.gql(STATUS, {"id": global_id}, token=api.a.tokens["viewer"])
    cluster: dict[str, Any] = body["data"]["cluster"]
    return cluster


@contextlib.asynccontextmanager
async def _syncing(
    api: Api, cluster_id: uuid.UUID, options: SyncOptions = FAST
) -> AsyncIterator[None]:
    async with running_sync(api.pool, _vault(api), cluster_id, options=options, wait=False):
        yield


@pytest.mark.parametrize("kind", list(JUNK))
async def test_a_server_that_is_not_kubernetes_is_an_error_and_never_hot_looped(
    api: Api, kind: str
) -> None:
    server = Counting(JUNK[kind])
    async with serve(server.handle) as port:
        global_id, cluster_id = await _register(api, f"http://127.0.0.1:{port}")
        async with _syncing(api, cluster_id):
            await asyncio.sleep(WINDOW_S)
            seen = len(server.paths)
            cluster = await eventually(
                lambda: _status(api, global_id), lambda c: c["status"] == "UNREACHABLE")
        after = len(server.paths)
        await asyncio.sleep(0.2)
    assert seen <= MAX_REQUESTS_IN_WINDOW, (seen, server.paths[-5:])
    assert len(server.paths) == after  # the sync stopped with its task
    assert cluster["lastSyncError"].startswith("not a Kubernetes API answer: "), cluster
    assert "hello" not in cluster["lastSyncError"] and "<html>" not in cluster["lastSyncError"]


async def _bookmark_then_hold(request: web.Request) -> web.StreamResponse:
    """A quiet watch, as Kubernetes serves one: a BOOKMARK, then the stream stays open."""
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    await response.prepare(request)
    await response.write(b'{"type":"BOOKMARK","object":{"kind":"Pod","apiVersion":"v1",'
                         b'"metadata":{"resourceVersion":"8"}}}\n')
    await asyncio.sleep(WINDOW_S + 1)
    return response


async def test_a_well_behaved_server_still_becomes_active(api: Api) -> None:
    """The same fake server, answering watches the way Kubernetes does: it stays healthy."""
    server = Counting(_kubernetes_until_watch(_bookmark_then_hold))
    async with serve(server.handle) as port:
        global_id, cluster_id = await _register(api, f"http://127.0.0.1:{port}")
        async with _syncing(api, cluster_id):
            await asyncio.sleep(WINDOW_S)
            cluster = await _status(api, global_id)
    assert cluster == {"status": "ACTIVE", "lastSyncError": None,
                       "kubernetesVersion": VERSION_INFO["gitVersion"]}


async def test_a_redirecting_server_is_an_error_and_its_target_is_never_fetched(
    api: Api,
) -> None:
    target = RecordingServer()
    async with serve(target.handle) as target_port:

        async def redirect(request: web.Request) -> web.StreamResponse:
            raise web.HTTPFound(f"http://127.0.0.1:{target_port}/api/v1/namespaces/kube-system"
                                "/secrets")

        async with serve(redirect) as port:
            global_id, cluster_id = await _register(api, f"http://127.0.0.1:{port}")
            async with _syncing(api, cluster_id):
                cluster = await eventually(
                    lambda: _status(api, global_id), lambda c: c["status"] == "UNREACHABLE")
    assert target.requests == []
    assert cluster["lastSyncError"] == "redirected (HTTP 302); FleetGraph never follows redirects"
    assert cluster["kubernetesVersion"] is None


async def test_the_sync_refuses_loopback_behind_a_name_where_it_connects(api: Api) -> None:
    """Registered while allowed (as after a DNS change, or before the operator closed local
    clusters); the sync's own connection is what refuses, and nothing reaches the server."""
    server = Counting(_kubernetes_until_watch(_bookmark_then_hold))
    # The supervisor's own plumbing: settings become each sync's network policy.
    strict = replace(FAST, network=options_from_settings(Settings()).network)
    allowed = Settings(allow_local_clusters=True)
    local = replace(FAST, network=options_from_settings(allowed).network)
    assert strict.network == NetworkPolicy() and local.network.allow_local
    async with serve(server.handle) as port:
        global_id, cluster_id = await _register(api, f"http://localhost:{port}")
        async with _syncing(api, cluster_id, options=strict):
            cluster = await eventually(
                lambda: _status(api, global_id), lambda c: c["status"] == "UNREACHABLE")
            await asyncio.sleep(0.5)  # retries, with backoff, all refused
        assert server.paths == []
        assert cluster["lastSyncError"].startswith("connection refused by FleetGraph: "), cluster
        assert "loopback" in cluster["lastSyncError"]
        # Control: with local clusters allowed, the very same row syncs from the same server.
        async with _syncing(api, cluster_id, options=local):
            await eventually(lambda: _status(api, global_id), lambda c: c["status"] == "ACTIVE")
    assert "/version" in server.paths
