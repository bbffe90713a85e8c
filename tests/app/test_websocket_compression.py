"""WebSocket frames go uncompressed even when the client offers permessage-deflate (as
browsers and the ``websockets`` package do): see ``app.http_protocol.uvicorn_http_options``."""

from __future__ import annotations

from typing import Any

import websockets


async def test_an_offered_permessage_deflate_is_not_taken(api: Any) -> None:
    async with websockets.connect(api.ws_url, subprotocols=["graphql-transport-ws"],  # type: ignore[list-item]
                                  compression="deflate") as ws:
        offered = ws.request.headers.get("Sec-WebSocket-Extensions") if ws.request else None
        assert offered is not None and "permessage-deflate" in offered
        assert ws.response is not None
        assert ws.response.headers.get("Sec-WebSocket-Protocol") == "graphql-transport-ws"
        assert ws.response.headers.get("Sec-WebSocket-Extensions") is None
