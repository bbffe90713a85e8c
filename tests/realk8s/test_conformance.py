"""kubesim conformance: every API behaviour the sync (and kubectl users) rely on, asserted once
and run against both kubesim and the real kube-apiserver of this tier.

The real server is the oracle: each expected value here was what kube-apiserver 1.35 answered,
and the kubesim side must give the same. The kubesim side needs no control plane and runs in
every ``pytest`` run (its params carry ``without_tier``); the real side runs with the rest of
tests/realk8s (``pytest tests/realk8s`` or ``FLEETGRAPH_REALK8S=1``) and shares its one
session control plane.

What the two may legitimately differ in is kept out of the assertions: continue tokens and
resourceVersions are opaque (only their order and round trip are asserted), the real server's
timing (its controllers act within seconds, so those checks poll), and the versions in
``/version``.

Differences kubesim keeps on purpose (none of them read by the sync):

* its controllers, namespace controller and "kubelet" act inside the request that set them
  off, so a deleted namespace or a gracefully deleted Pod is gone by the time DELETE answers
  (the answer itself, Terminating or with its deletionTimestamp, is the real one);
* periodic BOOKMARKs every ``bookmark_interval`` (5 s by default, less in tests) where the
  real watch cache sends one a minute; the one 2 s before a watch's timeout is the same;
* no defaulting beyond what is asserted here (a Deployment made through the API gets no
  ``strategy``, ``revisionHistoryLimit`` or Pod template defaults), and list items keep their
  ``kind`` and ``apiVersion``;
* managedFields record the fields a request sent, without list merge keys;
* a continue token outlives only the last 64 list snapshots and no compaction (the real
  server also answers old tokens of cached kinds from its watch cache).
"""

from __future__ import annotations

import json
import re
import ssl
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import pytest

from kubesim import KubeSim
from tests.realk8s.apiservers import TABLE, ApiServer, kubectl_binary
from tests.realk8s.controlplane import ControlPlane
from tests.sync.conftest import eventually

pytestmark = pytest.mark.timeout(300)

T = TypeVar("T")
SETTLE_S = 60.0  # the real controllers act within seconds; two cores shared with others
RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
# duration.HumanDuration, the AGE column: 45s, 3m20s, 12m, 5h30m, 20h, 3d4h, 30d, 2y30d.
AGE = re.compile(r"^(\d+s|\d+m(\d+s)?|\d+h(\d+m)?|\d+d(\d+h)?|\d+y(\d+d)?)$")


@pytest.fixture(
    scope="module",
    params=[pytest.param("kubesim", marks=pytest.mark.without_tier), "real"],
)
async def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[ApiServer]:
    """The API server under test; the real one is the tier's session control plane."""
    folder = tmp_path_factory.mktemp(f"conformance-{request.param}")
    if request.param == "kubesim":
        # A bookmark interval longer than any watch here: the only BOOKMARK a short watch
        # sees is the one before its timeout, as on the real server.
        async with KubeSim.start(fleet="small", seed=12, tls=True, bookmark_interval=300) as sim:
            assert sim.tls is not None
            # The session's control plane runs no metrics-server either (test_metrics_real.py
            # starts one of its own).
            sim.faults.metrics_available = False
            store = sim.store

            async def compact() -> None:
                store.compact()

            api = ApiServer(
                name="kubesim", url=sim.url,
                ssl_context=ssl.create_default_context(cadata=sim.tls.cert_pem.decode()),
                tokens={"admin": sim.token, "nobody": sim.add_user_without_rights("nobody")},
                kubeconfig=sim.write_kubeconfig(folder / "kubeconfig"), compact=compact,
            )
            try:
                yield api
            finally:
                await api.close()
        return
    plane: ControlPlane = request.getfixturevalue("control_plane")

    async def compact_etcd() -> None:
        await plane.compact_etcd()

    api = ApiServer(
        name="real", url=plane.url, ssl_context=plane.ssl_context(),
        tokens={"admin": plane.token("admin"), "nobody": plane.token("nobody")},
        kubeconfig=plane.write_kubeconfig("admin"), compact=compact_etcd,
    )
    try:
        yield api
    finally:
        await api.close()


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def new_namespace(server: ApiServer, prefix: str = "conf") -> str:
    name = unique(prefix)
    server.namespaces.append(name)
    await server.ok("POST", "/api/v1/namespaces", body={"metadata": {"name": name}})
    return name


