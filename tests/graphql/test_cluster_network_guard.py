"""Registering, re-keying and testing clusters against the SSRF guard, over GraphQL.

``closed`` is a server with the default policy (``FLEETGRAPH_ALLOW_LOCAL_CLUSTERS`` off): every
spelling of loopback, metadata and link-local is refused at registration and rotation, and a
name that only DNS turns into loopback is refused where ``testClusterConnection`` connects,
before any byte reaches the loopback server. Fake API servers listen on loopback only.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import yaml
from aiohttp import web

from app.credentials import seal_kubeconfig
from app.kubeconfig import MAX_KUBECONFIG_NODES, sanitize_kubeconfig
from app.vault import Vault
from schema.relay import to_global_id
from tests.api import Api, running_api
from tests.app.test_kube_client import RecordingServer, serve
from tests.factories import make_cluster
from tests.graphql.registry_helpers import REGISTER, cluster_input, kubeconfig

# Look-alike characters (fullwidth digits and letters, enclosed letters) are the point here.
# ruff: noqa: RUF001

ROTATE = """
mutation($id: ID!, $k: String!) {
  rotateClusterCredentials(id: $id, kubeconfig: $k) {
    __typename
    ... on Cluster { apiServerUrl }
    ... on InvalidInput { fieldErrors { field message } }
  }
}"""
TEST_CONNECTION = """
mutation($id: ID!) { testClusterConnection(id: $id) { reachable serverVersion error } }"""

LOOPBACK = [
    "https://127.0.0.1:6443", "https://127.1:6443", "https://127.0.1", "https://0177.0.0.1",
    "https://0x7f000001", "https://0x7f.1", "https://2130706433", "https://017700000001",
    "https://[::1]:6443", "https://[::ffff:127.0.0.1]", "https://[::ffff:7f00:1]",
    "https://[0:0:0:0:0:ffff:7f00:1]", "https://[::127.0.0.1]", "https://[64:ff9b::7f00:1]",
    "https://localhost", "https://localhost.", "https://LOCALHOST", "https://api.localhost",
    "https://ⓛocalhost", "https://ｌｏｃａｌｈｏｓｔ", "https://１２７.０.０.１",
    "https://127。0。0。1", "http://127.1:8080", "http://0x7f000001",
]
METADATA = [
    "https://169.254.169.254", "https://169.254.43518", "https://0xa9fea9fe",
    "https://2852039166", "https://0251.0376.0251.0376", "https://[::ffff:169.254.169.254]",
    "https://[::ffff:a9fe:a9fe]", "https://[fd00:ec2::254]", "https://[fd20:ce::254]",
    "https://168.63.129.16", "https://100.100.100.200", "https://169.254.170.2",
    "https://metadata.google.internal", "https://metadata.google.internal.",
    "https://METADATA.GOOGLE.INTERNAL", "https://ｍｅｔａｄａｔａ.google.internal",
    "https://metadata.goog", "https://[2002:a9fe:a9fe::]", "https://169.254.1.1",
    "https://[fe80::1]", "https://0.0.0.0", "https://[::]", "https://224.0.0.1",
    "https://255.255.255.255",
]


@pytest.fixture(scope="module")
async def closed(database_url: str, db_pool: asyncpg.Pool) -> AsyncIterator[Api]:
    async with running_api(database_url, db_pool, slug_prefix=f"ssrf{uuid.uuid4().hex[:4]}",
                           allow_local_clusters=False) as running:
        yield running


@pytest.fixture(scope="module")
async def api(database_url: str, db_pool: asyncpg.Pool) -> AsyncIterator[Api]:
    """A server allowing local clusters, with tenants of its own: the clusters registered here
    stay out of the session-wide ``api`` fixture's tenants."""
    async with running_api(database_url, db_pool,
                           slug_prefix=f"ssrf-open{uuid.uuid4().hex[:4]}") as running:
        yield running


async def _register(api: Api, server: str, *, name: str | None = None) -> dict[str, Any]:
    name = name or f"net-{uuid.uuid4().hex[:8]}"
    body = await api.gql(REGISTER, {"input": cluster_input(
        name, kubeconfig=kubeconfig(server=server))}, token=api.a.tokens["admin"])
    result: dict[str, Any] = body["data"]["registerCluster"]
    return result


def _server_refusal(result: dict[str, Any]) -> str:
    assert result["__typename"] == "InvalidInput", result
    [problem] = result["fieldErrors"]
    assert problem["field"] == "kubeconfig.server"
    message: str = problem["message"]
    return message


