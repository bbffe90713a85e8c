"""Does the loop keep answering while the biggest queries the cost limit allows run?

Four clients loop on a query just under the default cost budget (a 24,000-pod fleet tree,
deeper than a dashboard needs), while a fifth probes ``/healthz`` every 20 ms. The figure is
the probe's latency under that load, against the same probe on the idle server (the floor,
measured in the same run). ``/healthz`` runs on the same event loop as GraphQL, sync and
subscriptions, so its tail is theirs. The server is a real ``fleetgraph serve`` process, so
the clients' own work (parsing megabytes of JSON) is not on its loop.

The same server syncs kubesim's ``large`` fleet meanwhile (another process, changing in real
time, registered through GraphQL as a user would), so "sync keeps flushing" is measured too:
the server's own ``fleetgraph_sync_change_commit_lag_seconds`` (a change's arrival to its
commit), idle against under load.

    PYTHONPATH=. .venv/bin/python bench/bench_loop.py [--seconds 20] [--clients 4] [--no-sync]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
import statistics
import time
from collections.abc import AsyncIterator

import httpx

from app.db import create_pool
from app.settings import Settings
from app.tenancy import create_organization, create_token
from bench.bench_graph import GENERATE
from bench.processes import fleetgraph_serve, kubesim_process
from schema import build_schema
from schema.query_cost import operation_cost
from tests.databases import bench_database

CLUSTERS, NAMESPACES, DEPLOYMENTS, PODS = 5, 10, 10, 48
BIG = f"""{{ clusters(first: {CLUSTERS}) {{ edges {{ node {{ name
  namespaces(first: {NAMESPACES}) {{ edges {{ node {{ name
    deployments(first: {DEPLOYMENTS}) {{ edges {{ node {{ name
      pods(first: {PODS}) {{ edges {{ node {{ name phase restartCount nodeName }} }} }}
    }} }} }} }} }} }} }} }} }} }}"""


def _cost() -> int:
    from graphql import parse

    return operation_cost(build_schema()._schema, parse(BIG), {}, None)


async def _probe(http: httpx.AsyncClient, seconds: float) -> list[float]:
    latencies = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        started = time.perf_counter()
        response = await http.get("/healthz")
        latencies.append(time.perf_counter() - started)
        assert response.status_code == 200
        await asyncio.sleep(0.02)
    return latencies


async def _load(http: httpx.AsyncClient, token: str, stop: asyncio.Event,
                done: list[float]) -> None:
    while not stop.is_set():
        started = time.perf_counter()
        response = await http.post("/graphql", json={"query": BIG},
                                   headers={"Authorization": f"Bearer {token}"})
        assert b'"errors"' not in response.content[:200], response.content[:300]
        done.append(time.perf_counter() - started)


def _summary(label: str, values: list[float]) -> tuple[float, float]:
    ordered = sorted(values)
    p50 = statistics.median(ordered)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    print(f"{label:>26}: n={len(values):4d}  p50 {p50 * 1000:7.1f} ms  "
          f"p99 {p99 * 1000:7.1f} ms  max {ordered[-1] * 1000:7.1f} ms")
    return p50, p99


REGISTER = """mutation($input: RegisterClusterInput!) { registerCluster(input: $input) {
  __typename ... on Cluster { status } ... on InvalidInput { message } } }"""
LAG = "fleetgraph_sync_change_commit_lag_seconds"
_BUCKET = re.compile(rf'^{LAG}_bucket{{.*le="([^"]+)"}} ([0-9.e+]+)$', re.M)


async def _lag_buckets(http: httpx.AsyncClient) -> dict[float, float]:
    """The commit-lag histogram's cumulative buckets, summed over clusters."""
    text = (await http.get("/metrics")).text
    buckets: dict[float, float] = {}
    for bound, count in _BUCKET.findall(text):
        buckets[float(bound)] = buckets.get(float(bound), 0.0) + float(count)
    return buckets


def _lag_summary(label: str, before: dict[float, float], after: dict[float, float]) -> None:
    """Changes committed between two scrapes, and the bucket bounds holding their p50/p99."""
    delta = {bound: after.get(bound, 0.0) - before.get(bound, 0.0) for bound in after}
    total = delta.get(float("inf"), 0.0)
    if not total:
        print(f"{label:>26}: no changes committed")
        return

    def bound_of(q: float) -> str:
        bound = next(b for b in sorted(delta) if delta[b] >= q * total)
        return "> 30 s" if bound == float("inf") else f"<= {bound * 1000:.0f} ms"

    print(f"{label:>26}: {total:5.0f} changes  p50 {bound_of(0.5)}  p99 {bound_of(0.99)}")


