"""A WebSocket authenticates once; revoking its token still ends what it can do: its live
subscriptions end with UNAUTHENTICATED, and every socket opened with it, idle or not, is
closed with 4403 within the revocation interval (5 s)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import orjson
import websockets

from app.tenancy import create_token, revoke_token
from tests.graph.ws import PROTOCOL, next_payload, open_subscription


async def _idle_socket(ws_url: str, token: str) -> Any:
    ws = await websockets.connect(ws_url, subprotocols=[PROTOCOL])  # type: ignore[list-item]
    await ws.send(orjson.dumps({"type": "connection_init",
                                "payload": {"Authorization": f"Bearer {token}"}}).decode())
    assert orjson.loads(await ws.recv())["type"] == "connection_ack"
    return ws


async def _closed_with(ws: Any, wait: float = 8.0) -> int | None:
    """Read until the server closes the socket (answering pings on the way)."""
    async def drain() -> None:
        async for raw in ws:
            if orjson.loads(raw).get("type") == "ping":
                await ws.send(orjson.dumps({"type": "pong"}).decode())

    with contextlib.suppress(websockets.ConnectionClosed):
        await asyncio.wait_for(drain(), wait)
    code: int | None = ws.close_code
    return code


async def test_revoking_a_token_ends_its_subscriptions_and_closes_its_sockets(api: Any) -> None:
    async with api.pool.acquire() as conn:
        issued = await create_token(conn, org_slug=api.a.slug, role="admin")
        kept = await create_token(conn, org_slug=api.a.slug, role="viewer")
    subscribed = await open_subscription(api.ws_url, issued.token,
                                         "subscription { clusterHealth { status } }")
    idle = await _idle_socket(api.ws_url, issued.token)
    bystander = await _idle_socket(api.ws_url, kept.token)
    try:
        async with api.pool.acquire() as conn:
            await revoke_token(conn, token_id=str(issued.id))
        ended = await next_payload(subscribed, wait=10.0)  # the hub looks every 5 s
        [error] = ended["errors"]
        assert error["extensions"]["code"] == "UNAUTHENTICATED" and "revoked" in error["message"]
        assert await _closed_with(subscribed) == 4403
        assert await _closed_with(idle) == 4403
        # Another token's socket stays open and keeps working.
        await bystander.send(orjson.dumps({"id": "q", "type": "subscribe", "payload": {
            "query": "query { clusters(first: 1) { totalCount } }"}}).decode())
        answer = orjson.loads(await asyncio.wait_for(bystander.recv(), 5))
        assert answer["type"] == "next" and "errors" not in answer["payload"], answer
    finally:
        for ws in (subscribed, idle, bystander):
            await ws.close()
