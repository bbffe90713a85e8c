"""One health change, 1,000 open ``clusterHealth`` subscribers: how long until the last one
has it, counted from the commit of the change.

The server is a real ``fleetgraph serve`` process (see bench_loop); the subscribers are
graphql-transport-ws sockets in this process. The floor is the same 1,000 sockets receiving
one text frame each from a bare WebSocket server (``bench.fanout_floor``: Starlette, one
pre-serialised frame sent to every socket), in a process of its own like ours, measured in the
same run: the least any server could do for the same bytes. (The floor once ran on this
process's loop, beside its clients: it never had to wake another process for a frame, which
no real server can avoid.)

    PYTHONPATH=. .venv/bin/python bench/bench_fanout.py [--subscribers 1000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from typing import Any

import httpx
import orjson
import websockets

from app.db import create_pool
from app.tenancy import create_organization, create_token
from bench.processes import fleetgraph_serve, free_port, server_process
from tests.databases import bench_database
from tests.graph import rows
from tests.graph.ws import change_health

QUERY = ("subscription { clusterHealth { clusterId clusterName status reason "
         "figures { podsTotal nodesTotal status } } }")


async def _subscribe(ws_url: str, token: str) -> Any:
    ws = await websockets.connect(ws_url, subprotocols=["graphql-transport-ws"],  # type: ignore[list-item]
                                  max_queue=None)
    await ws.send(orjson.dumps({"type": "connection_init",
                                "payload": {"Authorization": f"Bearer {token}"}}).decode())
    assert orjson.loads(await ws.recv())["type"] == "connection_ack"
    await ws.send(orjson.dumps({"id": "1", "type": "subscribe",
                                "payload": {"query": QUERY}}).decode())
    return ws


async def _next(ws: Any) -> tuple[float, str]:
    """When the next ``next`` frame arrived, and the frame as it arrived."""
    while True:
        frame = await ws.recv()
        message = orjson.loads(frame)
        if message["type"] == "next":
            return time.perf_counter(), frame
        if message["type"] == "ping":
            await ws.send('{"type":"pong"}')


async def _graph_round(pool: Any, sockets: list[Any], cluster: Any, org: Any, i: int) -> float:
    waiting = [asyncio.create_task(_next(ws)) for ws in sockets]
    await asyncio.sleep(0.05)
    await change_health(pool, cluster, org, "degraded" if i % 2 else "critical", f"round {i}")
    committed = time.perf_counter()
    arrived = await asyncio.gather(*waiting)
    # Every subscriber has the same operation (and subscription id): the same bytes, or the
    # figure is not the one the issue asks about.
    assert len({frame for _, frame in arrived}) == 1, "subscribers got different frames"
    return max(at for at, _ in arrived) - committed


async def _floor(n: int, rounds: int, frame: str) -> tuple[list[float], float]:
    """``bench.fanout_floor`` in its own process sends one ready frame to every socket: the
    time of each round, and the CPU seconds all rounds cost it."""
    port = free_port()
    async with server_process(["-m", "bench.fanout_floor", "--port", str(port)], port=port,
                              ready_path="/") as base, httpx.AsyncClient(base_url=base) as http:
        url = base.replace("http", "ws") + "/ws"
        sockets = [await websockets.connect(url, max_queue=None) for _ in range(n)]
        for _ in range(400):  # every socket accepted before the first round
            if (await http.get("/")).text == str(n):
                break
            await asyncio.sleep(0.05)
        times = []
        cpu_before = float((await http.get("/cpu")).text)
        for _ in range(rounds):
            waiting = [asyncio.create_task(client.recv()) for client in sockets]
            await asyncio.sleep(0.05)
            started = time.perf_counter()
            await http.post("/send", content=frame.encode())
            await asyncio.gather(*waiting)
            times.append(time.perf_counter() - started)
        cpu = float((await http.get("/cpu")).text) - cpu_before
        for client in sockets:
            await client.close()
    return times, cpu


async def _server_cpu(base: str) -> float:
    """The server's CPU seconds so far (user and system, from its own ``/metrics``): unlike
    the delivery time, hardly moved by what else the machine runs."""
    async with httpx.AsyncClient(base_url=base) as http:
        text = (await http.get("/metrics")).text
    return float(next(line.split()[1] for line in text.splitlines()
                      if line.startswith("process_cpu_seconds_total ")))


async def _bench(url: str, *, subscribers: int, rounds: int) -> None:
    pool = await create_pool(url, max_size=4)
    try:
        async with pool.acquire() as conn:
            org = await create_organization(conn, slug="fanout", name="Fanout")
            token = (await create_token(conn, org_slug="fanout", role="viewer")).token
            cluster = await rows.cluster(conn, org, "fan")
        async with fleetgraph_serve(url) as base:
            ws_url = base.replace("http", "ws") + "/graphql"
            sockets = [await _subscribe(ws_url, token) for _ in range(subscribers)]
            await asyncio.sleep(1)
            await _graph_round(pool, sockets, cluster, org, 0)  # warm-up
            cpu_before = await _server_cpu(base)
            graph = [await _graph_round(pool, sockets, cluster, org, i + 1)
                     for i in range(rounds)]
            cpu = await _server_cpu(base) - cpu_before
            for ws in sockets:
                await ws.close()
        frame = orjson.dumps({"id": "1", "type": "next", "payload": {"data": {
            "clusterHealth": {"clusterId": "x" * 40, "clusterName": "fan", "status": "CRITICAL",
                              "reason": "round 1", "figures": {"podsTotal": 0, "nodesTotal": 0,
                                                               "status": "CRITICAL"}}}}}).decode()
        low, floor_cpu = await _floor(subscribers, rounds, frame)
        g, f = statistics.median(graph), statistics.median(low)
        deliveries = rounds * subscribers
        print(f"{subscribers} subscribers, {rounds} changes (median): last delivery "
              f"{g * 1000:.0f} ms after the commit; floor {f * 1000:.0f} ms; ratio {g / f:.1f}x "
              f"(1-minute load {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)")
        print(f"server CPU per delivery: {cpu / deliveries * 1000:.3f} ms; floor "
              f"{floor_cpu / deliveries * 1000:.3f} ms; ratio {cpu / floor_cpu:.1f}x")
    finally:
        await pool.close()


async def _main(args: argparse.Namespace) -> None:
    async with bench_database("fg_bench_fanout") as url:
        await _bench(url, subscribers=args.subscribers, rounds=args.rounds)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    asyncio.run(_main(parser.parse_args()))
