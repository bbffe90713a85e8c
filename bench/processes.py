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
import tempfile
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

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
async def fleetgraph_serve(database_url: str, *, sync: bool = False,
                           env: dict[str, str] | None = None) -> AsyncIterator[str]:
    """``fleetgraph serve`` (no migration; no sync unless ``sync``) against ``database_url``;
    ``env`` adds to (or overrides) its environment."""
    port = free_port()
    async with server_process(
        ["-m", "app.cli", "serve", "--port", str(port), "--no-migrate"], port=port,
        env={"DATABASE_URL": database_url, "BYOK_ENCRYPTION_KEY": generate_key(),
             "FLEETGRAPH_SYNC": "1" if sync else "0", **(env or {})},
    ) as base:
        yield base


@contextlib.asynccontextmanager
async def kubesim_process(*, fleet: str, seed: int = 0, speed: float = 1.0
                          ) -> AsyncIterator[str]:
    """``python -m kubesim`` with ``fleet`` changing in real time (``speed`` times faster), in
    a process of its own so its serving is on no measured loop; yields its kubeconfig (YAML)."""
    with tempfile.TemporaryDirectory() as tmp:
        kubeconfig = Path(tmp) / "kubeconfig"
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "kubesim", "--fleet", fleet, "--seed", str(seed),
            "--realtime", "--speed", str(speed), "--kubeconfig-out", str(kubeconfig),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
        try:
            assert process.stdout is not None
            line = await asyncio.wait_for(process.stdout.readline(), 120)
            if not line.startswith(b"kubesim serving"):
                raise RuntimeError(f"kubesim did not start: {line!r}")
            yield kubeconfig.read_text()
        finally:
            process.terminate()
            await process.wait()
