"""Paged lists from kubesim over HTTP: every object once, and no request left behind.

``list_pages`` asks for the next page before the current one is handed on, so these pin that
the pages still arrive whole and in order, and that a list abandoned (or failed) midway leaves
no request running.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator
from typing import cast

import orjson
import pytest
from kubernetes_asyncio.client import ApiClient

from app.kube_client import open_api_client
from app.kubeconfig import sanitize_kubeconfig
from app.network_guard import NetworkPolicy
from kubesim import KubeSim
from sync.kubeapi import Gone, Page, list_pages


@pytest.fixture
async def api(sim: KubeSim) -> AsyncIterator[ApiClient]:
    kubeconfig = sanitize_kubeconfig(orjson.dumps(sim.kubeconfig).decode())
    async with open_api_client(kubeconfig, connect_timeout=2, read_timeout=5,
                               network=NetworkPolicy(allow_local=True)) as client:
        yield client


def _pending_requests() -> list[asyncio.Task[object]]:
    return [t for t in asyncio.all_tasks() if not t.done() and "get_json" in repr(t)]


async def test_pages_hold_every_object_once_in_order(api: ApiClient, sim: KubeSim) -> None:
    pages = [page async for page in list_pages(api, "/api/v1/pods", limit=7)]
    uids = [p["metadata"]["uid"] for page in pages for p in page.items]
    expected = [p["metadata"]["uid"] for p in sim.store.list("pods")]
    assert sorted(uids) == sorted(expected) and len(uids) == len(set(uids))
    assert [len(page.items) for page in pages[:-1]] == [7] * (len(pages) - 1)
    assert pages[-1].resource_version == str(sim.store.resource_version)
    assert _pending_requests() == []


async def test_a_list_abandoned_after_its_first_page_leaves_no_request_running(
    api: ApiClient, sim: KubeSim
) -> None:
    pages = cast(AsyncGenerator[Page, None], list_pages(api, "/api/v1/pods", limit=5))
    first = await anext(pages)
    assert len(first.items) == 5
    assert len(_pending_requests()) == 1  # the second page, asked for already
    await pages.aclose()
    await asyncio.sleep(0)
    assert _pending_requests() == []


async def test_an_expired_continue_token_on_the_page_asked_ahead_is_raised_in_turn(
    api: ApiClient, sim: KubeSim
) -> None:
    sim.faults.force_410(1)  # the next request with a continue token is told 410
    seen = 0
    with pytest.raises(Gone):
        async for page in list_pages(api, "/api/v1/pods", limit=5):
            seen += len(page.items)
    assert seen == 5
    assert _pending_requests() == []
