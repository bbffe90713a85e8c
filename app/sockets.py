"""The WebSockets open in this process, by the token that opened them.

A WebSocket authenticates once, in ``connection_init``, and may then stay open for days. So
revoking a token must reach its sockets, not only the subscriptions running on them: the
change hub's revocation watcher (one query per interval for the whole process, see
``app.events``) hands every newly revoked token here, and each of its sockets loses its
principal at once (so any operation still in flight, or sent before the close lands, is
refused as unauthenticated) and is closed with 4403, idle or not.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections import defaultdict
from typing import Any

from starlette.websockets import WebSocket

log = logging.getLogger(__name__)

REVOKED_CLOSE_CODE = 4403  # graphql-ws's "Forbidden"


class OpenSockets:
    def __init__(self) -> None:
        self._by_token: dict[uuid.UUID, dict[WebSocket, Any]] = defaultdict(dict)
        self._closing: set[asyncio.Task[None]] = set()

    def add(self, token_id: uuid.UUID, websocket: WebSocket, context: Any) -> None:
        self._by_token[token_id][websocket] = context

    def discard(self, websocket: WebSocket) -> None:
        for token_id in list(self._by_token):
            sockets = self._by_token[token_id]
            sockets.pop(websocket, None)
            if not sockets:
                del self._by_token[token_id]

    def count(self) -> int:
        return sum(len(sockets) for sockets in self._by_token.values())

    def tokens_revoked(self, token_ids: set[uuid.UUID]) -> None:
        """Called by the revocation watcher; closes in the background so the watcher never
        waits on a slow client."""
        for token_id in token_ids:
            for websocket, context in list(self._by_token.pop(token_id, {}).items()):
                context.principal = None
                task = asyncio.create_task(self._close(websocket))
                self._closing.add(task)
                task.add_done_callback(self._closing.discard)

    async def _close(self, websocket: WebSocket) -> None:
        # Already closing or gone: there is nothing left to end.
        with contextlib.suppress(RuntimeError, OSError):
            await websocket.close(code=REVOKED_CLOSE_CODE, reason="token revoked")
        log.info("closed a WebSocket whose token was revoked")
