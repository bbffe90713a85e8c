"""The fan-out benchmark's floor, as a server of its own: WebSockets that only receive, and
``POST /send``, which sends its body as one text frame to every connected socket, and
``GET /cpu``, the CPU seconds it has used.

It runs in a process of its own, as FleetGraph does under measurement (``bench.processes``):
a floor on the clients' own loop pays none of the wake-ups a real delivery to another process
costs, and would be a floor no server could reach.

    python -m bench.fanout_floor --port P
"""

from __future__ import annotations

import argparse
import contextlib
import os

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect


def floor_app() -> Starlette:
    connected: set[WebSocket] = set()

    async def socket(ws: WebSocket) -> None:
        await ws.accept()
        connected.add(ws)
        try:
            with contextlib.suppress(WebSocketDisconnect):
                while True:
                    await ws.receive_text()
        finally:
            connected.discard(ws)

    async def send(request: Request) -> PlainTextResponse:
        frame = (await request.body()).decode()
        for ws in list(connected):
            await ws.send_text(frame)
        return PlainTextResponse(str(len(connected)))

    async def count(_request: Request) -> PlainTextResponse:
        return PlainTextResponse(str(len(connected)))

    async def cpu(_request: Request) -> PlainTextResponse:
        """CPU seconds so far, as ``process_cpu_seconds_total`` counts them for ours."""
        times = os.times()
        return PlainTextResponse(str(times.user + times.system))

    return Starlette(routes=[WebSocketRoute("/ws", socket), Route("/send", send, methods=["POST"]),
                             Route("/cpu", cpu), Route("/", count)])


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    # Uncompressed frames, as FleetGraph sends them (app.http_protocol): the same bytes.
    uvicorn.run(floor_app(), host="127.0.0.1", port=parser.parse_args().port,
                log_level="warning", ws_per_message_deflate=False)
