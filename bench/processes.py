"""Servers under measurement run in processes of their own.

A benchmark whose client shares the server's process measures the client too (parsing
megabytes of JSON on the same loop); so every server a benchmark times, ours and its floor,
is started here as a subprocess on a free loopback port, waited for, and stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import sys
from collections.abc import AsyncIterator, Sequence

import httpx

from app.vault import generate_key


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.asynccontextmanager
async def server_process(argv: Sequence[str], *, port: int, ready_path: str = "/healthz",
                         env: dict[str, str] | None = None) -> AsyncIterator[str]:
    """Run ``python argv…`` until it answers HTTP on ``port`` (any status); yield its URL."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, *argv, env={**os.environ, **(env or {})},
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=base) as http:
            for _ in range(400):
                with contextlib.suppress(httpx.TransportError):
                    await http.get(ready_path)
                    break
                await asyncio.sleep(0.05)
        yield base
    finally:
        process.terminate()
        await process.wait()


@contextlib.asynccontextmanager
async def fleetgraph_serve(database_url: str) -> AsyncIterator[str]:
    """``fleetgraph serve`` (no sync, no migration) against ``database_url``."""
    port = free_port()
    async with server_process(
        ["-m", "app.cli", "serve", "--port", str(port), "--no-migrate"], port=port,
        env={"DATABASE_URL": database_url, "BYOK_ENCRYPTION_KEY": generate_key(),
             "FLEETGRAPH_SYNC": "0"},
    ) as base:
        yield base
