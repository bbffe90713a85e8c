"""Does the loop keep answering while the biggest queries the cost limit allows run?

Four clients loop on a query just under the default cost budget (the 10,000-pod fleet tree,
deeper than a dashboard needs), while a fifth probes ``/healthz`` every 20 ms. The figure is
the probe's latency under that load, against the same probe on the idle server (the floor,
measured in the same run). ``/healthz`` runs on the same event loop as GraphQL, sync and
subscriptions, so its tail is theirs. The server is a real ``fleetgraph serve`` process, so
the clients' own work (parsing megabytes of JSON) is not on its loop.

    PYTHONPATH=. .venv/bin/python bench/bench_loop.py [--seconds 20] [--clients 4]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

import httpx

from app.db import create_pool
from app.settings import Settings
from app.tenancy import create_organization, create_token
from bench.bench_graph import GENERATE
from bench.processes import fleetgraph_serve
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


async def _bench(url: str, *, seconds: float, clients: int) -> None:
    pool = await create_pool(url, max_size=4)
    try:
        async with pool.acquire() as conn:
            org = await create_organization(conn, slug="loop", name="Loop")
            token = (await create_token(conn, org_slug="loop", role="viewer")).token
        await pool.execute(GENERATE, org, CLUSTERS, NAMESPACES, DEPLOYMENTS, PODS)
        await pool.execute("ANALYZE")
        print(f"query cost {_cost():,} (default limit {Settings().query_cost_viewer:,}); "
              f"{clients} clients for {seconds:g} s")
        async with fleetgraph_serve(url) as base, \
                httpx.AsyncClient(base_url=base, timeout=60) as probe:
            _, idle_p99 = _summary("/healthz, idle (floor)", await _probe(probe, 3))
            stop = asyncio.Event()
            done: list[float] = []
            https = [httpx.AsyncClient(base_url=base, timeout=60) for _ in range(clients)]
            loaders = [asyncio.create_task(_load(http, token, stop, done)) for http in https]
            await asyncio.sleep(1)
            busy = await _probe(probe, seconds)
            stop.set()
            await asyncio.gather(*loaders)
            for http in https:
                await http.aclose()
        _, busy_p99 = _summary(f"/healthz, {clients} big queries", busy)
        _summary("each big query", done)
        print(f"/healthz p99 under load: {busy_p99 * 1000:.0f} ms = "
              f"{busy_p99 / idle_p99:.0f}x the idle floor")
    finally:
        await pool.close()


async def _main(args: argparse.Namespace) -> None:
    async with bench_database("fg_bench_loop") as url:
        await _bench(url, seconds=args.seconds, clients=args.clients)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--clients", type=int, default=4)
    asyncio.run(_main(parser.parse_args()))