def secret(name: str, **labels: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": labels}, "stringData": {"k": name}}


async def until(probe: Callable[[], Awaitable[T]], predicate: Callable[[T], bool]) -> T:
    return await eventually(probe, predicate, within=SETTLE_S, interval=0.3)


def status_fields(body: dict[str, Any]) -> tuple[Any, ...]:
    return (body["kind"], body["apiVersion"], body["status"], body["reason"], body["code"])


# --- /version and discovery ------------------------------------------------------------------


async def test_version_has_the_fields_kubectl_and_the_sync_read(server: ApiServer) -> None:
    for user in ("admin", None):  # /version is public (system:public-info-viewer)
        version = await server.ok("GET", "/version", user=user)
        assert set(version) == {
            "major", "minor", "emulationMajor", "emulationMinor", "minCompatibilityMajor",
            "minCompatibilityMinor", "gitVersion", "gitCommit", "gitTreeState", "buildDate",
            "goVersion", "compiler", "platform",
        }
        assert version["gitVersion"].startswith(f"v{version['major']}.{version['minor']}.")
        assert (version["emulationMajor"], version["emulationMinor"]) == (
            version["major"], version["minor"])
        assert version["platform"] == "linux/amd64" and version["compiler"] == "gc"


async def test_discovery_lists_the_groups_and_resources_the_sync_watches(
    server: ApiServer,
) -> None:
    core = await server.ok("GET", "/api")
    assert (core["kind"], core["versions"]) == ("APIVersions", ["v1"])
    assert core["serverAddressByClientCIDRs"][0]["clientCIDR"] == "0.0.0.0/0"
    groups = await server.ok("GET", "/apis")
    assert groups["kind"] == "APIGroupList"
    apps = next(g for g in groups["groups"] if g["name"] == "apps")
    assert apps["preferredVersion"] == {"groupVersion": "apps/v1", "version": "v1"}
    resources = {r["name"]: r for r in (await server.ok("GET", "/api/v1"))["resources"]}
    for name, kind, namespaced in (("namespaces", "Namespace", False), ("nodes", "Node", False),
                                   ("pods", "Pod", True), ("secrets", "Secret", True),
                                   ("resourcequotas", "ResourceQuota", True)):
        assert (resources[name]["kind"], resources[name]["namespaced"]) == (kind, namespaced)
        assert {"get", "list", "watch"} <= set(resources[name]["verbs"])
    assert resources["pods/status"]["kind"] == "Pod"
    assert resources["pods"]["shortNames"] == ["po"]
    apps_v1 = {r["name"]: r for r in (await server.ok("GET", "/apis/apps/v1"))["resources"]}
    assert apps_v1["deployments"]["shortNames"] == ["deploy"]
    assert (apps_v1["deployments/scale"]["group"], apps_v1["deployments/scale"]["kind"]) == (
        "autoscaling", "Scale")


async def test_a_group_nothing_serves_is_a_plain_text_404(server: ApiServer) -> None:
    """No metrics-server: metrics.k8s.io is not a group at all, so the mux answers."""
    answer = await server.request("GET", "/apis/metrics.k8s.io/v1beta1/nodes")
    assert (answer.status, answer.content_type, answer.body) == (
        404, "text/plain", "404 page not found\n")


# --- authentication and authorization --------------------------------------------------------


async def test_a_bad_token_is_401_with_a_status(server: ApiServer) -> None:
    answer = await server.request("GET", "/api/v1/namespaces", user="not-a-token")
    assert answer.status == 401
    assert answer.body == {"kind": "Status", "apiVersion": "v1", "metadata": {},
                           "status": "Failure", "message": "Unauthorized",
                           "reason": "Unauthorized", "code": 401}


async def test_a_token_without_rights_is_403_naming_what_it_may_not_do(
    server: ApiServer,
) -> None:
    answer = await server.request("GET", "/api/v1/namespaces", user="nobody")
    assert answer.status == 403
    assert status_fields(answer.body) == ("Status", "v1", "Failure", "Forbidden", 403)
    assert answer.body["message"] == (
        'namespaces is forbidden: User "nobody" cannot list resource "namespaces" in API '
        'group "" at the cluster scope')
    assert answer.body["details"] == {"kind": "namespaces"}
    answer = await server.request("GET", "/apis/apps/v1/namespaces/default/deployments",
                                  user="nobody", params={"watch": "true"})
    assert answer.status == 403
    assert answer.body["message"] == (
        'deployments.apps is forbidden: User "nobody" cannot watch resource "deployments" in '
        'API group "apps" in the namespace "default"')
    assert answer.body["details"] == {"group": "apps", "kind": "deployments"}
    # Discovery stays open to every authenticated user.
    assert (await server.request("GET", "/api/v1", user="nobody")).status == 200
    assert (await server.request("GET", "/apis", user="nobody")).status == 200


# --- lists: paging, resourceVersion, selectors ---------------------------------------------


async def test_paging_with_limit_and_continue_is_one_consistent_snapshot(
    server: ApiServer,
) -> None:
    ns = await new_namespace(server)
    names = [f"s{i}" for i in range(5)]
    for name in names:
        await server.ok("POST", f"/api/v1/namespaces/{ns}/secrets", body=secret(name))
    path = f"/api/v1/namespaces/{ns}/secrets"
    first = await server.ok("GET", path, params={"limit": "2"})
    assert first["kind"] == "SecretList"
    assert [i["metadata"]["name"] for i in first["items"]] == ["s0", "s1"]
    assert first["metadata"]["remainingItemCount"] == 3
    token = first["metadata"]["continue"]
    # Written after the first page: not part of this list, which is one snapshot.
    await server.ok("POST", path, body=secret("s2a"))
    seen, pages = list(names[:2]), [first]
    while token:
        page = await server.ok("GET", path, params={"limit": "2", "continue": token})
        pages.append(page)
        seen += [i["metadata"]["name"] for i in page["items"]]
        token = page["metadata"].get("continue")
    assert seen == names
    assert len(pages) == 3 and "remainingItemCount" not in pages[-1]["metadata"]
    assert {p["metadata"]["resourceVersion"] for p in pages} == {
        first["metadata"]["resourceVersion"]}
    fresh = await server.ok("GET", path)
    assert [i["metadata"]["name"] for i in fresh["items"]] == ["s0", "s1", "s2", "s2a", "s3",
                                                                "s4"]
    bad = await server.request("GET", path, params={"limit": "2", "continue": "garbage"})
    assert (bad.status, bad.body["reason"]) == (400, "BadRequest")
    assert bad.body["message"].startswith("invalid continue token")


async def test_resource_versions_order_writes_and_guard_updates(server: ApiServer) -> None:
    ns = await new_namespace(server)
    path = f"/api/v1/namespaces/{ns}/secrets"
    created = await server.ok("POST", path, body=secret("rv"))
    rv1 = created["metadata"]["resourceVersion"]
    assert rv1.isdigit()
    listed = await server.ok("GET", path)
    assert int(listed["metadata"]["resourceVersion"]) >= int(rv1)
    assert (await server.ok("GET", f"{path}/rv"))["metadata"]["resourceVersion"] == rv1
    created["metadata"]["labels"] = {"step": "2"}
    updated = await server.ok("PUT", f"{path}/rv", body=created)
    assert int(updated["metadata"]["resourceVersion"]) > int(rv1)
    stale = await server.request("PUT", f"{path}/rv", body=created)  # still carries rv1
    assert stale.status == 409
    assert status_fields(stale.body) == ("Status", "v1", "Failure", "Conflict", 409)
    assert stale.body["details"] == {"name": "rv", "kind": "secrets"}
    # A watch from the list's version sees exactly what came after, in order.
    start = (await server.ok("GET", path))["metadata"]["resourceVersion"]

    async def writes() -> None:
        await server.ok("POST", path, body=secret("later"))
        await server.ok("PATCH", f"{path}/later", body={"metadata": {"labels": {"x": "y"}}},
                        content_type="application/merge-patch+json")
        await server.ok("DELETE", f"{path}/later")

    events = await server.watch(path, {"resourceVersion": start, "timeoutSeconds": "30"},
                                during=writes, stop=lambda e: len(e) == 3)
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [
        ("ADDED", "later"), ("MODIFIED", "later"), ("DELETED", "later")]
    versions = [int(e["object"]["metadata"]["resourceVersion"]) for e in events]
    assert versions == sorted(versions) and versions[0] > int(start)


async def test_label_and_field_selectors_filter_lists(server: ApiServer) -> None:
    ns = await new_namespace(server)
    path = f"/api/v1/namespaces/{ns}/secrets"
    for name, labels in (("a", {"tier": "web", "env": "prod"}), ("b", {"tier": "db"}),
                         ("c", {"tier": "web", "skip": "1"}), ("d", {})):
        await server.ok("POST", path, body=secret(name, **labels))

    async def names(**params: str) -> list[str]:
        return [i["metadata"]["name"] for i in (await server.ok("GET", path, params=params))
                ["items"]]

    assert await names(labelSelector="tier=web") == ["a", "c"]
    assert await names(labelSelector="tier in (web,db),!skip") == ["a", "b"]
    assert await names(labelSelector="env!=prod") == ["b", "c", "d"]
    assert await names(labelSelector="tier") == ["a", "b", "c"]
    assert await names(fieldSelector="metadata.name=b") == ["b"]
    assert await names(fieldSelector="metadata.name!=b", labelSelector="tier") == ["a", "c"]
    everywhere = await server.ok("GET", "/api/v1/secrets",
                                 params={"fieldSelector": f"metadata.namespace={ns}"})
    assert sorted(i["metadata"]["name"] for i in everywhere["items"]) == ["a", "b", "c", "d"]
    # Every namespace carries its own name as a label.
    by_label = await server.ok("GET", "/api/v1/namespaces",
                               params={"labelSelector": f"kubernetes.io/metadata.name={ns}"})
    assert [i["metadata"]["name"] for i in by_label["items"]] == [ns]
    for bad in ("x=a||y=b", "Example.com/abc=1", "tier in (web"):
        answer = await server.request("GET", path, params={"labelSelector": bad})
        assert (answer.status, answer.body["reason"]) == (400, "BadRequest"), bad


# --- watches: bookmarks and 410 --------------------------------------------------------------


async def test_a_watch_with_bookmarks_gets_one_before_its_timeout(server: ApiServer) -> None:
    ns, elsewhere = await new_namespace(server), await new_namespace(server)
    path = f"/api/v1/namespaces/{ns}/secrets"
    start = (await server.ok("GET", path))["metadata"]["resourceVersion"]

    async def move_the_watch_cache_on() -> None:
        # A Secret written in another namespace: the real watch cache sends a watcher its
        # pre-timeout BOOKMARK at the version it has processed, which otherwise moves only
        # with etcd's progress notifications (every 5 s in this tier; one missed, and the
        # 8 s watch ended with nothing). Not an event of this watch's namespace.
        await server.ok("POST", f"/api/v1/namespaces/{elsewhere}/secrets",
                        body=secret("progress"))

    events = await server.watch(path, {"resourceVersion": start, "allowWatchBookmarks": "true",
                                       "timeoutSeconds": "8"}, during=move_the_watch_cache_on)
    assert events, "no BOOKMARK before the watch timed out"
    assert {e["type"] for e in events} == {"BOOKMARK"}
    bookmark = events[-1]["object"]
    assert (bookmark["kind"], bookmark["apiVersion"]) == ("Secret", "v1")
    assert set(bookmark["metadata"]) == {"resourceVersion"}
    assert int(bookmark["metadata"]["resourceVersion"]) >= int(start)


async def test_an_expired_resource_version_is_410_expired(server: ApiServer) -> None:
    """Deployments: the kind whose watch cache the tier switches off, so the real server
    answers from etcd, as every kind does once its version is older than the cache."""
    ns = await new_namespace(server)
    path = f"/apis/apps/v1/namespaces/{ns}/deployments"
    old = (await server.ok("GET", path))["metadata"]["resourceVersion"]
    await server.ok("POST", path, body=deployment("bump", replicas=0))
    await server.compact()
    events = await server.watch(path, {"resourceVersion": old, "timeoutSeconds": "10"})
    assert [e["type"] for e in events] == ["ERROR"]
    assert status_fields(events[0]["object"]) == ("Status", "v1", "Failure", "Expired", 410)
    listed = await server.request("GET", path, params={"resourceVersion": old,
                                                       "resourceVersionMatch": "Exact"})
    assert listed.status == 410
    assert status_fields(listed.body) == ("Status", "v1", "Failure", "Expired", 410)
    assert listed.body["message"] == "The resourceVersion for the provided list is too old."


# --- what is stored: quantities and metadata -------------------------------------------------


async def test_quantities_come_back_canonical(server: ApiServer) -> None:
    ns = await new_namespace(server)
    hard = {"cpu": "0.5", "memory": "1024Mi", "pods": "1e3", "requests.cpu": "3.001n",
            "requests.memory": "1.5Gi", "limits.cpu": "2000m", "limits.memory": "1000Ki",
            "requests.storage": "100000000000", "requests.ephemeral-storage": "0.1",
            "count/secrets": "10"}
    quota = await server.ok("POST", f"/api/v1/namespaces/{ns}/resourcequotas",
                            body={"metadata": {"name": "q"}, "spec": {"hard": hard}})
    # Canonical forms, and every ResourceList value rounded up to a milli (3.001n -> 1m).
    assert quota["spec"]["hard"] == {
        "cpu": "500m", "memory": "1Gi", "pods": "1e3", "requests.cpu": "1m",
        "requests.memory": "1536Mi", "limits.cpu": "2", "limits.memory": "1000Ki",
        "requests.storage": "100G", "requests.ephemeral-storage": "100m",
        "count/secrets": "10"}
    created = await server.ok("POST", f"/apis/apps/v1/namespaces/{ns}/deployments",
                              body=deployment("q", replicas=0, requests={
                                  "cpu": "1500u", "memory": "0.0001Ki",
                                  "ephemeral-storage": "3.001n"},
                                  limits={"cpu": "2", "memory": "1.5Gi",
                                          "ephemeral-storage": "1e3"}))
    resources = created["spec"]["template"]["spec"]["containers"][0]["resources"]
    assert resources == {
        "requests": {"cpu": "2m", "memory": "103m", "ephemeral-storage": "1m"},
        "limits": {"cpu": "2", "memory": "1536Mi", "ephemeral-storage": "1e3"}}


async def test_server_set_metadata(server: ApiServer) -> None:
    ns = await new_namespace(server)
    path = f"/apis/apps/v1/namespaces/{ns}/deployments"
    created = await server.ok("POST", path, body=deployment("meta", replicas=0),
                              params={"fieldManager": "conformance"})
    meta = created["metadata"]
    assert UUID.match(meta["uid"]) and RFC3339.match(meta["creationTimestamp"])
    assert meta["generation"] == 1 and "deletionTimestamp" not in meta
    [entry] = meta["managedFields"]
    assert (entry["manager"], entry["operation"], entry["apiVersion"], entry["fieldsType"]) == (
        "conformance", "Update", "apps/v1", "FieldsV1")
    assert "f:spec" in entry["fieldsV1"] and RFC3339.match(entry["time"])
    relabelled = await server.ok(
        "PATCH", f"{path}/meta", body={"metadata": {"labels": {"x": "1"}}},
        content_type="application/merge-patch+json", params={"fieldManager": "conformance"})
    assert relabelled["metadata"]["generation"] == 1  # metadata is not the spec
    scaled = await server.ok(
        "PATCH", f"{path}/meta", body={"spec": {"replicas": 0, "minReadySeconds": 5}},
        content_type="application/merge-patch+json")
    assert scaled["metadata"]["generation"] == 2
    assert scaled["metadata"]["uid"] == meta["uid"]
    namespace = await server.ok("GET", f"/api/v1/namespaces/{ns}")
    assert "generation" not in namespace["metadata"]
    assert namespace["spec"] == {"finalizers": ["kubernetes"]}
    assert namespace["status"] == {"phase": "Active"}
    plain = await server.ok("POST", f"/api/v1/namespaces/{ns}/secrets",
                            body={"metadata": {"name": "x"}})
    assert plain["type"] == "Opaque" and "generation" not in plain["metadata"]


async def test_every_namespace_gets_a_default_service_account(server: ApiServer) -> None:
    ns = await new_namespace(server)
    path = f"/api/v1/namespaces/{ns}/serviceaccounts"
    accounts = await until(lambda: server.ok("GET", path), lambda body: bool(body["items"]))
    assert [a["metadata"]["name"] for a in accounts["items"]] == ["default"]
    assert accounts["kind"] == "ServiceAccountList"


# --- deletion ------------------------------------------------------------------------------


async def test_deletion_immediate_pending_and_terminating(server: ApiServer) -> None:
    ns = await new_namespace(server)
    path = f"/api/v1/namespaces/{ns}/secrets"
    plain = await server.ok("POST", path, body=secret("plain"))
    answer = await server.ok("DELETE", f"{path}/plain")
    assert answer == {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                      "details": {"name": "plain", "kind": "secrets",
                                  "uid": plain["metadata"]["uid"]}}
    gone = await server.request("GET", f"{path}/plain")
    assert gone.status == 404
    assert status_fields(gone.body) == ("Status", "v1", "Failure", "NotFound", 404)
    assert gone.body["message"] == 'secrets "plain" not found'

    held = {"metadata": {"name": "held", "finalizers": ["example.com/hold"]}}
    await server.ok("POST", path, body=held)
    pending = await server.ok("DELETE", f"{path}/held")
    assert RFC3339.match(pending["metadata"]["deletionTimestamp"])
    assert pending["metadata"]["deletionGracePeriodSeconds"] == 0
    still = await server.ok("GET", f"{path}/held")
    assert still["metadata"]["deletionTimestamp"] == pending["metadata"]["deletionTimestamp"]
    await server.ok("PATCH", f"{path}/held", body={"metadata": {"finalizers": None}},
                    content_type="application/merge-patch+json")
    assert (await server.request("GET", f"{path}/held")).status == 404

    start = (await server.ok("GET", "/api/v1/namespaces"))["metadata"]["resourceVersion"]
    terminating: dict[str, Any] = {}

    async def delete_namespace() -> None:
        terminating.update(await server.ok("DELETE", f"/api/v1/namespaces/{ns}"))

    events = await server.watch(
        "/api/v1/namespaces", {"resourceVersion": start, "timeoutSeconds": str(int(SETTLE_S)),
                               "fieldSelector": f"metadata.name={ns}"},
        during=delete_namespace, stop=lambda e: e[-1]["type"] == "DELETED")
    assert terminating["status"] == {"phase": "Terminating"}
    assert RFC3339.match(terminating["metadata"]["deletionTimestamp"])
    assert terminating["spec"] == {"finalizers": ["kubernetes"]}
    assert events[0]["type"] == "MODIFIED"
    assert events[0]["object"]["status"]["phase"] == "Terminating"
    assert events[-1]["type"] == "DELETED"
    assert (await server.request("GET", f"/api/v1/namespaces/{ns}")).status == 404


# --- controllers -----------------------------------------------------------------------------


def deployment(name: str, *, replicas: int, requests: dict[str, str] | None = None,
               limits: dict[str, str] | None = None) -> dict[str, Any]:
    resources = {k: v for k, v in (("requests", requests), ("limits", limits)) if v}
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}},
                              "spec": {"containers": [{"name": "c",
                                                       "image": "registry.k8s.io/pause:3.10",
                                                       "resources": resources}]}}},
    }


