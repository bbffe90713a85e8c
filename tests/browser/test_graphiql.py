"""GraphiQL in a real Chromium, on a network without internet: it renders from FleetGraph's
own assets, loads the schema and docs as soon as a token is typed into the headers, runs a
typed query, and shows live subscription events caused by a real change in kubesim."""

from __future__ import annotations

import json
import uuid
from typing import Any

import orjson

from kubesim import KubeSim
from tests.api import Tenant
from tests.browser.conftest import OfflinePage
from tests.browser.graphiql_page import (
    open_graphiql,
    run,
    type_headers,
    type_query,
    wait_for_result,
)
from tests.graph import rows
from tests.sync.conftest import running_sync
from tests.sync.factories import make_vault, register_cluster


async def test_graphiql_renders_offline_from_our_own_assets(
    api: Any, offline_page: OfflinePage
) -> None:
    offline_page.allowed.append(api.base_url)
    page = offline_page.page
    await open_graphiql(page, api.base_url)
    assert await page.locator(".graphiql-execute-button").is_visible()
    assert offline_page.blocked == []
    assert not [line for line in offline_page.console if line.startswith("pageerror")]
    # A real server never puts a token into the page.
    html = await page.content()
    assert "Bearer" not in html.split("fleetgraph-config")[1].split("</script>")[0]


async def test_typed_token_loads_the_docs_and_a_typed_query_answers(
    api: Any, tenant: Tenant, offline_page: OfflinePage
) -> None:
    name = f"browser-{uuid.uuid4().hex[:6]}"
    async with api.pool.acquire() as conn:
        await rows.cluster(conn, tenant.org_id, name)
    offline_page.allowed.append(api.base_url)
    page = offline_page.page
    await open_graphiql(page, api.base_url)

    await type_headers(page, json.dumps({"Authorization": f"Bearer {tenant.tokens['viewer']}"}))
    await page.get_by_role("button", name="Show Documentation Explorer").click()
    docs = page.locator(".graphiql-doc-explorer")
    # The schema is fetched again because the token changed: no manual re-fetch.
    await docs.get_by_text("Query", exact=True).first.wait_for(timeout=15_000)
    await docs.get_by_text("Query", exact=True).first.click()
    await docs.get_by_text("clusters", exact=True).first.wait_for(timeout=5_000)

    await type_query(page, "{ clusters(first: 5) { edges { node { name provider } } } }")
    await run(page)
    text = await wait_for_result(page, lambda t: name in t)
    answer = orjson.loads(text)
    assert answer == {"data": {"clusters": {"edges": [
        {"node": {"name": name, "provider": "VANILLA"}}]}}}
    assert offline_page.blocked == []


async def test_subscription_typed_into_graphiql_shows_a_live_health_change(
    api: Any, tenant: Tenant, offline_page: OfflinePage
) -> None:
    vault = make_vault()
    async with KubeSim.start(fleet="small", seed=3) as sim:
        async with api.pool.acquire() as conn:
            cluster_id = await register_cluster(conn, vault, server=sim.url, token=sim.token,
                                                org_id=tenant.org_id, name="live-browser")
        async with running_sync(api.pool, vault, cluster_id):
            offline_page.allowed.append(api.base_url)
            page = offline_page.page
            await open_graphiql(page, api.base_url)
            await type_headers(
                page, json.dumps({"Authorization": f"Bearer {tenant.tokens['viewer']}"}))
            await type_query(page, "subscription { clusterHealth { clusterName status reason } }")
            await run(page)
            # The socket is open and subscribed once the server counts the subscriber; then a
            # real OOM kill in kubesim changes the cluster's health through the sync.
            fleet = sim.fleet
            assert fleet is not None
            target = next(p["metadata"] for p in sim.store.list("pods")
                          if p["status"].get("phase") == "Running")
            await page.wait_for_timeout(500)
            fleet.oom_kill(target["namespace"], target["name"])
            text = await wait_for_result(page, lambda t: "OOMKilled" in t, within=20)
            event = orjson.loads(text)["data"]["clusterHealth"]
            assert event["clusterName"] == "live-browser"
            assert f"1 pod OOMKilled ({target['namespace']}/{target['name']})" in event["reason"]
            assert offline_page.blocked == []
