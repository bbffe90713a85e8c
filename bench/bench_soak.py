"""Does a replica's memory stay flat under subscription load? Its RSS slope, in MiB per 10 min.

Three kubesim clusters churn (each its own process: the fleet runs in real time, sped up, and
the bench relabels a pod in each every ``--churn-interval``), one real ``fleetgraph serve``
process syncs them, 50 graphql-transport-ws subscribers listen (``syncStatus`` of each
cluster and ``clusterHealth`` of all), and a steady query mix runs (a dashboard's list, a
cluster's pods and deployments, one query every ``--query-interval``). After a warm-up the
server's RSS is sampled every few seconds; the least-squares slope is printed as MiB per 10
minutes, with the events delivered and the queries answered. The issue's bar: under 5 MiB of
growth over a 30-minute soak after warm-up (``--minutes 30``).

    PYTHONPATH=. .venv/bin/python bench/bench_soak.py [--minutes 3] [--warmup 60]
        [--subscribers 50] [--clusters 3]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import secrets
import statistics
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import psutil

from app.db import create_pool
from app.tenancy import create_organization, create_token
from app.vault import Vault, generate_key
from bench.processes import free_port, server_process
from schema.relay import to_global_id
from tests.databases import bench_database
from tests.graph.ws import next_payload, open_subscription
from tests.sync.factories import register_cluster

MIB = 1024 * 1024
SAMPLE_EVERY_S = 5.0
QUERIES = [
    "{ clusters(first: 10) { totalCount edges { node { name status lastSyncedAt "
    "health { status } } } } }",
    "query($id: ID!) { cluster(id: $id) { name pods(first: 50) { edges { node { name phase "
    "restartCount nodeName } } } } }",
    "query($id: ID!) { cluster(id: $id) { deployments(first: 20) { edges { node { name "
    "replicas { desired available } } } } } }",
]
SYNC = "subscription($id: ID!) { syncStatus(clusterId: $id) { status kinds { kind state } " \
       "changedKinds } }"
HEALTH = "subscription { clusterHealth { clusterId status reason } }"


@dataclass
class Tally:
    events: int = 0
    queries: int = 0
    query_errors: int = 0
    churned: int = 0
    rss: list[tuple[float, int]] = field(default_factory=list)


@dataclass(frozen=True)
class Sim:
    url: str
    token: str


@contextlib.asynccontextmanager
async def kubesim_process(seed: int, *, speed: float) -> AsyncIterator[Sim]:
    """``python -m kubesim`` with a small fleet moving in real time, ``speed`` times faster."""
    port, token = free_port(), f"soak-{secrets.token_hex(8)}"
    argv = ["-m", "kubesim", "--port", str(port), "--fleet", "small", "--seed", str(seed),
            "--token", token, "--realtime", "--speed", str(speed), "--plain-http"]
    async with server_process(argv, port=port, ready_path="/version") as base:
        yield Sim(base, token)


def server_pid(port: int) -> int:
    """The ``fleetgraph serve`` child of this process listening on ``port``."""
    for child in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if "app.cli" in child.cmdline() and str(port) in child.cmdline():
                return child.pid
    raise RuntimeError(f"no fleetgraph serve process on port {port}")


async def churn(sim: Sim, stop: asyncio.Event, interval: float, tally: Tally) -> None:
    """Relabel one pod after another through the API, as a busy cluster's controllers do."""
    headers = {"Authorization": f"Bearer {sim.token}"}
    async with httpx.AsyncClient(base_url=sim.url, headers=headers, timeout=10) as http:
        pods = (await http.get("/api/v1/pods")).json()["items"]
        for i in itertools.count():
            if stop.is_set():
                return
            meta = pods[i % len(pods)]["metadata"]
            response = await http.patch(
                f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}",
                json={"metadata": {"labels": {"soak": str(i)}}},
                headers={"Content-Type": "application/merge-patch+json"})
            if response.status_code == 404:  # the fleet replaced it meanwhile
                pods = (await http.get("/api/v1/pods")).json()["items"]
            else:
                tally.churned += 1
            await asyncio.sleep(interval)


async def subscriber(ws_url: str, token: str, query: str, variables: dict[str, Any] | None,
                     stop: asyncio.Event, tally: Tally) -> None:
    ws = await open_subscription(ws_url, token, query, variables)
    try:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await next_payload(ws, wait=1.0)
                tally.events += 1
    finally:
        await ws.close()


async def query_mix(base: str, token: str, cluster_ids: list[str], stop: asyncio.Event,
                    interval: float, tally: Tally) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=30) as http:
        for i in itertools.count():
            if stop.is_set():
                return
            query = QUERIES[i % len(QUERIES)]
            variables = {"id": cluster_ids[i % len(cluster_ids)]} if "$id" in query else {}
            response = await http.post("/graphql", json={"query": query,
                                                         "variables": variables})
            tally.queries += 1
            if response.status_code != 200 or b'"errors"' in response.content:
                tally.query_errors += 1
            await asyncio.sleep(interval)


