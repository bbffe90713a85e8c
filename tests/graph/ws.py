"""A minimal graphql-transport-ws client over the ``websockets`` package, for real WebSocket
round trips against the live server."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import orjson
import websockets
from websockets.asyncio.client import ClientConnection

from sync.notify import notify_changes

PROTOCOL = "graphql-transport-ws"


async def open_subscription(ws_url: str, token: str, query: str,
                            variables: dict[str, Any] | None = None) -> ClientConnection:
    ws = await websockets.connect(ws_url, subprotocols=[PROTOCOL])  # type: ignore[list-item]
    await ws.send(orjson.dumps({"type": "connection_init",
                                "payload": {"Authorization": f"Bearer {token}"}}).decode())
    ack = orjson.loads(await ws.recv())
    assert ack["type"] == "connection_ack", ack
    await ws.send(orjson.dumps({"id": "1", "type": "subscribe",
                                "payload": {"query": query, "variables": variables or {}}}
                               ).decode())
    return ws


async def next_payload(ws: ClientConnection, wait: float = 2.0) -> dict[str, Any]:
    """The next ``next`` message's payload (pings are answered, pongs skipped)."""
    while True:
        message = orjson.loads(await asyncio.wait_for(ws.recv(), wait))
        if message["type"] == "ping":
            await ws.send(orjson.dumps({"type": "pong"}).decode())
            continue
        if message["type"] == "pong":
            continue
        assert message["type"] in ("next", "error", "complete"), message
        payload: dict[str, Any] = message.get("payload") or {"complete": True}
        return payload


async def change_health(pool: Any, cluster_id: uuid.UUID, org_id: uuid.UUID, status: str,
                        reason: str) -> None:
    """What the sync engine does after a flush that changed a cluster's health."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            "UPDATE k8s_clusters SET health_status = $2, health_reason = $3, "
            "health_changed_at = now() WHERE id = $1", cluster_id, status, reason)
        await notify_changes(conn, cluster_id=cluster_id, organization_id=org_id,
                             kinds=["pods"], health_changed=True, health_status=status)


async def until_live(ws: ClientConnection, poke: Any, attempts: int = 40) -> dict[str, Any]:
    """Poke (send a change) until the subscription answers: proves it is registered."""
    for _ in range(attempts):
        await poke()
        try:
            return await next_payload(ws, wait=0.25)
        except TimeoutError:
            continue
    raise AssertionError("the subscription never became live")
