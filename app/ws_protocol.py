"""uvicorn's WebSocket protocol, able to write a text frame for the change hub right now.

The hub's express deliveries (``schema.express``) write each subscriber's frame in one pass,
without a task or an await per socket. That needs a way to put a frame on one socket that
either succeeds at once or says it cannot — never one that waits. ASGI's ``send`` is a
coroutine behind a chain of middleware, so the protocol offers it beside the ASGI channel: a
``DirectFrames`` in the connection scope's ``extensions``, which writes exactly what uvicorn's
own ``websocket.send`` would (the same ``websockets`` connection state, the same bytes), and
declines while uvicorn's ``send`` would have to wait (the transport over its high-water mark)
or could not send at all (before the handshake, after a close, after the connection is lost).
Frames from both ways interleave only whole, as each write is one synchronous call.
"""

from __future__ import annotations

import weakref
from typing import Any

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.exceptions import InvalidState

DIRECT_FRAMES = "fleetgraph.direct_frames"  # the scope extension's name


class DirectFrames:
    """Writes text frames to one WebSocket now, or not at all."""

    __slots__ = ("_protocol",)

    def __init__(self, protocol: WebSocketsSansIOProtocol) -> None:
        # Weakly: the protocol holds the scope that holds this.
        self._protocol = weakref.ref(protocol)

    def send_text(self, frame: str) -> bool:
        """Write ``frame`` as one text frame (True), or nothing if the socket cannot take it
        without waiting (False)."""
        protocol = self._protocol()
        if protocol is None or not protocol.handshake_complete or protocol.close_sent \
                or protocol.disconnected or protocol.initial_response is not None \
                or not protocol.writable.is_set() or protocol.transport.is_closing():
            return False
        try:
            protocol.conn.send_text(frame.encode())
        except InvalidState:
            return False
        protocol.transport.write(b"".join(protocol.conn.data_to_send()))
        return True


class DirectFramesProtocol(WebSocketsSansIOProtocol):
    """uvicorn's ``websockets-sansio`` protocol, with ``DirectFrames`` in every scope."""

    def handle_connect(self, event: Any) -> None:
        super().handle_connect(event)
        scope = getattr(self, "scope", None)
        if scope is not None and self.response.status_code == 101:
            scope.setdefault("extensions", {})[DIRECT_FRAMES] = DirectFrames(self)


def direct_frames(scope: Any) -> DirectFrames | None:
    """The connection's ``DirectFrames``, if the server that accepted it offers them."""
    found = ((scope or {}).get("extensions") or {}).get(DIRECT_FRAMES)
    return found if isinstance(found, DirectFrames) else None