async def sample_rss(pid: int, stop: asyncio.Event, tally: Tally) -> None:
    process = psutil.Process(pid)
    while not stop.is_set():
        tally.rss.append((time.monotonic(), process.memory_info().rss))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), SAMPLE_EVERY_S)


def slope_mib_per_10_min(samples: list[tuple[float, int]]) -> float:
    """Least-squares slope of RSS over time, in MiB per 10 minutes."""
    if len(samples) < 3:
        raise SystemExit("too few RSS samples: run for longer (--minutes)")
    t0 = samples[0][0]
    xs = [t - t0 for t, _ in samples]
    ys = [rss / MIB for _, rss in samples]
    return statistics.linear_regression(xs, ys).slope * 600


async def _bench(url: str, args: argparse.Namespace) -> None:
    key = generate_key()
    vault = Vault.from_env(key)
    tally = Tally()
    pool = await create_pool(url, max_size=2)
    async with contextlib.AsyncExitStack() as stack:
        sims = [await stack.enter_async_context(kubesim_process(40 + i, speed=args.speed))
                for i in range(args.clusters)]
        async with pool.acquire() as conn:
            org = await create_organization(conn, slug="soak", name="Soak")
            token = (await create_token(conn, org_slug="soak", role="viewer")).token
            cluster_ids = [str(to_global_id("Cluster", await register_cluster(
                conn, vault, server=sim.url, token=sim.token, org_id=org))) for sim in sims]
        await pool.close()
        port = free_port()
        base = await stack.enter_async_context(server_process(
            ["-m", "app.cli", "serve", "--port", str(port), "--no-migrate"], port=port,
            env={"DATABASE_URL": url, "BYOK_ENCRYPTION_KEY": key,
                 "FLEETGRAPH_ALLOW_LOCAL_CLUSTERS": "1", "FLEETGRAPH_LOG_LEVEL": "WARNING"}))
        ws_url = base.replace("http", "ws", 1) + "/graphql"
        stop = asyncio.Event()
        work = [asyncio.create_task(churn(sim, stop, args.churn_interval, tally))
                for sim in sims]
        for i in range(args.subscribers):
            # Mostly syncStatus of one cluster (an event per flush), some clusterHealth.
            if i % 5 == 4:
                work.append(asyncio.create_task(subscriber(ws_url, token, HEALTH, None,
                                                           stop, tally)))
            else:
                variables = {"id": cluster_ids[i % len(cluster_ids)]}
                work.append(asyncio.create_task(subscriber(ws_url, token, SYNC, variables,
                                                           stop, tally)))
        work.append(asyncio.create_task(query_mix(base, token, cluster_ids, stop,
                                                  args.query_interval, tally)))
        pid = server_pid(port)
        print(f"{args.clusters} churning clusters, {args.subscribers} subscribers, a query "
              f"every {args.query_interval:g} s; warm-up {args.warmup:g} s, then "
              f"{args.minutes:g} min of RSS samples (server pid {pid})")
        await asyncio.sleep(args.warmup)
        warm = (tally.events, tally.queries, tally.churned)
        sampler = asyncio.create_task(sample_rss(pid, stop, tally))
        await asyncio.sleep(args.minutes * 60)
        stop.set()
        await asyncio.gather(sampler, *work)
    events, queries, churned = (tally.events - warm[0], tally.queries - warm[1],
                                tally.churned - warm[2])
    first, last = tally.rss[0][1] / MIB, tally.rss[-1][1] / MIB
    print(f"measured: {events:,} subscription events delivered, {queries:,} queries "
          f"({tally.query_errors} with errors), {churned:,} pod changes")
    print(f"RSS {first:.1f} MiB -> {last:.1f} MiB over {args.minutes:g} min "
          f"({len(tally.rss)} samples)")
    print(f"RSS slope: {slope_mib_per_10_min(tally.rss):+.2f} MiB per 10 minutes "
          f"(bar: < {5 / 3:.2f} MiB per 10 minutes, i.e. < 5 MiB over a 30-minute soak)")


async def _main(args: argparse.Namespace) -> None:
    async with bench_database("fg_bench_soak") as url:
        await _bench(url, args)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=3.0,
                        help="how long RSS is sampled after the warm-up (the bar is set "
                             "for 30)")
    parser.add_argument("--warmup", type=float, default=60.0, help="seconds before sampling")
    parser.add_argument("--subscribers", type=int, default=50)
    parser.add_argument("--clusters", type=int, default=3)
    parser.add_argument("--speed", type=float, default=30.0,
                        help="kubesim's simulated seconds per real second")
    parser.add_argument("--churn-interval", type=float, default=0.25,
                        help="seconds between pod changes, per cluster")
    parser.add_argument("--query-interval", type=float, default=0.2)
    asyncio.run(_main(parser.parse_args()))
