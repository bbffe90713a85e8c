"""The cluster registry through GraphQL: registering, refusing hostile kubeconfigs, keeping the
credential out of every response, log and plaintext column, and the list/update/delete paths."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from tests.api import Api
from tests.graphql.registry_helpers import REGISTER, cluster_input, error_codes, kubeconfig

SECRET = "s3cr3t-token-" + "q" * 24


def _field_selection(types: dict[str, Any], type_name: str, depth: int = 0) -> str:
    """Every field of a type, recursively (objects only, arguments left at their defaults)."""
    parts = []
    for f in types[type_name]["fields"]:
        if any(a["type"]["kind"] == "NON_NULL" for a in f["args"]):
            continue
        t = f["type"]
        while t.get("ofType") is not None:
            t = t["ofType"]
        if t["kind"] in ("OBJECT", "INTERFACE"):
            if depth < 2 and not t["name"].endswith("Connection"):
                parts.append(f"{f['name']} {{ {_field_selection(types, t['name'], depth + 1)} }}")
        elif t["kind"] != "UNION":
            parts.append(f["name"])
    return " ".join(parts) or "__typename"


async def test_registered_token_appears_in_no_response_log_or_plaintext_column(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    admin = api.a.tokens["admin"]
    body = await api.gql(REGISTER, {"input": cluster_input(
        "secret-holder", kubeconfig=kubeconfig(token=SECRET), labels={"env": "prod"})},
        token=admin)
    created = body["data"]["registerCluster"]
    assert created["status"] == "PENDING" and created["labels"] == {"env": "prod"}
    schema = await api.gql(
        "{ __schema { types { name kind fields { name args { type { kind } } "
        "type { kind name ofType { kind name ofType { kind name ofType { kind name } } } } } } } }",
        token=admin)
    types = {t["name"]: t for t in schema["data"]["__schema"]["types"] if t["fields"]}
    everything = _field_selection(types, "Cluster")
    for query in (f"query($id: ID!) {{ cluster(id: $id) {{ {everything} }} }}",
                  f"query($id: ID!) {{ node(id: $id) {{ ... on Cluster {{ {everything} }} }} }}",
                  f"{{ clusters {{ edges {{ node {{ {everything} }} }} }} }}"):
        answer = await api.gql(query, {"id": created["id"]}, token=admin)
        assert "errors" not in answer, answer
        assert SECRET not in str(answer)
    # A failing probe's error text is scrubbed too (nothing listens on :6443 here).
    probe = await api.gql(
        "mutation($id: ID!) { testClusterConnection(id: $id) { reachable error } }",
        {"id": created["id"]}, token=admin)
    assert probe["data"]["testClusterConnection"]["reachable"] is False
    assert SECRET not in str(probe)
    row = await api.pool.fetchrow(
        "SELECT * FROM k8s_clusters WHERE name = 'secret-holder'")
    assert all(SECRET.encode() not in (v if isinstance(v, bytes) else str(v).encode())
               for v in row.values())
    assert SECRET not in caplog.text


@pytest.mark.parametrize(("where", "extra", "field"), [
    ("user", {"exec": {"command": "sh", "args": ["-c", "touch {marker}"],
                       "apiVersion": "client.authentication.k8s.io/v1"}}, "exec"),
    ("user", {"auth-provider": {"name": "oidc", "config": {"cmd-path": "/bin/sh"}}},
     "auth-provider"),
    ("user", {"tokenFile": "{secret_file}"}, "tokenFile"),
    ("user", {"client-certificate": "/etc/passwd"}, "client-certificate"),
    ("user", {"client-key": "/etc/shadow"}, "client-key"),
    ("cluster", {"certificate-authority": "/etc/ssl/ca.pem"}, "certificate-authority"),
    ("cluster", {"proxy-url": "http://evil.example:3128"}, "proxy-url"),
    ("user", {"surprise": 1}, "surprise"),
])
async def test_hostile_kubeconfigs_are_refused_naming_the_field(
    api: Api, tmp_path: Path, where: str, extra: dict[str, Any], field: str
) -> None:
    marker = tmp_path / "executed"
    secret_file = tmp_path / "token"
    secret_file.write_text("file-token-never-sent")
    filled = {k: (v.replace("{secret_file}", str(secret_file)) if isinstance(v, str) else v)
              for k, v in extra.items()}
    if "exec" in filled:
        filled["exec"] = {**extra["exec"], "args": ["-c", f"touch {marker}"]}
    text = kubeconfig(**{f"{where}_extra": filled})  # type: ignore[arg-type]
    before = await api.pool.fetchval("SELECT count(*) FROM k8s_clusters")
    body = await api.gql(REGISTER, {"input": cluster_input(f"hostile-{field.lower()}",
                                                           kubeconfig=text)},
                         token=api.a.tokens["admin"])
    result = body["data"]["registerCluster"]
    assert result["__typename"] == "InvalidInput"
    [problem] = result["fieldErrors"]
    assert problem["field"].startswith("kubeconfig.") and problem["field"].endswith(field)
    assert problem["message"]
    assert not marker.exists()
    assert "file-token-never-sent" not in str(body)
    assert await api.pool.fetchval("SELECT count(*) FROM k8s_clusters") == before


async def test_invalid_inputs_are_reported_per_field_and_change_nothing(api: Api) -> None:
    admin = api.a.tokens["admin"]
    assert (await api.gql(REGISTER, {"input": cluster_input("dup-name")}, token=admin)
            )["data"]["registerCluster"]["__typename"] == "Cluster"
    cases = [
        (cluster_input("dup-name"), ["name"]),
        (cluster_input("Bad_Name!"), ["name"]),
        (cluster_input("ok-name", labels={"bad key!": "x", "fine": "in valid"}),
         ["labels.bad key!", "labels.fine"]),
        (cluster_input("ok-name", pricing={"cpuCoreHour": "-1"}), ["pricing.cpuCoreHour"]),
        (cluster_input("ok-name", kubeconfig="a: [unclosed"), None),
        (cluster_input("ok-name", kubeconfig="x" * (1024 * 1024 + 1)), None),
    ]
    for variables, fields in cases:
        body = await api.gql(REGISTER, {"input": variables}, token=admin)
        result = body["data"]["registerCluster"]
        assert result["__typename"] == "InvalidInput", body
        found = [e["field"] for e in result["fieldErrors"]]
        if fields is None:
            assert len(found) == 1 and found[0].startswith("kubeconfig")
        else:
            assert sorted(found) == sorted(fields)
    assert await api.pool.fetchval(
        "SELECT count(*) FROM k8s_clusters WHERE name IN ('ok-name', 'Bad_Name!')") == 0


async def test_update_rotate_and_delete_cascade(api: Api) -> None:
    admin = api.a.tokens["admin"]
    created = (await api.gql(REGISTER, {"input": cluster_input("lifecycle")}, token=admin)
               )["data"]["registerCluster"]
    cluster_uuid = await api.pool.fetchval("SELECT id FROM k8s_clusters WHERE name = 'lifecycle'")
    updated = await api.gql(
        'mutation($id: ID!) { updateCluster(id: $id, input: {name: "lifecycle-2", '
        'labels: {tier: "gold"}, enabled: false}) { ... on Cluster { name labels status } } }',
        {"id": created["id"]}, token=admin)
    assert updated["data"]["updateCluster"] == {
        "name": "lifecycle-2", "labels": {"tier": "gold"}, "status": "DISABLED"}
    old = await api.pool.fetchrow(
        "SELECT kubeconfig_encrypted FROM k8s_clusters WHERE id = $1", cluster_uuid)
    rotated = await api.gql(
        'mutation($id: ID!, $k: String!) { rotateClusterCredentials(id: $id, kubeconfig: $k) '
        "{ ... on Cluster { apiServerUrl status } } }",
        {"id": created["id"], "k": kubeconfig(server="https://10.0.0.1:6443", token="new")},
        token=admin)
    assert rotated["data"]["rotateClusterCredentials"] == {
        "apiServerUrl": "https://10.0.0.1:6443", "status": "DISABLED"}
    new = await api.pool.fetchrow(
        "SELECT kubeconfig_encrypted FROM k8s_clusters WHERE id = $1", cluster_uuid)
    assert new != old
    await api.pool.execute(
        """INSERT INTO k8s_namespaces (cluster_id, uid, name) VALUES ($1, 'u1', 'ns');
        """.strip().rstrip(";"), cluster_uuid)
    await api.pool.execute(
        "INSERT INTO k8s_pods (cluster_id, uid, namespace, name, created_at) "
        "VALUES ($1, 'p1', 'ns', 'p', now())", cluster_uuid)
    deleted = await api.gql("mutation($id: ID!) { deleteCluster(id: $id) { id } }",
                            {"id": created["id"]}, token=admin)
    assert deleted["data"]["deleteCluster"]["id"] == created["id"]
    for table in ("k8s_clusters", "k8s_namespaces", "k8s_pods"):
        column = "id" if table == "k8s_clusters" else "cluster_id"
        assert await api.pool.fetchval(
            f"SELECT count(*) FROM {table} WHERE {column} = $1", cluster_uuid) == 0
    again = await api.gql("mutation($id: ID!) { deleteCluster(id: $id) { id } }",
                          {"id": created["id"]}, token=admin)
    assert error_codes(again) == ["NOT_FOUND"]


async def test_test_connection_reports_version_and_latency(api: Api) -> None:
    seen: list[str] = []

    async def version(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Authorization", ""))
        if request.headers.get("Authorization") != "Bearer conn-token":
            return web.json_response({"kind": "Status", "code": 401}, status=401)
        return web.json_response({"major": "1", "minor": "31", "gitVersion": "v1.31.2"})

    app = web.Application()
    app.router.add_get("/version", version)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        admin = api.a.tokens["admin"]
        created = (await api.gql(REGISTER, {"input": cluster_input(
            "reachable", kubeconfig=kubeconfig(server=f"http://127.0.0.1:{port}",
                                               token="conn-token"))}, token=admin)
                   )["data"]["registerCluster"]
        body = await api.gql(
            "mutation($id: ID!) { testClusterConnection(id: $id) "
            "{ reachable serverVersion latencyMs error } }",
            {"id": created["id"]}, token=api.a.tokens["operator"])
        probe = body["data"]["testClusterConnection"]
        assert probe["reachable"] is True and probe["serverVersion"] == "v1.31.2"
        assert probe["error"] is None and probe["latencyMs"] >= 0
        assert seen == ["Bearer conn-token"]
        version_row = await api.pool.fetchval(
            "SELECT kubernetes_version FROM k8s_clusters WHERE name = 'reachable'")
        assert version_row == "v1.31.2"
    finally:
        await runner.cleanup()


async def test_clusters_filter_order_and_paginate(database_url: str, db_pool: Any) -> None:
    from tests.api import running_api

    async with running_api(database_url, db_pool, slug_prefix="pg") as api:
        admin = api.a.tokens["admin"]
        specs = [("alpha", "EKS", {"env": "prod"}), ("bravo", "GKE", {"env": "dev"}),
                 ("charlie", "EKS", {"env": "prod", "legacy": "yes"}), ("delta", "AKS", {})]
        for name, provider, labels in specs:
            body = await api.gql(REGISTER, {"input": cluster_input(
                name, provider=provider, labels=labels)}, token=admin)
            assert body["data"]["registerCluster"]["__typename"] == "Cluster"
        query = """query($first: Int!, $after: String, $filter: ClusterFilter,
                         $order: ClusterOrder) {
          clusters(first: $first, after: $after, filter: $filter, orderBy: $order) {
            totalCount pageInfo { hasNextPage hasPreviousPage endCursor }
            edges { cursor node { name } } } }"""

        async def names(**variables: Any) -> tuple[list[str], dict[str, Any], int]:
            body = await api.gql(query, {"first": 10, **variables}, token=admin)
            conn = body["data"]["clusters"]
            return [e["node"]["name"] for e in conn["edges"]], conn["pageInfo"], conn["totalCount"]

        assert (await names())[0] == ["alpha", "bravo", "charlie", "delta"]
        assert (await names(order={"field": "NAME", "direction": "DESC"}))[0] == [
            "delta", "charlie", "bravo", "alpha"]
        assert (await names(filter={"labelSelector": "env=prod"}))[0] == ["alpha", "charlie"]
        assert (await names(filter={"labelSelector": "env=prod,!legacy"}))[0] == ["alpha"]
        assert (await names(filter={"labelSelector": "env notin (prod)"}))[0] == [
            "bravo", "delta"]
        assert (await names(filter={"provider": ["EKS", "AKS"], "search": "LPH"}))[0] == [
            "alpha"]
        page1, info1, total = await names(first=3)
        assert (page1, info1["hasNextPage"], info1["hasPreviousPage"], total) == (
            ["alpha", "bravo", "charlie"], True, False, 4)
        page2, info2, _ = await names(first=3, after=info1["endCursor"])
        assert (page2, info2["hasNextPage"], info2["hasPreviousPage"]) == (["delta"], False, True)
        page3, info3, _ = await names(first=3, after=info2["endCursor"])
        assert (page3, info3["hasNextPage"], info3["endCursor"]) == ([], False, None)
        assert (await names(first=0))[0] == []
        bad = await api.gql(query, {"first": 2, "after": info1["endCursor"][:-2] + "AA"},
                            token=admin)
        assert error_codes(bad) == ["BAD_USER_INPUT"]
        other_tenant = await api.gql(query, {"first": 2, "after": info1["endCursor"]},
                                     token=api.b.tokens["admin"])
        assert error_codes(other_tenant) == ["BAD_USER_INPUT"]
        bad_selector = await api.gql(query, {"first": 2, "filter": {"labelSelector": "a in b"}},
                                     token=admin)
        assert error_codes(bad_selector) == ["BAD_USER_INPUT"]
        assert "labelSelector" in bad_selector["errors"][0]["message"]


async def test_prices_given_at_registration_enter_the_price_history(api: Api) -> None:
    admin = api.a.tokens["admin"]
    body = await api.gql(
        REGISTER.replace("apiServerUrl labels", "apiServerUrl labels pricing { cpuCoreHour }"),
        {"input": cluster_input("priced", pricing={"cpuCoreHour": "0.05"})}, token=admin)
    # A Decimal string, as stored (six places).
    assert body["data"]["registerCluster"]["pricing"]["cpuCoreHour"] == "0.050000", body
    history = await api.pool.fetchval(
        "SELECT count(*) FROM k8s_cluster_prices p JOIN k8s_clusters c ON c.id = p.cluster_id "
        "WHERE c.name = 'priced'")
    assert history >= 1
