"""The legacy ``graphql-ws`` subprotocol (subscriptions-transport-ws), and text frames on both.

Older clients (Apollo's ``subscriptions-transport-ws``, many mobile SDKs) only speak the legacy
protocol: ``connection_init`` / ``start`` / ``data`` / ``stop`` / ``connection_terminate`` with
``ka`` keep-alives. The server offers it beside graphql-transport-ws, so it is driven here
frame by frame with the ``websockets`` package.

Every frame must be a *text* frame (``recv`` returns ``str``): clients read protocol messages
only from text frames, and the server once sent binary ones that our own client did not mind
(``orjson.loads`` takes bytes too). Each received frame below is checked before it is parsed.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import orjson
import pytest
import websockets
from websockets.asyncio.client import ClientConnection
from websockets.typing import Subprotocol

from tests.api import Tenant
from tests.graph import rows
from tests.graph.ws import change_health

LEGACY = Subprotocol("graphql-ws")
TRANSPORT = Subprotocol("graphql-transport-ws")

HEALTH = """subscription($id: ID) { clusterHealth(clusterId: $id) {
    clusterId clusterName status reason figures { podsTotal nodesTotal status } } }"""
SYNC = """subscription($id: ID!) { syncStatus(clusterId: $id) { clusterId changedKinds } }"""

Message = dict[str, Any]


def _gid(cluster_id: uuid.UUID) -> str:
    from schema.relay import to_global_id

    return str(to_global_id("Cluster", cluster_id))


async def _cluster(api: Any, tenant: Tenant, name: str) -> uuid.UUID:
    async with api.pool.acquire() as conn:
        cid = await rows.cluster(conn, tenant.org_id, name)
        await rows.pod(conn, cid, "default", "web-1")
    return cid


async def recv_text(ws: ClientConnection, wait: float = 2.0) -> Message:
    """The next frame, which must be a text frame holding one JSON object."""
    frame = await asyncio.wait_for(ws.recv(), wait)
    assert isinstance(frame, str), f"a binary frame: {frame!r}"
    message: Message = orjson.loads(frame)
    return message


async def send(ws: ClientConnection, message: Message) -> None:
    await ws.send(orjson.dumps(message).decode())


class LegacyReader:
    """Reads legacy-protocol frames, setting ``ka`` keep-alives aside (counted) from the rest."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.keep_alives = 0

    async def next(self, wait: float = 2.0) -> Message:
        deadline = time.monotonic() + wait
        while True:
            message = await recv_text(self.ws, max(deadline - time.monotonic(), 0.001))
            if message == {"type": "ka"}:
                self.keep_alives += 1
                continue
            return message

    async def quiet_for(self, seconds: float) -> list[Message]:
        """Every non-``ka`` message within ``seconds`` (the socket stays open)."""
        seen = []
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                seen.append(await self.next(wait=left))
            except TimeoutError:
                break
        return seen