@pytest.mark.parametrize("server", LOOPBACK)
async def test_loopback_in_every_spelling_is_refused_at_registration(
    closed: Api, server: str
) -> None:
    before = await closed.pool.fetchval("SELECT count(*) FROM k8s_clusters")
    message = _server_refusal(await _register(closed, server))
    assert "FLEETGRAPH_ALLOW_LOCAL_CLUSTERS=1" in message
    assert await closed.pool.fetchval("SELECT count(*) FROM k8s_clusters") == before


@pytest.mark.parametrize("server", METADATA)
async def test_metadata_link_local_and_special_addresses_are_refused_at_registration(
    closed: Api, api: Api, server: str
) -> None:
    message = _server_refusal(await _register(closed, server))
    assert "FLEETGRAPH_ALLOW_LOCAL_CLUSTERS" not in message
    # Allowing local clusters (the demo, the tests) does not open these.
    _server_refusal(await _register(api, server))


async def test_rotation_refuses_the_same_spellings_and_keeps_the_old_credentials(
    closed: Api,
) -> None:
    created = await _register(closed, "https://10.20.30.40:6443")
    assert created["__typename"] == "Cluster"
    for server in ("https://127.1", "https://[::ffff:169.254.169.254]", "https://ⓛocalhost",
                   "https://metadata.google.internal"):
        body = await closed.gql(ROTATE, {"id": created["id"], "k": kubeconfig(server=server)},
                                token=closed.a.tokens["admin"])
        _server_refusal(body["data"]["rotateClusterCredentials"])
    url = await closed.pool.fetchval("SELECT api_server_url FROM k8s_clusters WHERE name = $1",
                                     created["name"])
    assert url == "https://10.20.30.40:6443"


@pytest.mark.parametrize("server", [
    "https://10.0.0.1:6443", "https://172.16.0.5", "https://192.168.49.2:8443",
    "https://[fd12:3456::1]:6443", "https://kube.example.com", "https://100.64.0.10",
])
async def test_private_ranges_and_ordinary_names_are_accepted(closed: Api, server: str) -> None:
    assert (await _register(closed, server))["__typename"] == "Cluster"


async def _insert_cluster(api: Api, server: str) -> str:
    """A cluster row sealed exactly as registration seals it, for a server registration would
    refuse today: the state after a DNS change, or after the operator closed local clusters."""
    assert api.settings.encryption_keys is not None
    vault = Vault.from_env(api.settings.encryption_keys)
    kc = sanitize_kubeconfig(kubeconfig(server=server))
    cluster_id = uuid.uuid4()
    sealed = seal_kubeconfig(vault, cluster_id, kc)
    async with api.pool.acquire() as conn:
        await make_cluster(conn, api.a.org_id, id=cluster_id, api_server_url=kc.server_url,
                           kubeconfig_encrypted=sealed.ciphertext,
                           kubeconfig_key_id=sealed.key_id, context_name=kc.context_name)
    return str(to_global_id("Cluster", cluster_id))


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1"])
async def test_test_connection_refuses_loopback_where_it_connects(
    closed: Api, api: Api, host: str
) -> None:
    server = RecordingServer()
    async with serve(server.handle) as port:
        refused_id = await _insert_cluster(closed, f"http://{host}:{port}")
        body = await closed.gql(TEST_CONNECTION, {"id": refused_id},
                                token=closed.a.tokens["operator"])
        refused = body["data"]["testClusterConnection"]
        assert server.requests == []
        # Control: the same server is reached by a server that allows local clusters.
        allowed_id = (await _register(api, f"http://{host}:{port}"))["id"]
        body = await api.gql(TEST_CONNECTION, {"id": allowed_id}, token=api.a.tokens["operator"])
        allowed = body["data"]["testClusterConnection"]
    assert refused["reachable"] is False and refused["serverVersion"] is None
    assert refused["error"].startswith("connection refused by FleetGraph: ")
    assert "loopback" in refused["error"]
    assert allowed["reachable"] is True and allowed["serverVersion"] == "v1.31.2"
    assert len(server.requests) == 1


async def test_test_connection_never_follows_a_redirect(api: Api) -> None:
    target = RecordingServer()
    async with serve(target.handle) as target_port:

        async def redirect(request: web.Request) -> web.StreamResponse:
            raise web.HTTPTemporaryRedirect(f"http://127.0.0.1:{target_port}/version")

        async with serve(redirect) as port:
            created = await _register(api, f"http://127.0.0.1:{port}")
            body = await api.gql(TEST_CONNECTION, {"id": created["id"]},
                                 token=api.a.tokens["operator"])
    probe = body["data"]["testClusterConnection"]
    assert target.requests == []
    assert probe["serverVersion"] is None
    assert probe["error"] == ("the API server answered with a redirect (HTTP 307), which "
                              "FleetGraph never follows")
    version = await api.pool.fetchval(
        "SELECT kubernetes_version FROM k8s_clusters WHERE name = $1", created["name"])
    assert version is None


