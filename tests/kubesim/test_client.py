"""kubernetes-asyncio against kubesim over real HTTP: lists, watches, selectors, metrics."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import pytest
from kubernetes_asyncio import client, watch
from kubernetes_asyncio.client.exceptions import ApiException

from kubesim.quantity import parse

from .conftest import api_client


async def test_paged_list_returns_every_pod_once_with_a_stable_resource_version(
    kubesim, api: client.ApiClient
) -> None:
    core: Any = client.CoreV1Api(api)
    expected = sorted(p["metadata"]["name"] for p in kubesim.store.list("pods"))
    assert len(expected) > 30
    names: list[str] = []
    token: str | None = None
    versions = set()
    pages = 0
    while True:
        page = await core.list_pod_for_all_namespaces(limit=7, _continue=token)
        pages += 1
        assert len(page.items) <= 7
        names += [p.metadata.name for p in page.items]
        versions.add(page.metadata.resource_version)
        # A write between pages must not leak into the snapshot being paged.
        kubesim.fleet.scale("payments-prod", "frontend", 9) if pages == 1 else None
        token = page.metadata._continue
        if not token:
            break
    assert pages == -(-len(expected) // 7)
    assert sorted(names) == expected
    assert len(versions) == 1


async def test_label_selectors_equality_set_and_existence(kubesim, api: client.ApiClient) -> None:
    core: Any = client.CoreV1Api(api)
    pods = kubesim.store.list("pods")
    some = pods[0]
    app = some["metadata"]["labels"]["app"]
    want_eq = {p["metadata"]["name"] for p in pods if p["metadata"]["labels"].get("app") == app}
    got = await core.list_pod_for_all_namespaces(label_selector=f"app={app}")
    assert {p.metadata.name for p in got.items} == want_eq and 0 < len(want_eq) < len(pods)

    got = await core.list_pod_for_all_namespaces(label_selector=f"app!={app}")
    assert {p.metadata.name for p in got.items} == {p["metadata"]["name"] for p in pods} - want_eq

    apps = sorted({p["metadata"]["labels"]["app"] for p in pods})[:2]
    got = await core.list_pod_for_all_namespaces(label_selector=f"app in ({apps[0]}, {apps[1]})")
    assert {p.metadata.labels["app"] for p in got.items} == set(apps)
    got = await core.list_pod_for_all_namespaces(label_selector=f"app notin ({apps[0]})")
    assert apps[0] not in {p.metadata.labels["app"] for p in got.items} and got.items

    await core.patch_namespaced_pod(
        some["metadata"]["name"],
        some["metadata"]["namespace"],
        {"metadata": {"labels": {"canary": "yes"}}},
    )
    got = await core.list_pod_for_all_namespaces(label_selector="canary")
    assert [p.metadata.name for p in got.items] == [some["metadata"]["name"]]
    got = await core.list_pod_for_all_namespaces(label_selector="!canary")
    assert len(got.items) == len(pods) - 1

    namespaces = await core.list_namespace(label_selector="team=payments")
    assert [n.metadata.name for n in namespaces.items] == ["payments-prod"]


async def test_field_selectors_name_namespace_node_and_phase(
    kubesim, api: client.ApiClient
) -> None:
    core: Any = client.CoreV1Api(api)
    pods = kubesim.store.list("pods")
    node = pods[0]["spec"]["nodeName"]
    on_node = await core.list_pod_for_all_namespaces(field_selector=f"spec.nodeName={node}")
    assert {p.metadata.name for p in on_node.items} == {
        p["metadata"]["name"] for p in pods if p["spec"]["nodeName"] == node
    }
    assert 0 < len(on_node.items) < len(pods)
    target = pods[3]["metadata"]
    by_name = await core.list_pod_for_all_namespaces(
        field_selector=f"metadata.name={target['name']},metadata.namespace={target['namespace']}"
    )
    assert [p.metadata.name for p in by_name.items] == [target["name"]]
    running = await core.list_pod_for_all_namespaces(field_selector="status.phase=Running")
    assert len(running.items) == len(pods)
    assert not (
        await core.list_pod_for_all_namespaces(field_selector="status.phase!=Running")
    ).items
    with pytest.raises(ApiException) as error:
        await core.list_pod_for_all_namespaces(field_selector="spec.restartPolicy=Always")
    assert error.value.status == 400


async def test_watch_resumes_from_a_resource_version_without_gaps(
    kubesim, api: client.ApiClient
) -> None:
    core: Any = client.CoreV1Api(api)
    listed = await core.list_namespaced_pod("payments-prod")
    rv = listed.metadata.resource_version
    # Changes made while nobody watches must be replayed from history.
    pod = listed.items[0].metadata.name
    kubesim.fleet.oom_kill("payments-prod", pod)
    kubesim.store.delete("pods", listed.items[1].metadata.name, namespace="payments-prod")
    kubesim.store.create(
        "pods",
        {
            "metadata": {"name": "extra", "namespace": "payments-prod"},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]},
        },
    )
    kubesim.store.create(
        "pods",
        {
            "metadata": {"name": "elsewhere", "namespace": "search-prod"},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]},
        },
    )
    seen: list[tuple[str, str]] = []
    async with watch.Watch() as w:
        async for event in w.stream(
            core.list_namespaced_pod, "payments-prod", resource_version=rv, timeout_seconds=1
        ):
            seen.append((event["type"], event["object"].metadata.name))
    assert seen[:3] == [
        ("MODIFIED", pod),
        ("DELETED", listed.items[1].metadata.name),
        ("ADDED", "extra"),
    ]
    assert ("ADDED", "elsewhere") not in seen
    # resume again from the last one seen: nothing old is repeated
    last_rv = kubesim.store.get("pods", "extra", namespace="payments-prod")["metadata"][
        "resourceVersion"
    ]
    kubesim.store.delete("pods", "extra", namespace="payments-prod")
    async with watch.Watch() as w:
        events = [
            e
            async for e in w.stream(
                core.list_namespaced_pod,
                "payments-prod",
                resource_version=last_rv,
                timeout_seconds=1,
            )
        ]
    assert [
        (e["type"], e["object"].metadata.name)
        for e in events
        if e["object"].metadata.name == "extra"
    ] == [("DELETED", "extra")]


async def test_watch_sends_bookmarks_when_asked(kubesim, api) -> None:
    core: Any = client.CoreV1Api(api)
    rv = (await core.list_node()).metadata.resource_version
    kinds: list[str] = []
    bookmark_rvs: list[str] = []
    async with watch.Watch() as w:
        async for event in w.stream(
            core.list_node, resource_version=rv, allow_watch_bookmarks=True, timeout_seconds=2
        ):
            kinds.append(event["type"])
            if event["type"] == "BOOKMARK":
                bookmark_rvs.append(event["raw_object"]["metadata"]["resourceVersion"])
                w.stop()
    assert kinds == ["BOOKMARK"]
    assert int(bookmark_rvs[0]) >= int(rv)
    # Without allowWatchBookmarks no bookmark arrives.
    async with watch.Watch() as w:
        events = [e async for e in w.stream(core.list_node, resource_version=rv, timeout_seconds=1)]
    assert events == []


async def test_410_once_the_version_falls_out_of_the_history_window(
    kubesim, api: client.ApiClient
) -> None:
    core: Any = client.CoreV1Api(api)
    kubesim.store.history_window = 20
    old = (await core.list_namespaced_pod("payments-prod")).metadata.resource_version
    page = await core.list_pod_for_all_namespaces(limit=5)
    for _ in range(3):
        kubesim.fleet.step(10)
    for i in range(25):
        kubesim.fleet.set_load("payments-prod", "frontend", 0.1 * i)
        kubesim.store.patch("namespaces", "default", {"metadata": {"labels": {"tick": str(i)}}})
    assert kubesim.store.compacted_resource_version > int(old)
    # the watch answers 200 with a single ERROR event carrying a 410 Status
    response = await core.list_namespaced_pod(
        "payments-prod", watch=True, resource_version=old, timeout_seconds=2, _preload_content=False
    )
    lines = [line async for line in response.content]
    assert len(lines) == 1
    import orjson

    event = orjson.loads(lines[0])
    assert (
        event["type"] == "ERROR"
        and event["object"]["code"] == 410
        and event["object"]["reason"] == "Expired"  # what kube-apiserver says, too
    )
    # the client's Watch turns it into ApiException(410)
    with pytest.raises(ApiException) as error:
        async with watch.Watch() as w:
            async for _ in w.stream(
                core.list_namespaced_pod, "payments-prod", resource_version=old, timeout_seconds=1
            ):
                pass
    assert error.value.status == 410
    # a continue token from before the window is an HTTP 410 Expired
    with pytest.raises(ApiException) as error:
        await core.list_pod_for_all_namespaces(limit=5, _continue=page.metadata._continue)
    assert error.value.status == 410
    assert "Expired" in str(error.value.body)
    # a fresh version still works
    fresh = (await core.list_namespaced_pod("payments-prod")).metadata.resource_version
    async with watch.Watch() as w:
        assert [
            e
            async for e in w.stream(
                core.list_namespaced_pod, "payments-prod", resource_version=fresh, timeout_seconds=1
            )
        ] == []


async def test_metrics_api_lists_node_and_pod_usage(kubesim, api: client.ApiClient) -> None:
    custom = client.CustomObjectsApi(api)
    nodes = await custom.list_cluster_custom_object("metrics.k8s.io", "v1beta1", "nodes")
    assert {n["metadata"]["name"] for n in nodes["items"]} == {
        n["metadata"]["name"] for n in kubesim.store.list("nodes")
    }
    for item in nodes["items"]:
        cpu, memory = (item["usage"][k] for k in ("cpu", "memory"))
        # metrics-server's quantities are canonical: written back as they are read
        assert str(parse(cpu)) == cpu and str(parse(memory)) == memory, item["usage"]
        assert parse(cpu).value > Decimal("0.1") and parse(memory).value % 4096 == 0
        assert item["window"] and item["timestamp"] == "2025-03-01T12:00:00Z"
    pods = await custom.list_namespaced_custom_object(
        "metrics.k8s.io", "v1beta1", "payments-prod", "pods"
    )
    assert {p["metadata"]["name"] for p in pods["items"]} == {
        p["metadata"]["name"] for p in kubesim.store.list("pods", namespace="payments-prod")
    }
    usage = pods["items"][0]["containers"][0]["usage"]
    assert str(parse(usage["cpu"])) == usage["cpu"] and parse(usage["cpu"]).value > 0
    assert str(parse(usage["memory"])) == usage["memory"]
    assert parse(usage["memory"]).value >= 1024 * 1024
    one = await custom.get_namespaced_custom_object(
        "metrics.k8s.io", "v1beta1", "payments-prod", "pods", pods["items"][0]["metadata"]["name"]
    )
    assert one["kind"] == "PodMetrics"


async def test_wrong_or_missing_token_is_401(kubesim) -> None:
    kubeconfig: dict[str, Any] = kubesim.kubeconfig
    kubeconfig["users"][0]["user"]["token"] = "not-the-token"
    async with api_client(kubeconfig) as api:
        with pytest.raises(ApiException) as error:
            await client.CoreV1Api(api).list_namespace()
    assert error.value.status == 401
    kubeconfig["users"][0]["user"] = {}
    async with api_client(kubeconfig) as api:
        with pytest.raises(ApiException) as error:
            await client.CoreV1Api(api).list_namespace()
    assert error.value.status == 401


async def test_create_update_patch_delete_and_scale_through_the_client(
    kubesim, api: client.ApiClient
) -> None:
    apps = client.AppsV1Api(api)
    core: Any = client.CoreV1Api(api)
    scale = await apps.read_namespaced_deployment_scale("frontend", "payments-prod")
    assert scale.spec.replicas == 5
    await apps.patch_namespaced_deployment_scale(
        "frontend", "payments-prod", {"spec": {"replicas": 1}}
    )
    kubesim.fleet.reconcile()
    assert (
        len(kubesim.store.list("pods", namespace="payments-prod", label_selector="app=frontend"))
        == 1
    )
    ns = await core.create_namespace({"metadata": {"name": "scratch", "labels": {"team": "x"}}})
    assert ns.metadata.uid and ns.status.phase == "Active"
    with pytest.raises(ApiException) as error:
        await core.create_namespace({"metadata": {"name": "scratch"}})
    assert error.value.status == 409
    ns.metadata.labels["team"] = "y"
    updated = await core.replace_namespace("scratch", ns)
    assert updated.metadata.labels["team"] == "y"
    with pytest.raises(ApiException) as error:  # stale resourceVersion
        await core.replace_namespace("scratch", ns)
    assert error.value.status == 409
    smp = await core.patch_namespace(
        "scratch", {"metadata": {"labels": {"team": None, "tier": "1"}}}
    )
    # kube-apiserver labels every namespace with its own name, whatever a patch says.
    assert smp.metadata.labels == {"tier": "1", "kubernetes.io/metadata.name": "scratch"}
    await core.delete_namespace("scratch")
    with pytest.raises(ApiException) as error:
        await core.read_namespace("scratch")
    assert error.value.status == 404


async def test_deleting_a_deployment_garbage_collects_its_replicasets_and_pods(
    kubesim, api: client.ApiClient
) -> None:
    apps = client.AppsV1Api(api)
    assert kubesim.store.list("pods", namespace="payments-prod", label_selector="app=frontend")
    await apps.delete_namespaced_deployment("frontend", "payments-prod")
    assert not kubesim.store.list(
        "replicasets", namespace="payments-prod", label_selector="app=frontend"
    )
    assert not kubesim.store.list("pods", namespace="payments-prod", label_selector="app=frontend")
    await asyncio.sleep(0)
