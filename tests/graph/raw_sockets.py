"""Subscriptions on real WebSockets, in either protocol, read frame by frame exactly as they
arrive (for tests that compare frames byte for byte)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import orjson
import websockets
from websockets.asyncio.client import ClientConnection
from websockets.typing import Subprotocol

SKIPPED = {"ka", "ping", "pong"}  # keep-alives of either protocol


class Socket:
    """One socket with a subscription (more may be started), reading raw text frames."""

    def __init__(self, ws: ClientConnection, subscription_id: str, *, legacy: bool) -> None:
        self.ws = ws
        self.id = subscription_id
        self.legacy = legacy

    @classmethod
    async def open(cls, url: str, token: str, query: str, subscription_id: str, *,
                   legacy: bool = False, variables: dict[str, Any] | None = None,
                   **connect: Any) -> Socket:
        """``connect`` goes to ``websockets.connect`` (e.g. ``sock``, ``max_queue``)."""
        protocol = Subprotocol("graphql-ws" if legacy else "graphql-transport-ws")
        ws = await websockets.connect(url, subprotocols=[protocol], **connect)
        await ws.send(orjson.dumps({"type": "connection_init",
                                    "payload": {"Authorization": f"Bearer {token}"}}).decode())
        assert orjson.loads(await ws.recv())["type"] == "connection_ack"
        socket = cls(ws, subscription_id, legacy=legacy)
        await socket.subscribe(query, subscription_id, variables=variables)
        return socket

    async def subscribe(self, query: str, subscription_id: str, *,
                        variables: dict[str, Any] | None = None) -> None:
        await self.ws.send(orjson.dumps({"id": subscription_id,
                                         "type": "start" if self.legacy else "subscribe",
                                         "payload": {"query": query,
                                                     "variables": variables or {}}}).decode())

    async def stop(self, subscription_id: str) -> None:
        await self.ws.send(orjson.dumps({"id": subscription_id,
                                         "type": "stop" if self.legacy else "complete"}
                                        ).decode())

    async def frame(self, wait: float = 5.0) -> str:
        """The next frame that is not a keep-alive, exactly as it arrived."""
        while True:
            frame = await asyncio.wait_for(self.ws.recv(), wait)
            assert isinstance(frame, str), f"a binary frame: {frame!r}"
            kind = orjson.loads(frame)["type"]
            if kind == "ping":
                await self.ws.send('{"type":"pong"}')
            if kind not in SKIPPED:
                return frame

    async def drain(self) -> None:
        while True:
            try:
                await self.frame(wait=0.3)
            except TimeoutError:
                return


async def all_live(sockets: list[Socket], poke: Callable[[], Any]) -> None:
    """Every socket has answered one change: each is registered with the hub, and drained."""
    pending = list(sockets)
    for _ in range(40):
        await poke()
        answered = await asyncio.gather(*(s.frame(wait=0.5) for s in pending),
                                        return_exceptions=True)
        pending = [s for s, got in zip(pending, answered, strict=True)
                   if isinstance(got, BaseException)]
        if not pending:
            break
    assert not pending, f"{len(pending)} subscriptions never became live"
    await asyncio.gather(*(s.drain() for s in sockets))
