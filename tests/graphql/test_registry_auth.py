"""Authentication, roles and tenancy through real HTTP: who may do what to which cluster."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from app.auth import RECENT_TOKEN_SECONDS
from app.tenancy import revoke_token
from tests.api import Api
from tests.graphql.registry_helpers import REGISTER, cluster_input, error_codes, kubeconfig

MUTATIONS = {
    "register": (REGISTER, "admin"),
    "update": ('mutation($id: ID!) { updateCluster(id: $id, input: {region: "r2"}) '
               "{ __typename } }", "admin"),
    "rotate": ("mutation($id: ID!, $k: String!) { rotateClusterCredentials(id: $id, "
               "kubeconfig: $k) { __typename } }", "admin"),
    "test": ("mutation($id: ID!) { testClusterConnection(id: $id) { reachable } }", "operator"),
    "sync": ("mutation($id: ID!) { triggerSync(clusterId: $id) { id } }", "operator"),
    "delete": ("mutation($id: ID!) { deleteCluster(id: $id) { id } }", "admin"),
}
RANK = {"viewer": 0, "operator": 1, "admin": 2}


async def _register(api: Api, name: str, token: str | None = None) -> str:
    body = await api.gql(REGISTER, {"input": cluster_input(name)},
                         token=token or api.a.tokens["admin"])
    result = body["data"]["registerCluster"]
    assert result["__typename"] == "Cluster", body
    cluster_id: str = result["id"]
    return cluster_id


def _variables(name: str, cluster_id: str, suffix: str) -> dict[str, Any]:
    if name == "register":
        return {"input": cluster_input(f"matrix-{suffix}")}
    if name == "rotate":
        return {"id": cluster_id, "k": kubeconfig(token="rotated")}
    return {"id": cluster_id}


async def test_every_operation_needs_a_valid_token(api: Api) -> None:
    for token in (None, "fgt_not-a-real-token", "Bearer", "x" * 500):
        for query in ("{ __typename }", "{ clusters { totalCount } }",
                      MUTATIONS["delete"][0]):
            body = await api.gql(query, {"id": "Q2x1c3Rlcjox"}, token=token)
            assert error_codes(body) == ["UNAUTHENTICATED"], (token, query, body)
            assert body.get("data") is None
    # Health endpoints and the GraphiQL page stay open.
    assert (await api.http.get("/healthz")).status_code == 200
    assert (await api.http.get("/graphql", headers={"Accept": "text/html"})).status_code == 200


async def test_a_revoked_token_stops_working(api: Api, db_pool: Any) -> None:
    from app.tenancy import create_token

    async with db_pool.acquire() as conn:
        issued = await create_token(conn, org_slug=api.a.slug, role="viewer")
        assert (await api.gql("{ viewer { role } }", token=issued.token))["data"] == {
            "viewer": {"role": "VIEWER"}}
        await revoke_token(conn, token_id=str(issued.id))
    # A replica reuses a token's lookup for RECENT_TOKEN_SECONDS: refused once that is over.
    await asyncio.sleep(RECENT_TOKEN_SECONDS)
    body = await api.gql("{ viewer { role } }", token=issued.token)
    assert error_codes(body) == ["UNAUTHENTICATED"]


async def test_role_matrix_for_every_mutation(api: Api) -> None:
    for role in ("viewer", "operator", "admin"):
        for name, (query, needed) in MUTATIONS.items():
            cluster_id = await _register(api, f"rm-{role}-{name}")
            body = await api.gql(query, _variables(name, cluster_id, role),
                                 token=api.a.tokens[role])
            if RANK[role] >= RANK[needed]:
                assert "errors" not in body, (role, name, body)
            else:
                assert error_codes(body) == ["FORBIDDEN"], (role, name, body)


async def test_another_tenants_cluster_behaves_exactly_like_a_missing_one(api: Api) -> None:
    cluster_id = await _register(api, "tenant-a-only")
    before = await api.pool.fetchrow(
        "SELECT name, region, kubeconfig_encrypted, updated_at FROM k8s_clusters WHERE name = $1",
        "tenant-a-only")
    missing = __import__("base64").b64encode(f"Cluster:{uuid.uuid4()}".encode()).decode()
    probes = [
        ("query($id: ID!) { cluster(id: $id) { name } }", {}),
        *[(q, _variables(n, "", "x")) for n, (q, _) in MUTATIONS.items() if n != "register"],
    ]
    for query, extra in probes:
        answers = []
        for target in (cluster_id, missing):
            variables = {**extra, "id": target}
            body = await api.gql(query, variables, token=api.b.tokens["admin"])
            answers.append((error_codes(body), [e["message"] for e in body["errors"]]))
        assert answers[0] == answers[1] == (["NOT_FOUND"], [answers[0][1][0]]), (query, answers)
    for target in (cluster_id, missing):  # node(id) is Relay's: null, no error, for both
        body = await api.gql("query($id: ID!) { node(id: $id) { id } }", {"id": target},
                             token=api.b.tokens["admin"])
        assert body == {"data": {"node": None}}, body
    listed = await api.gql("{ clusters { totalCount edges { node { name } } } }",
                           token=api.b.tokens["admin"])
    assert "tenant-a-only" not in str(listed)
    after = await api.pool.fetchrow(
        "SELECT name, region, kubeconfig_encrypted, updated_at FROM k8s_clusters WHERE name = $1",
        "tenant-a-only")
    assert after == before


async def test_abuse_limits_are_refused_with_codes(api: Api) -> None:
    token = api.a.tokens["viewer"]
    # Aliases: 60 aliases of one field, past the limit of 30.
    aliased = "{ " + " ".join(f"a{i}: viewer {{ role }}" for i in range(60)) + " }"
    assert error_codes(await api.gql(aliased, token=token)) == ["BAD_USER_INPUT"]
    # Tokens: a document of 6,000 tokens, past the limit of 5,000.
    long_doc = "{ " + "__typename " * 6000 + "}"
    assert error_codes(await api.gql(long_doc, token=token)) == ["BAD_USER_INPUT"]
    huge = await api.gql("{ clusters(first: 100000) { totalCount } }", token=token)
    assert error_codes(huge) == ["BAD_USER_INPUT"] and "first" in huge["errors"][0]["message"]
    oversized = await api.http.post(
        "/graphql", content=b'{"query": "{ __typename }", "x": "' + b"a" * 2_000_000 + b'"}',
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    assert oversized.status_code == 413
    assert oversized.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


async def test_malformed_ids_are_bad_user_input_naming_the_field(api: Api) -> None:
    body = await api.gql('{ cluster(id: "!!!") { name } }', token=api.a.tokens["viewer"])
    assert error_codes(body) == ["BAD_USER_INPUT"] and body["errors"][0]["message"].startswith(
        "id:")


def test_unexpected_errors_become_internal_without_details(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from graphql import GraphQLError

    from schema.extensions import log_error, public_error

    boom = RuntimeError("SELECT secret FROM k8s_clusters -- /srv/app.py line 3")
    error = GraphQLError("SELECT secret FROM k8s_clusters", original_error=boom)
    coded = public_error(error)
    assert coded.message == "internal error" and coded.extensions == {"code": "INTERNAL"}
    assert "SELECT" not in str(coded.formatted)
    log_error(error)
    # The server log keeps the cause, at ERROR, with its traceback.
    assert [(r.levelname, r.exc_info and r.exc_info[0]) for r in caplog.records] == [
        ("ERROR", RuntimeError)]


async def test_introspection_graphiql_depth_and_local_clusters_are_settings(
    database_url: str, db_pool: Any
) -> None:
    from tests.api import running_api

    async with running_api(database_url, db_pool, slug_prefix="noi", introspection=False,
                           graphiql=False, max_query_depth=3,
                           allow_local_clusters=False) as closed:
        # By default a cluster may not point the server at itself or at cloud metadata.
        for server in ("http://127.0.0.1:6443", "https://localhost:6443",
                       "https://169.254.169.254", "https://[::1]:6443"):
            refused = await closed.gql(REGISTER, {"input": cluster_input(
                "local", kubeconfig=kubeconfig(server=server))}, token=closed.a.tokens["admin"])
            result = refused["data"]["registerCluster"]
            assert result["__typename"] == "InvalidInput", (server, refused)
            assert [e["field"] for e in result["fieldErrors"]] == ["kubeconfig.server"]
        remote = await closed.gql(REGISTER, {"input": cluster_input(
            "remote", kubeconfig=kubeconfig(server="https://10.20.0.1:6443"))},
            token=closed.a.tokens["admin"])
        assert remote["data"]["registerCluster"]["__typename"] == "Cluster"
        token = closed.a.tokens["viewer"]
        body = await closed.gql("{ __schema { queryType { name } } }", token=token)
        assert set(error_codes(body)) == {"BAD_USER_INPUT"} and body.get("data") is None
        page = await closed.http.get("/graphql", headers={"Accept": "text/html"})
        assert page.status_code != 200 or "graphiql" not in page.text.lower()
        assert (await closed.gql("{ viewer { role } }", token=token))["data"]
        # The depth limit (3 here) refuses a 4-level query before it runs.
        deep = "{ clusters { edges { node { healthState { status } } } } }"
        assert error_codes(await closed.gql(deep, token=token)) == ["BAD_USER_INPUT"]
        shallow = "{ clusters { edges { cursor } } }"
        assert "errors" not in await closed.gql(shallow, token=token)


async def test_websocket_needs_the_token_in_connection_init(api: Api) -> None:
    import json

    import websockets

    async with websockets.connect(api.ws_url, subprotocols=["graphql-transport-ws"]) as ws:  # type: ignore[list-item]
        await ws.send(json.dumps({"type": "connection_init", "payload": {}}))
        try:
            message = await ws.recv()
            assert json.loads(message)["type"] != "connection_ack"
        except websockets.ConnectionClosed as closed:
            assert closed.rcvd is not None and closed.rcvd.code == 4403
    for key in ("Authorization", "authorization"):
        async with websockets.connect(api.ws_url, subprotocols=["graphql-transport-ws"]) as ws:  # type: ignore[list-item]
            await ws.send(json.dumps({"type": "connection_init",
                                      "payload": {key: f"Bearer {api.a.tokens['viewer']}"}}))
            assert json.loads(await ws.recv())["type"] == "connection_ack"
