"""Strawberry's two WebSocket protocol handlers, each telling its operations where their
frames go.

Every operation runs in a task of its own; before it starts, its handler puts a
``FrameSink`` in that task's context (``schema.express.FRAME_SINK``): the socket's
``DirectFrames`` and the envelope of the operation's data messages, built as the handler
builds them (graphql-transport-ws ``next``: id, type, payload; legacy graphql-ws ``data``:
type, id, payload), so an express frame is byte for byte the general path's. Without
``DirectFrames`` (another server) there is no sink, and every event takes the general path.
"""

from __future__ import annotations

from typing import Any

from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
    Operation,
)
from strawberry.subscriptions.protocols.graphql_ws.handlers import BaseGraphQLWSHandler

from app.frames import envelope
from app.ws_protocol import direct_frames
from resolvers.context import Context
from schema.express import FRAME_SINK, FrameSink


def _bind_sink(context: Any, message: dict[str, object]) -> None:
    """This task's frame sink, for data messages shaped like ``message``."""
    frames = direct_frames(getattr(getattr(context, "request", None), "scope", None))
    if frames is not None:
        head, tail = envelope(message)
        FRAME_SINK.set(FrameSink(frames.send_text, head, tail))


class TransportWSHandler(BaseGraphQLTransportWSHandler[Context, None]):
    async def run_operation(self, operation: Operation[Context, None]) -> None:
        _bind_sink(self.context, {"id": operation.id, "type": "next", "payload": None})
        await super().run_operation(operation)


class LegacyWSHandler(BaseGraphQLWSHandler[Context, None]):
    async def handle_async_results(self, operation_id: str, query: str,
                                   operation_name: str | None,
                                   variables: dict[str, object] | None) -> None:
        _bind_sink(self.context, {"type": "data", "id": operation_id, "payload": None})
        await super().handle_async_results(operation_id, query, operation_name, variables)