async def test_a_deployment_gets_a_replicaset_and_pods_that_come_back(
    server: ApiServer,
) -> None:
    ns = await new_namespace(server)
    created = await server.ok("POST", f"/apis/apps/v1/namespaces/{ns}/deployments",
                              body=deployment("web", replicas=2))

    async def owned(path: str, owner_uid: str) -> list[dict[str, Any]]:
        items = (await server.ok("GET", path))["items"]
        return [i for i in items if not i["metadata"].get("deletionTimestamp") and any(
            r["uid"] == owner_uid for r in i["metadata"].get("ownerReferences", []))]

    [rs] = await until(lambda: owned(f"/apis/apps/v1/namespaces/{ns}/replicasets",
                                     created["metadata"]["uid"]), lambda r: len(r) == 1)
    assert rs["spec"]["replicas"] == 2
    assert rs["metadata"]["ownerReferences"][0]["kind"] == "Deployment"
    assert rs["metadata"]["ownerReferences"][0]["controller"] is True
    assert rs["spec"]["selector"]["matchLabels"]["app"] == "web"
    pods_path = f"/api/v1/namespaces/{ns}/pods"
    pods = await until(lambda: owned(pods_path, rs["metadata"]["uid"]), lambda p: len(p) == 2)
    victim = pods[0]["metadata"]
    await server.ok("DELETE", f"{pods_path}/{victim['name']}")
    replaced = await until(lambda: owned(pods_path, rs["metadata"]["uid"]),
                           lambda p: len(p) == 2 and victim["uid"] not in
                           {i["metadata"]["uid"] for i in p})
    assert all(p["metadata"]["name"].startswith(rs["metadata"]["name"] + "-") for p in replaced)