async def test_legacy_protocol_init_start_data_stop_terminate(
    api: Any, tenant: Tenant
) -> None:
    """The whole legacy life cycle, with a real health change delivered as ``data``."""
    cid = await _cluster(api, tenant, "legacy")
    gid = _gid(cid)
    async with websockets.connect(api.ws_url, subprotocols=[LEGACY]) as ws:
        assert ws.subprotocol == LEGACY
        await send(ws, {"type": "connection_init",
                        "payload": {"Authorization": f"Bearer {tenant.tokens['viewer']}"}})
        assert await recv_text(ws) == {"type": "connection_ack"}
        reader = LegacyReader(ws)

        await send(ws, {"id": "h1", "type": "start",
                        "payload": {"query": HEALTH, "variables": {"id": gid}}})
        for attempt in range(40):  # no snapshot: poke until the subscription is registered
            await change_health(api.pool, cid, tenant.org_id, "degraded", f"warming up {attempt}")
            try:
                first = await reader.next(wait=0.25)
                break
            except TimeoutError:
                continue
        else:
            raise AssertionError("the legacy clusterHealth subscription never became live")
        assert first["type"] == "data" and first["id"] == "h1", first

        await change_health(api.pool, cid, tenant.org_id, "critical", "2/3 nodes NotReady")
        assert await reader.next() == {"type": "data", "id": "h1", "payload": {"data": {
            "clusterHealth": {"clusterId": gid, "clusterName": "legacy", "status": "CRITICAL",
                              "reason": "2/3 nodes NotReady",
                              "figures": {"podsTotal": 1, "nodesTotal": 0,
                                          "status": "CRITICAL"}}}}}

        await send(ws, {"id": "h1", "type": "stop"})
        assert await reader.next() == {"type": "complete", "id": "h1"}
        # Stopped means stopped: a change now sends nothing but keep-alives (the server sends
        # `ka` every second, so 1.5 s also proves the socket is still alive and writing).
        before = reader.keep_alives
        await change_health(api.pool, cid, tenant.org_id, "healthy", "after stop")
        assert await reader.quiet_for(1.5) == []
        assert reader.keep_alives > before

        await send(ws, {"type": "connection_terminate"})
        with pytest.raises(websockets.ConnectionClosedOK):
            while True:  # whatever was still queued before the close must be text too
                await reader.next(wait=5.0)
    assert ws.close_code == 1000


async def test_legacy_protocol_refuses_a_bad_token_with_connection_error(api: Any) -> None:
    """A bad token in ``connection_init`` gets ``connection_error`` with our reason, then the
    socket is closed (1011, Strawberry's choice for a rejected legacy connection)."""
    async with websockets.connect(api.ws_url, subprotocols=[LEGACY]) as ws:
        await send(ws, {"type": "connection_init",
                        "payload": {"Authorization": "Bearer fg_this_is_not_a_token"}})
        assert await recv_text(ws) == {
            "type": "connection_error",
            "payload": {"message": "authentication required", "code": "UNAUTHENTICATED"}}
        with pytest.raises(websockets.ConnectionClosed):
            await recv_text(ws, wait=5.0)
    assert ws.close_code == 1011


async def test_graphql_transport_ws_sends_only_text_frames(api: Any, tenant: Tenant) -> None:
    """ack, next, pong and the server's complete on graphql-transport-ws are all text frames
    (``tests/graph/ws.py`` parses bytes as happily as str, so it cannot tell)."""
    cid = await _cluster(api, tenant, "frames")
    async with websockets.connect(api.ws_url, subprotocols=[TRANSPORT]) as ws:
        assert ws.subprotocol == TRANSPORT
        await send(ws, {"type": "connection_init",
                        "payload": {"Authorization": f"Bearer {tenant.tokens['viewer']}"}})
        assert (await recv_text(ws))["type"] == "connection_ack"
        await send(ws, {"type": "ping"})
        assert await recv_text(ws) == {"type": "pong"}
        await send(ws, {"id": "s1", "type": "subscribe",
                        "payload": {"query": SYNC, "variables": {"id": _gid(cid)}}})
        snapshot = await recv_text(ws)
        assert snapshot == {"id": "s1", "type": "next", "payload": {"data": {"syncStatus": {
            "clusterId": _gid(cid), "changedKinds": []}}}}
        await change_health(api.pool, cid, tenant.org_id, "degraded", "frames")
        changed = await recv_text(ws)
        assert changed["type"] == "next" and changed["payload"]["data"]["syncStatus"] == {
            "clusterId": _gid(cid), "changedKinds": ["pods"]}
        # An operation that ends on the server's side: `complete` comes from the server.
        await send(ws, {"id": "q1", "type": "subscribe",
                        "payload": {"query": "query { __typename }"}})
        assert await recv_text(ws) == {"id": "q1", "type": "next",
                                       "payload": {"data": {"__typename": "Query"}}}
        assert await recv_text(ws) == {"id": "q1", "type": "complete"}
        await send(ws, {"id": "s1", "type": "complete"})