@contextlib.asynccontextmanager
async def _synced_cluster(http: httpx.AsyncClient, token: str, enabled: bool
                          ) -> AsyncIterator[None]:
    """kubesim's large fleet in its own process, registered and synced (ACTIVE) first."""
    if not enabled:
        yield
        return
    async with kubesim_process(fleet="large", seed=11, speed=60) as kubeconfig:
        answer = (await http.post("/graphql", json={"query": REGISTER, "variables": {"input": {
            "name": "kubesim-large", "provider": "K3S", "kubeconfig": kubeconfig}}},
            headers={"Authorization": f"Bearer {token}"})).json()
        result = answer["data"]["registerCluster"]
        assert result["__typename"] == "Cluster", answer
        started = time.perf_counter()
        status = result["status"]
        while status != "ACTIVE":
            assert time.perf_counter() - started < 180, f"sync not ACTIVE: {status}"
            await asyncio.sleep(0.5)
            status = (await http.post("/graphql", json={
                "query": "{ clusters(first: 1) { edges { node { status } } } }"},
                headers={"Authorization": f"Bearer {token}"})).json()[
                "data"]["clusters"]["edges"][0]["node"]["status"]
        print(f"kubesim large fleet synced (ACTIVE) in {time.perf_counter() - started:.1f} s")
        yield


async def _bench(url: str, *, seconds: float, clients: int, sync: bool) -> None:
    pool = await create_pool(url, max_size=4)
    try:
        async with pool.acquire() as conn:
            org = await create_organization(conn, slug="loop", name="Loop")
            token = (await create_token(conn, org_slug="loop", role="viewer")).token
            await create_organization(conn, slug="loop-sync", name="Loop sync")
            admin = (await create_token(conn, org_slug="loop-sync", role="admin")).token
        await pool.execute(GENERATE, org, CLUSTERS, NAMESPACES, DEPLOYMENTS, PODS)
        await pool.execute("ANALYZE")
        print(f"query cost {_cost():,} (default limit {Settings().query_cost_viewer:,}); "
              f"{clients} clients for {seconds:g} s")
        env = {"FLEETGRAPH_ALLOW_LOCAL_CLUSTERS": "1"}
        async with fleetgraph_serve(url, sync=sync, env=env) as base, \
                httpx.AsyncClient(base_url=base, timeout=60) as probe, \
                _synced_cluster(probe, admin, sync):
            lag_start = await _lag_buckets(probe)
            _, idle_p99 = _summary("/healthz, idle (floor)", await _probe(probe, 3))
            lag_idle = await _lag_buckets(probe)
            stop = asyncio.Event()
            done: list[float] = []
            https = [httpx.AsyncClient(base_url=base, timeout=60) for _ in range(clients)]
            loaders = [asyncio.create_task(_load(http, token, stop, done)) for http in https]
            await asyncio.sleep(1)
            lag_loaded = await _lag_buckets(probe)
            busy = await _probe(probe, seconds)
            lag_end = await _lag_buckets(probe)
            stop.set()
            await asyncio.gather(*loaders)
            for http in https:
                await http.aclose()
        _, busy_p99 = _summary(f"/healthz, {clients} big queries", busy)
        _summary("each big query", done)
        print(f"/healthz p99 under load: {busy_p99 * 1000:.0f} ms = "
              f"{busy_p99 / idle_p99:.0f}x the idle floor")
        if sync:
            _lag_summary("sync commit lag, idle", lag_start, lag_idle)
            _lag_summary("sync commit lag, loaded", lag_loaded, lag_end)
    finally:
        await pool.close()


async def _main(args: argparse.Namespace) -> None:
    async with bench_database("fg_bench_loop") as url:
        await _bench(url, seconds=args.seconds, clients=args.clients, sync=args.sync)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--no-sync", dest="sync", action="store_false",
                        help="leave out the synced kubesim fleet")
    asyncio.run(_main(parser.parse_args()))