async def test_test_connection_takes_nothing_from_the_process_environment(
    api: Api, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login thief password netrc-secret-5c2\n")
    netrc.chmod(0o600)
    proxy = RecordingServer()
    server = RecordingServer()
    async with serve(proxy.handle) as proxy_port, serve(server.handle) as port:
        monkeypatch.setenv("NETRC", str(netrc))
        for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
            monkeypatch.setenv(name, f"http://127.0.0.1:{proxy_port}")
        for name in ("NO_PROXY", "no_proxy"):
            monkeypatch.delenv(name, raising=False)
        text = yaml.safe_dump({
            "clusters": [{"name": "c", "cluster": {"server": f"http://127.0.0.1:{port}"}}],
            "contexts": [{"name": "x", "context": {"cluster": "c"}}],  # no user: anonymous
        })
        body = await api.gql(REGISTER, {"input": cluster_input("env-free", kubeconfig=text)},
                             token=api.a.tokens["admin"])
        created = body["data"]["registerCluster"]
        body = await api.gql(TEST_CONNECTION, {"id": created["id"]},
                             token=api.a.tokens["operator"])
    assert body["data"]["testClusterConnection"]["reachable"] is True
    assert proxy.requests == []
    assert server.requests == [("/version", None)]  # no Basic auth from ~/.netrc


# --- hostile YAML ----------------------------------------------------------------------------


async def _healthz_latencies(api: Api, until: asyncio.Future[Any]) -> list[float]:
    latencies: list[float] = []
    while not until.done():
        started = time.monotonic()
        response = await api.http.get("/healthz")
        assert response.status_code == 200
        latencies.append(time.monotonic() - started)
        await asyncio.sleep(0.02)
    return latencies


def _tiny_nodes() -> str:
    return "a: [" + ",".join(["1"] * 460_000) + "]\n"


def _many_contexts() -> str:
    return yaml.safe_dump({
        "clusters": [{"name": "c", "cluster": {"server": "https://10.0.0.1"}}],
        "contexts": [{"name": f"ctx-{i}", "context": {"cluster": "c"}} for i in range(10_000)],
        "current-context": "ctx-0",
    })


@pytest.mark.parametrize(("document", "fragment"), [
    (_tiny_nodes, f"more than {MAX_KUBECONFIG_NODES} YAML nodes"),
    (_many_contexts, f"more than {MAX_KUBECONFIG_NODES} YAML nodes"),
])
async def test_huge_kubeconfigs_are_refused_without_holding_the_event_loop(
    api: Api, document: Any, fragment: str
) -> None:
    text = document()
    assert len(text.encode()) < 1024 * 1024
    started = time.monotonic()
    registering = asyncio.ensure_future(api.gql(
        REGISTER, {"input": cluster_input("huge", kubeconfig=text)}, token=api.a.tokens["admin"]))
    latencies = await _healthz_latencies(api, registering)
    body = await registering
    elapsed = time.monotonic() - started
    result = body["data"]["registerCluster"]
    assert result["__typename"] == "InvalidInput"
    [problem] = result["fieldErrors"]
    assert problem["field"] == "kubeconfig" and fragment in problem["message"]
    assert elapsed < 5.0
    # The loop kept serving while the document was parsed in a worker thread: parsed on the
    # loop, one /healthz would have waited for nearly the whole registration.
    assert len(latencies) >= 3 and max(latencies) < 0.6 * elapsed, (max(latencies), elapsed)


@pytest.mark.parametrize("text", [
    "apiVersion: v1\nusers:\n- name: u\n  user:\n    password: *Secr3tCanary\n",
    "apiVersion: v1\nusers:\n- name: u\n  user:\n    password: !Secr3tCanary x\n",
    "apiVersion: v1\nusers:\n- name: u\n  user:\n    token: !!int Secr3tCanary\n",
])
async def test_yaml_errors_name_the_kubeconfig_field_and_never_echo_it(
    api: Api, text: str
) -> None:
    body = await api.gql(REGISTER, {"input": cluster_input("yaml-echo", kubeconfig=text)},
                         token=api.a.tokens["admin"])
    result = body["data"]["registerCluster"]
    [problem] = result["fieldErrors"]
    assert problem["field"] == "kubeconfig"  # not kubeconfig.kubeconfig
    assert "line 5" in problem["message"]
    assert "Secr3tCanary" not in str(body)


async def test_a_missing_context_names_the_context_argument(api: Api) -> None:
    body = await api.gql(REGISTER, {"input": cluster_input("ctx", context="nope")},
                         token=api.a.tokens["admin"])
    [problem] = body["data"]["registerCluster"]["fieldErrors"]
    assert problem["field"] == "context" and "nope" in problem["message"]

