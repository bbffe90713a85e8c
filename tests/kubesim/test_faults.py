"""Each fault switch behaves as specified, seen through the real client over HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import aiohttp
import pytest
from kubernetes_asyncio import client, watch
from kubernetes_asyncio.client.exceptions import ApiException

from kubesim import KubeSim

from .conftest import api_client


async def test_latency_delays_every_answer(kubesim, api) -> None:
    core: Any = client.CoreV1Api(api)
    kubesim.faults.latency = 0.3
    started = time.perf_counter()
    await core.list_namespace()
    assert time.perf_counter() - started >= 0.3
    kubesim.faults.reset()
    started = time.perf_counter()
    await core.list_namespace()
    assert time.perf_counter() - started < 0.25


async def test_500s_for_the_next_n_requests(kubesim, api) -> None:
    core: Any = client.CoreV1Api(api)
    kubesim.faults.fail_next(2)
    for _ in range(2):
        with pytest.raises(ApiException) as error:
            await core.list_node()
        assert error.value.status == 500 and '"reason":"InternalError"' in str(error.value.body)
    assert (await core.list_node()).items


async def test_429_carries_retry_after(kubesim, api) -> None:
    core: Any = client.CoreV1Api(api)
    kubesim.faults.throttle_next(1, retry_after=7, path_contains="/pods")
    assert (await core.list_node()).items  # other paths unaffected
    with pytest.raises(ApiException) as error:
        await core.list_pod_for_all_namespaces()
    assert error.value.status == 429
    assert error.value.headers is not None
    assert error.value.headers["Retry-After"] == "7"
    assert '"reason":"TooManyRequests"' in str(error.value.body)
    assert (await core.list_pod_for_all_namespaces()).items


async def test_error_rate_fails_about_that_share_of_requests(
    kubesim, api: client.ApiClient
) -> None:
    core: Any = client.CoreV1Api(api)
    kubesim.faults.inject_error(503, rate=0.5, count=None)
    failures = 0
    for _ in range(40):
        try:
            await core.read_namespace("default")
        except ApiException as error:
            assert error.status == 503
            failures += 1
    assert 8 <= failures <= 32
    kubesim.faults.clear_errors()
    await core.read_namespace("default")


async def test_watch_stream_cut_mid_event(kubesim, api) -> None:
    core: Any = client.CoreV1Api(api)
    rv = (await core.list_namespaced_pod("payments-prod")).metadata.resource_version
    response = await core.list_namespaced_pod(
        "payments-prod", watch=True, resource_version=rv, _preload_content=False
    )
    kubesim.faults.cut_watches(1)
    pod = kubesim.store.list("pods", namespace="payments-prod")[0]["metadata"]["name"]
    kubesim.fleet.oom_kill("payments-prod", pod)
    received = b""
    with pytest.raises(aiohttp.ClientPayloadError):
        async with asyncio.timeout(3):
            async for chunk in response.content.iter_any():
                received += chunk
    assert received and not received.endswith(b"\n")  # half an event, then the socket died
    assert b'"type":"MODIFIED"' in received
    # the next watch works again and resumes from the same version
    async with watch.Watch() as w:
        events = [
            e
            async for e in w.stream(
                core.list_namespaced_pod, "payments-prod", resource_version=rv, timeout_seconds=1
            )
        ]
    assert any(e["type"] == "MODIFIED" and e["object"].metadata.name == pod for e in events)


async def test_forced_410_on_watch_and_on_list(kubesim, api) -> None:
    core: Any = client.CoreV1Api(api)
    listed = await core.list_pod_for_all_namespaces(limit=5)
    kubesim.faults.force_410(1)
    with pytest.raises(ApiException) as error:
        async with watch.Watch() as w:
            async for _ in w.stream(
                core.list_namespaced_pod,
                "default",
                resource_version=listed.metadata.resource_version,
                timeout_seconds=1,
            ):
                pass
    assert error.value.status == 410
    kubesim.faults.force_410(1)
    with pytest.raises(ApiException) as error:
        await core.list_pod_for_all_namespaces(limit=5, _continue=listed.metadata._continue)
    assert error.value.status == 410
    # only once: the same continue token works now
    assert (
        await core.list_pod_for_all_namespaces(limit=5, _continue=listed.metadata._continue)
    ).items


async def test_metrics_api_absent(kubesim, api) -> None:
    custom = client.CustomObjectsApi(api)
    kubesim.faults.metrics_available = False
    with pytest.raises(ApiException) as error:
        await custom.list_cluster_custom_object("metrics.k8s.io", "v1beta1", "nodes")
    assert error.value.status == 404
    groups = await client.ApisApi(api).get_api_versions()
    assert "metrics.k8s.io" not in {g.name for g in groups.groups}
    kubesim.faults.metrics_available = True
    assert (await custom.list_cluster_custom_object("metrics.k8s.io", "v1beta1", "nodes"))["items"]
    groups = await client.ApisApi(api).get_api_versions()
    assert "metrics.k8s.io" in {g.name for g in groups.groups}


async def test_server_down_refuses_connections_and_ends_watches_then_comes_back(
    kubesim,
) -> None:
    port = kubesim.port
    async with api_client(kubesim.kubeconfig) as api:
        core: Any = client.CoreV1Api(api)
        rv = (await core.list_namespace()).metadata.resource_version
        stream = await core.list_namespace(watch=True, resource_version=rv, _preload_content=False)
        started = time.perf_counter()
        await kubesim.down()
        assert time.perf_counter() - started < 2
        with pytest.raises((aiohttp.ClientPayloadError, aiohttp.ClientConnectionError)):
            async with asyncio.timeout(2):
                async for _ in stream.content.iter_any():
                    pass
                raise aiohttp.ClientConnectionError("stream ended")
        with pytest.raises(aiohttp.ClientConnectorError):
            await core.list_namespace()
    kubesim.store.create("namespaces", {"metadata": {"name": "made-while-down"}})
    await kubesim.up()
    assert kubesim.port == port
    async with api_client(kubesim.kubeconfig) as api:
        names = [n.metadata.name for n in (await client.CoreV1Api(api).list_namespace()).items]
    assert "made-while-down" in names


async def test_stop_ends_open_watch_streams_promptly() -> None:
    async with KubeSim.start(fleet=None) as sim, api_client(sim.kubeconfig) as api:
        core: Any = client.CoreV1Api(api)
        stream = await core.list_namespace(watch=True, _preload_content=False)
        reader = asyncio.ensure_future(stream.content.read())
        await asyncio.sleep(0.05)
        started = time.perf_counter()
        await sim.stop()
        assert time.perf_counter() - started < 2
        async with asyncio.timeout(2):
            with contextlib.suppress(aiohttp.ClientPayloadError):
                await reader