# --- Table output --------------------------------------------------------------------------


def columns(table: dict[str, Any]) -> list[tuple[str, str, str, int]]:
    return [(c["name"], c["type"], c["format"], c["priority"])
            for c in table["columnDefinitions"]]


async def test_tables_have_kubectls_columns(server: ApiServer) -> None:
    ns = await new_namespace(server)
    accept = {"Accept": TABLE}
    table = await server.ok("GET", "/api/v1/namespaces", headers=accept,
                            params={"fieldSelector": f"metadata.name={ns}"})
    assert (table["kind"], table["apiVersion"]) == ("Table", "meta.k8s.io/v1")
    assert columns(table) == [("Name", "string", "name", 0), ("Status", "string", "", 0),
                              ("Age", "string", "", 0)]
    [row] = table["rows"]
    assert row["cells"][:2] == [ns, "Active"] and AGE.match(row["cells"][2])
    assert row["object"]["kind"] == "PartialObjectMetadata"
    assert row["object"]["metadata"]["name"] == ns

    pods = await server.ok("GET", f"/api/v1/namespaces/{ns}/pods", headers=accept)
    assert columns(pods) == [
        ("Name", "string", "name", 0), ("Ready", "string", "", 0), ("Status", "string", "", 0),
        ("Restarts", "string", "", 0), ("Age", "string", "", 0), ("IP", "string", "", 1),
        ("Node", "string", "", 1), ("Nominated Node", "string", "", 1),
        ("Readiness Gates", "string", "", 1)]

    await server.ok("POST", f"/apis/apps/v1/namespaces/{ns}/deployments",
                    body=deployment("tab", replicas=0))
    deployments = await server.ok("GET", f"/apis/apps/v1/namespaces/{ns}/deployments",
                                  headers=accept)
    assert columns(deployments) == [
        ("Name", "string", "name", 0), ("Ready", "string", "", 0),
        ("Up-to-date", "string", "", 0), ("Available", "string", "", 0),
        ("Age", "string", "", 0), ("Containers", "string", "", 1),
        ("Images", "string", "", 1), ("Selector", "string", "", 1)]
    cells = deployments["rows"][0]["cells"]
    assert cells[:4] == ["tab", "0/0", 0, 0] and AGE.match(cells[4])
    assert cells[5:] == ["c", "registry.k8s.io/pause:3.10", "app=tab"]

    await server.ok("POST", f"/api/v1/namespaces/{ns}/resourcequotas", body={
        "metadata": {"name": "q"},
        "spec": {"hard": {"cpu": "0.5", "memory": "1Gi", "pods": "3", "limits.memory": "2Gi"}}})

    async def quota_table() -> dict[str, Any]:
        body: dict[str, Any] = await server.ok(
            "GET", f"/api/v1/namespaces/{ns}/resourcequotas", headers=accept)
        return body

    quotas = await until(quota_table, lambda t: t["rows"] and t["rows"][0]["cells"][1] != "")
    assert columns(quotas) == [("Name", "string", "name", 0), ("Request", "string", "", 0),
                               ("Limit", "string", "", 0), ("Age", "string", "", 0)]
    assert quotas["rows"][0]["cells"][:3] == [
        "q", "cpu: 0/500m, memory: 0/1Gi, pods: 0/3", "limits.memory: 0/2Gi"]


