"""A WebSocket authenticates once; revoking its token still ends its subscriptions."""

from __future__ import annotations

from typing import Any

from app.tenancy import create_token, revoke_token
from tests.graph.ws import next_payload, open_subscription


async def test_revoking_a_token_ends_its_live_subscriptions(api: Any) -> None:
    async with api.pool.acquire() as conn:
        issued = await create_token(conn, org_slug=api.a.slug, role="viewer")
    ws = await open_subscription(api.ws_url, issued.token,
                                 "subscription { clusterHealth { status } }")
    try:
        async with api.pool.acquire() as conn:
            await revoke_token(conn, token_id=str(issued.id))
        ended = await next_payload(ws, wait=10.0)  # the hub looks every 5 s
        [error] = ended["errors"]
        assert error["extensions"]["code"] == "UNAUTHENTICATED" and "revoked" in error["message"]
    finally:
        await ws.close()
