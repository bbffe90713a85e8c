"""uvicorn's HTTP protocol with a deadline for reading each request.

uvicorn closes idle keep-alive connections, but a client that sends half a request line, a
few header bytes, or a body slower than a byte a minute holds its connection (and a slot in
every proxy in front of us) forever: nothing in the ASGI app can see a request whose headers
never complete. So the protocol itself arms a timer when a connection opens and when each
request begins, and disarms it once the request has been read in full; a request not read
within ``FLEETGRAPH_REQUEST_READ_TIMEOUT`` seconds gets a 408 and the connection is closed.
The time the application takes to answer is not counted (that is the query deadline's job).
WebSocket upgrades hand the connection to the WebSocket protocol, which has its own pings.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from app.ws_protocol import DirectFramesProtocol

log = logging.getLogger(__name__)

DEFAULT_READ_TIMEOUT_S = 30.0

_REQUEST_TIMEOUT = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
    b"connection: close\r\ncontent-length: %d\r\n\r\n%s"
)
_BODY = (b'{"errors":[{"message":"the request was not received in time",'
         b'"extensions":{"code":"REQUEST_TIMEOUT"}}]}')


def uvicorn_http_options(settings: Any) -> dict[str, Any]:
    """What every uvicorn we start (``serve``, ``demo``, the tests' live server) is given.

    WebSocket frames go uncompressed (no permessage-deflate): a subscription event's frame is
    built once for all its subscribers (app.frames), and deflating it again for each socket
    was a fifth of the server's CPU per delivery (about 20 of 112 us, bench_fanout) to save a
    few hundred bytes a frame. Compressing frames that mix a client's own input with data it
    may not read is also what compression side channels feed on.

    WebSockets are uvicorn's ``websockets-sansio`` protocol, which can also write a frame for
    the change hub without waiting (``app.ws_protocol``)."""
    return {"http": guarded_protocol(settings.request_read_timeout_s),
            "ws": DirectFramesProtocol, "ws_per_message_deflate": False}


def guarded_protocol(read_timeout: float) -> type[HttpToolsProtocol]:
    """The protocol class for ``uvicorn.Config(http=...)`` with the given read deadline."""

    class ReadDeadlineProtocol(HttpToolsProtocol):
        _read_deadline: asyncio.TimerHandle | None = None

        def _arm(self) -> None:
            self._disarm()
            self._read_deadline = self.loop.call_later(read_timeout, self._too_slow)

        def _disarm(self) -> None:
            if self._read_deadline is not None:
                self._read_deadline.cancel()
                self._read_deadline = None

        def _too_slow(self) -> None:
            self._read_deadline = None
            if self.transport.is_closing():
                return
            log.info("closed a connection whose request was not read within %.0f s",
                     read_timeout)
            self.transport.write(_REQUEST_TIMEOUT % (len(_BODY), _BODY))
            self.transport.close()

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._arm()

        def on_headers_complete(self) -> None:
            super().on_headers_complete()
            if self.parser.should_upgrade() and self._should_upgrade():
                self._disarm()

        def on_message_complete(self) -> None:
            self._disarm()
            super().on_message_complete()

        def on_response_complete(self) -> None:
            # Between requests uvicorn's own keep-alive timeout applies.
            self._disarm()
            super().on_response_complete()

        def handle_websocket_upgrade(self) -> None:
            self._disarm()
            super().handle_websocket_upgrade()

    return ReadDeadlineProtocol
