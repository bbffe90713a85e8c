"""Serve an ASGI app with real uvicorn on the test's own loop, on a free loopback port."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import uvicorn

from app.http_protocol import uvicorn_http_options


@contextlib.asynccontextmanager
async def live_server(app: Any, *, ws: str | None = None) -> AsyncIterator[str]:
    """Yield ``http://127.0.0.1:PORT`` while uvicorn serves ``app`` (lifespan included);
    ``ws`` names another uvicorn WebSocket protocol than the one the server would use."""
    settings = getattr(getattr(app, "state", None), "settings", None)
    protocol = uvicorn_http_options(settings) if settings is not None else {}
    protocol.setdefault("ws", "websockets-sansio")
    if ws is not None:
        protocol["ws"] = ws
    config = uvicorn.Config(app, host="127.0.0.1", port=0, lifespan="on", log_level="warning",
                            **protocol)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if task.done():
                task.result()
                raise RuntimeError("uvicorn stopped before it started")
            await asyncio.sleep(0.02)
        port = server.servers[0].sockets[0].getsockname()[1]
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, timeout=15)
