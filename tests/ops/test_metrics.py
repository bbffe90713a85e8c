"""``/metrics`` as Prometheus scrapes it: parsed with prometheus_client's own parser, after real
GraphQL requests over HTTP and WebSocket, with sane values and no unbounded label."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest

from app.db import MeteredPool, close_pool, create_pool
from kubesim import KubeSim
from tests.api import Api, running_api
from tests.graph.ws import open_subscription
from tests.ops.scrape import BOUNDED_LABEL, Scrape, scrape
from tests.sync.conftest import eventually, running_sync
from tests.sync.factories import make_vault, register_cluster

# A marker no label may ever carry: it is in the query text (as an alias) and in a variable.
LEAKY = "leakyAliasName"
CHEAP = "query { clusters(first: 1) { totalCount } }"
# Over the viewer budget of this module's server (60): refused before execution.
COSTLY = f"query {{ {LEAKY}: clusters(first: 100) {{ edges {{ node {{ name }} }} }} }}"

KNOWN_LABELS = {"cluster_id", "kind", "reason", "operation", "code", "role", "state", "le",
                # fleetgraph_build_info and prometheus_client's python_info
                "version", "implementation", "major", "minor", "patchlevel", "generation"}


@pytest.fixture(scope="module")
async def ops_api(database_url: str, db_pool: asyncpg.Pool) -> AsyncIterator[Api]:
    async with running_api(database_url, db_pool, slug_prefix="ops",
                           query_cost_viewer=60) as running:
        yield running


async def _graphql_traffic(api: Api) -> None:
    viewer = api.a.tokens["viewer"]
    ok = await api.gql(CHEAP, token=viewer)
    assert "errors" not in ok, ok
    refused = await api.gql(COSTLY, {"secret": LEAKY}, token=viewer)
    [error] = refused["errors"]
    assert error["extensions"]["code"] == "BAD_USER_INPUT" and error["extensions"]["cost"] > 60
    unauthenticated = await api.gql(CHEAP)
    assert unauthenticated["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    mutation = await api.gql('mutation { deleteCluster(id: "Q2x1c3Rlcjo=") { __typename } }',
                             token=api.a.tokens["admin"])
    assert mutation.get("errors") or mutation.get("data"), mutation
    broken = await api.http.post("/graphql", content=b"{not json",
                                 headers={"Content-Type": "application/json"})
    assert broken.status_code == 400


async def test_graphql_requests_errors_and_refused_costs_are_counted(ops_api: Api) -> None:
    before = await scrape(ops_api.http)
    await _graphql_traffic(ops_api)
    after = await scrape(ops_api.http)

    assert after.families["fleetgraph_graphql_request_duration_seconds"] == "histogram"
    queries = "fleetgraph_graphql_request_duration_seconds_count"
    # the cheap query, the refused one and the unauthenticated one are all queries
    assert after.value(queries, operation="query") - before.value(queries, operation="query") >= 3
    assert after.value(queries, operation="mutation") > before.value(queries, operation="mutation")
    assert after.value(queries, operation="none") > before.value(queries, operation="none")
    total = after.value("fleetgraph_graphql_request_duration_seconds_sum", operation="query")
    assert 0 < total / after.value(queries, operation="query") < 5  # seconds, on average

    errors = "fleetgraph_graphql_errors_total"
    for code, at_least in (("BAD_USER_INPUT", 2), ("UNAUTHENTICATED", 1)):  # cost + bad JSON
        assert after.value(errors, code=code) - before.value(errors, code=code) >= at_least, code

    refused = "fleetgraph_graphql_refused_query_cost_count"
    assert after.value(refused, role="viewer") - before.value(refused, role="viewer") == 1
    cost_sum = "fleetgraph_graphql_refused_query_cost_sum"
    assert after.value(cost_sum, role="viewer") - before.value(cost_sum, role="viewer") > 60
    # the cost landed in a bucket above the budget, not in the first one
    assert after.value("fleetgraph_graphql_refused_query_cost_bucket", role="viewer",
                       le="10000.0") >= 1


async def test_pool_loop_and_socket_gauges_are_live(ops_api: Api) -> None:
    subscription = await open_subscription(ops_api.ws_url, ops_api.a.tokens["viewer"],
                                           "subscription { clusterHealth { status } }")
    try:
        async def opened() -> Scrape:
            for _ in range(50):
                found = await scrape(ops_api.http)
                if found.value("fleetgraph_graphql_subscriptions_open") >= 1:
                    return found
                await asyncio.sleep(0.1)
            raise AssertionError("the open subscription never showed")

        during = await opened()
        assert during.value("fleetgraph_websockets_open") >= 1
    finally:
        await subscription.close()
    await asyncio.sleep(0.6)  # at least two loop-lag samples more
    server_pool = ops_api.app.state.pool
    async with server_pool.acquire(), server_pool.acquire():
        held = await scrape(ops_api.http)
    after = await scrape(ops_api.http)
    assert after.value("fleetgraph_db_pool_max_connections") == ops_api.settings.pool_max_size
    assert held.value("fleetgraph_db_pool_connections", state="in_use") == (
        after.value("fleetgraph_db_pool_connections", state="in_use") + 2)
    in_use = after.value("fleetgraph_db_pool_connections", state="in_use")
    idle = after.value("fleetgraph_db_pool_connections", state="idle")
    assert 2 <= in_use + idle <= ops_api.settings.pool_max_size
    assert after.value("fleetgraph_db_pool_waiting") == 0
    assert after.value("fleetgraph_event_loop_lag_seconds_count") >= 2
    assert after.value("fleetgraph_event_loop_lag_seconds_sum") < (
        after.value("fleetgraph_event_loop_lag_seconds_count"))  # under a second each, on average
    assert after.value("fleetgraph_metrics_database_up") == 1
    assert after.matching("process_resident_memory_bytes")


async def test_no_label_carries_a_token_query_text_or_an_unbounded_value(ops_api: Api) -> None:
    await _graphql_traffic(ops_api)
    found = await scrape(ops_api.http)
    secrets = {token for tenant in (ops_api.a, ops_api.b) for token in tenant.tokens.values()}
    for sample in found.samples:
        assert set(sample.labels) <= KNOWN_LABELS, sample
        for value in sample.labels.values():
            assert BOUNDED_LABEL.match(value), sample
            assert LEAKY not in value and "clusters" not in value, sample
            assert not any(token in value or value.startswith("fgt_") for token in secrets)


async def test_openmetrics_is_served_when_the_scraper_asks_for_it(ops_api: Api) -> None:
    response = await ops_api.http.get(
        "/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    assert response.headers["content-type"].startswith("application/openmetrics-text")
    assert response.text.rstrip().endswith("# EOF")


async def test_metrics_move_to_a_port_of_their_own_or_switch_off(
    database_url: str, db_pool: asyncpg.Pool
) -> None:
    async with running_api(database_url, db_pool, slug_prefix="opsport",
                           prometheus_listen=("127.0.0.1", 0)) as api:
        assert (await api.http.get("/metrics")).status_code == 404
        listener = api.app.state.metrics_listener
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{listener.port}") as http:
            found = await scrape(http)
        assert found.value("fleetgraph_db_pool_max_connections") == api.settings.pool_max_size
        assert found.value("fleetgraph_metrics_database_up") == 1
    async with running_api(database_url, db_pool, slug_prefix="opsoff", prometheus=False) as api:
        assert (await api.http.get("/metrics")).status_code == 404
        assert not hasattr(api.app.state, "metrics_listener")


async def test_the_pool_counts_callers_waiting_for_a_connection(database_url: str) -> None:
    pool = await create_pool(database_url, min_size=1, max_size=1)
    assert isinstance(pool, MeteredPool)
    try:
        held = await pool.acquire()
        waiters = [asyncio.create_task(pool.fetchval("SELECT 1")) for _ in range(3)]
        for _ in range(100):
            if pool.waiting == 3:
                break
            await asyncio.sleep(0.01)
        assert pool.waiting == 3
        await pool.release(held)
        assert await asyncio.gather(*waiters) == [1, 1, 1]
        assert pool.waiting == 0
        async with pool.acquire():
            with pytest.raises(TimeoutError):  # a caller that gives up stops waiting too
                await pool.acquire(timeout=0.05)
            assert pool.waiting == 0
    finally:
        await close_pool(pool)


async def test_a_cluster_sync_is_measured_by_cluster_id(
    ops_api: Api, db_pool: asyncpg.Pool
) -> None:
    vault = make_vault()
    name = "tenant-chosen-name"
    async with KubeSim.start(fleet="small", seed=4) as sim:
        async with db_pool.acquire() as conn:
            cluster_id = await register_cluster(conn, vault, server=sim.url, token=sim.token,
                                                org_id=ops_api.a.org_id, name=name)
        label = str(cluster_id)
        fleet = sim.fleet
        assert fleet is not None
        async with running_sync(db_pool, vault, cluster_id):
            fleet.step(seconds=120)  # pods and deployments move: watch events

            async def measured() -> Scrape:
                return await scrape(ops_api.http)

            await eventually(measured, lambda s: (
                s.value("fleetgraph_sync_events_applied_total", cluster_id=label, kind="pods") > 0
                and s.value("fleetgraph_sync_flush_batch_size_count", cluster_id=label) >= 2),
                within=20)
            sim.faults.force_410(1)  # the next watch is told its version is gone
            sim.faults.cut_watches(1)  # and one stream is cut mid-event
            fleet.step(seconds=120)
            found = await eventually(measured, lambda s: (
                sum(x.value for x in s.matching("fleetgraph_sync_relists_total",
                                                cluster_id=label)) >= 1
                and sum(x.value for x in s.matching("fleetgraph_sync_watch_restarts_total",
                                                    cluster_id=label, reason="cut")) >= 1
                and s.value("fleetgraph_cluster_sync_state", cluster_id=label,
                            state="active") == 1), within=30)

    restarts = found.matching("fleetgraph_sync_watch_restarts_total", cluster_id=label)
    assert {s.labels["reason"] for s in restarts} <= {"gone", "cut", "error"}
    assert sum(s.value for s in restarts if s.labels["reason"] == "gone") >= 1
    flushes = found.value("fleetgraph_sync_flush_batch_size_count", cluster_id=label)
    assert flushes >= 2  # the listed snapshot, then the watched changes
    # every listed object went through a flush at least once
    listed = sum(s.value for s in found.matching("fleetgraph_cluster_listed_objects",
                                                 cluster_id=label))
    assert listed > 50
    assert found.value("fleetgraph_sync_flush_batch_size_sum", cluster_id=label) >= listed
    assert found.value("fleetgraph_sync_flush_duration_seconds_count", cluster_id=label) == flushes
    lags = found.value("fleetgraph_sync_change_commit_lag_seconds_count", cluster_id=label)
    assert 1 <= lags <= flushes
    lag = found.value("fleetgraph_sync_change_commit_lag_seconds_sum", cluster_id=label)
    assert 0 < lag / lags < 10  # seconds, on average
    synced_at = found.value("fleetgraph_cluster_last_successful_sync_timestamp_seconds",
                            cluster_id=label)
    assert abs(time.time() - synced_at) < 120
    assert found.value("fleetgraph_cluster_metrics_api_available", cluster_id=label) == 1
    assert sum(found.value("fleetgraph_cluster_sync_state", cluster_id=label, state=state)
               for state in ("pending", "active", "unreachable", "disabled")) == 1
    assert name not in found.label_values()

    async with db_pool.acquire() as conn:
        await conn.execute("DELETE FROM k8s_clusters WHERE id = $1", cluster_id)
    await scrape(ops_api.http)  # this scrape sees it gone and drops its series
    after = await scrape(ops_api.http)
    assert not [s for s in after.samples if s.labels.get("cluster_id") == label]