async def test_age_of_a_new_namespace_is_seconds(server: ApiServer) -> None:
    """A namespace made just now is seconds old, in the server's own clock."""
    ns = await new_namespace(server)
    table = await server.ok("GET", "/api/v1/namespaces", headers={"Accept": TABLE},
                            params={"fieldSelector": f"metadata.name={ns}"})
    age = table["rows"][0]["cells"][2]
    assert re.fullmatch(r"\d+s", age) and int(age[:-1]) < 120


# --- kubectl ---------------------------------------------------------------------------------

needs_kubectl = pytest.mark.skipif(kubectl_binary() is None, reason="kubectl is not installed")


@needs_kubectl
async def test_kubectl_create_get_apply_delete(server: ApiServer) -> None:
    """kubectl 1.35 sends protobuf for `create ns`; `apply` goes through JSON and patches."""
    ns = unique("kubectl")
    server.namespaces.append(ns)
    assert await server.kubectl("create", "ns", ns) == f"namespace/{ns} created\n"
    listed = await server.kubectl("get", "pods", "-A")
    assert listed.splitlines()[0].split() == ["NAMESPACE", "NAME", "READY", "STATUS",
                                              "RESTARTS", "AGE"]
    manifest = deployment("applied", replicas=1)
    manifest["metadata"]["namespace"] = ns
    text = json.dumps(manifest)
    assert await server.kubectl("apply", "-f", "-", stdin=text) == (
        "deployment.apps/applied created\n")
    assert await server.kubectl("apply", "-f", "-", stdin=text) == (
        "deployment.apps/applied unchanged\n")
    manifest["spec"]["replicas"] = 2
    assert await server.kubectl("apply", "-f", "-", stdin=json.dumps(manifest)) == (
        "deployment.apps/applied configured\n")
    stored = json.loads(await server.kubectl("get", "deploy", "applied", "-n", ns, "-o", "json"))
    assert stored["spec"]["replicas"] == 2
    assert "kubectl.kubernetes.io/last-applied-configuration" in stored["metadata"][
        "annotations"]
    wide = await server.kubectl("get", "deploy", "-n", ns, "-o", "wide")
    assert wide.splitlines()[0].split() == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE",
                                            "CONTAINERS", "IMAGES", "SELECTOR"]
    assert await server.kubectl("create", "deployment", "made", "-n", ns,
                                "--image=registry.k8s.io/pause:3.10") == (
        "deployment.apps/made created\n")
    assert await server.kubectl("create", "serviceaccount", "robot", "-n", ns) == (
        "serviceaccount/robot created\n")
    assert await server.kubectl("delete", "ns", ns, "--wait=false") == (
        f'namespace "{ns}" deleted\n')
