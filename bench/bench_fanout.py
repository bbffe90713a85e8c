"""One health change, 1,000 open ``clusterHealth`` subscribers: how long until the last one
has it, counted from the commit of the change.

The server is a real ``fleetgraph serve`` process (see bench_loop); the subscribers are
graphql-transport-ws sockets in this process. The floor is the same 1,000 sockets receiving
one text frame each from a bare WebSocket server (Starlette, one pre-serialised frame sent to
every socket), measured in the same run: the least any server could do for the same bytes.

    PYTHONPATH=. .venv/bin/python bench/bench_fanout.py [--subscribers 1000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import time
from typing import Any

import orjson
import websockets
from starlette.applications import Starlette
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from app.db import create_pool
from app.tenancy import create_organization, create_token
from bench.processes import fleetgraph_serve
from tests.databases import bench_database
from tests.graph import rows
from tests.graph.ws import change_health
from tests.live_server import live_server

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


async def _next(ws: Any) -> float:
    while True:
        message = orjson.loads(await ws.recv())
        if message["type"] == "next":
            return time.perf_counter()
        if message["type"] == "ping":
            await ws.send('{"type":"pong"}')


async def _graph_round(pool: Any, sockets: list[Any], cluster: Any, org: Any, i: int) -> float:
    waiting = [asyncio.create_task(_next(ws)) for ws in sockets]
    await asyncio.sleep(0.05)
    await change_health(pool, cluster, org, "degraded" if i % 2 else "critical", f"round {i}")
    committed = time.perf_counter()
    return max(await asyncio.gather(*waiting)) - committed


async def _floor(n: int, rounds: int, frame: str) -> list[float]:
    """A bare server that sends one ready frame to every socket."""
    connected: list[WebSocket] = []
    ready = asyncio.Event()

    async def endpoint(ws: WebSocket) -> None:
        await ws.accept()
        connected.append(ws)
        if len(connected) == n:
            ready.set()
        with contextlib.suppress(WebSocketDisconnect):
            while True:
                await ws.receive_text()

    async def health(request: Any) -> Any:
        from starlette.responses import PlainTextResponse
        return PlainTextResponse("ok")

    app = Starlette(routes=[WebSocketRoute("/ws", endpoint), Route("/", health)])
    times = []
    async with live_server(app) as base:
        url = base.replace("http", "ws") + "/ws"
        sockets = [await websockets.connect(url, max_queue=None) for _ in range(n)]
        await ready.wait()
        for _ in range(rounds):
            waiting = [asyncio.create_task(client.recv()) for client in sockets]
            await asyncio.sleep(0.05)
            started = time.perf_counter()
            for server_side in connected:
                await server_side.send_text(frame)
            await asyncio.gather(*waiting)
            times.append(time.perf_counter() - started)
        for client in sockets:
            await client.close()
    return times


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
            graph = [await _graph_round(pool, sockets, cluster, org, i + 1)
                     for i in range(rounds)]
            for ws in sockets:
                await ws.close()
        frame = orjson.dumps({"id": "1", "type": "next", "payload": {"data": {
            "clusterHealth": {"clusterId": "x" * 40, "clusterName": "fan", "status": "CRITICAL",
                              "reason": "round 1", "figures": {"podsTotal": 0, "nodesTotal": 0,
                                                               "status": "CRITICAL"}}}}}).decode()
        low = await _floor(subscribers, rounds, frame)
        g, f = statistics.median(graph), statistics.median(low)
        print(f"{subscribers} subscribers, {rounds} changes (median): last delivery "
              f"{g * 1000:.0f} ms after the commit; floor {f * 1000:.0f} ms; ratio {g / f:.1f}x")
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
