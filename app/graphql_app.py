"""The GraphQL endpoint: Strawberry's ASGI app with our context, authentication and limits."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import orjson
from cross_web import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.exceptions import ConnectionRejectionError
from strawberry.extensions import SchemaExtension
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL, GRAPHQL_WS_PROTOCOL
from strawberry.types.unset import UnsetType

from app import metrics
from app.auth import authenticate, authenticate_recent, bearer_token
from app.frames import spliced_frame
from app.ide import graphiql_page
from app.settings import Settings
from app.vault import Vault
from app.ws_handlers import LegacyWSHandler, TransportWSHandler
from resolvers.context import Context
from resolvers.errors import DATABASE_UNAVAILABLE, DATABASE_UNAVAILABLE_MESSAGE, RETRY_AFTER_S
from schema import build_schema

log = logging.getLogger(__name__)


def cursor_key_from(settings: Settings) -> bytes:
    """Cursor MAC key, derived from the first encryption key so every replica agrees on it."""
    first = (settings.encryption_keys or "").split(",")[0].strip()
    return hashlib.sha256(b"fleetgraph/cursor/v1\x00" + first.encode()).digest()


@dataclass
class _Observed:
    """What the HTTP layer learns from the operation it ran, for the duration histogram."""

    operation: str = "none"
    page: bool = False  # the GraphiQL page, which is no GraphQL request


_OBSERVED: ContextVar[_Observed | None] = ContextVar("fleetgraph_graphql_observed", default=None)


class GraphQLMetrics(SchemaExtension):
    """Counts every error a client gets by its ``extensions.code`` and the cost of refused
    operations, and tells the HTTP layer which operation type ran (app.metrics).

    It is the schema's first extension, so its after-operation step runs last (extensions
    unwind in reverse) and sees the codes ``ErrorCodes`` gave every error."""

    def on_operation(self) -> Iterator[None]:
        yield
        ctx = self.execution_context
        observed = _OBSERVED.get()
        if observed is not None:
            with contextlib.suppress(RuntimeError):  # no document: it did not parse
                observed.operation = ctx.operation_type.value
        principal = getattr(ctx.context, "principal", None)
        for error in getattr(ctx.result, "errors", None) or ():
            extensions = error.extensions or {}
            metrics.graphql_error(extensions.get("code"))
            if "cost" in extensions and "limit" in extensions:
                metrics.refused_query_cost(extensions["cost"],
                                           principal.role.value if principal else None)


class FleetGraphQL(GraphQL[Context, None]):
    # Both tell each operation where its frames go, for the hub's express deliveries.
    graphql_transport_ws_handler_class = TransportWSHandler
    graphql_ws_handler_class = LegacyWSHandler

    def __init__(self, settings: Settings, vault: Vault) -> None:
        schema = build_schema(settings)
        schema.extensions = (GraphQLMetrics, *schema.extensions)
        super().__init__(
            schema,
            graphql_ide="graphiql" if settings.graphiql else None,
            subscription_protocols=[GRAPHQL_TRANSPORT_WS_PROTOCOL, GRAPHQL_WS_PROTOCOL],
            keep_alive=True,
        )
        self.settings = settings
        self.vault = vault
        self.cursor_key = cursor_key_from(settings)

    async def get_context(self, request: Request | WebSocket, response: Any) -> Context:
        principal = None
        pool = request.app.state.pool
        if isinstance(request, Request):
            principal = await authenticate_recent(
                pool, bearer_token(request.headers.get("authorization")))
        return Context(
            pool=pool, settings=self.settings, vault=self.vault, cursor_key=self.cursor_key,
            principal=principal, request=request, response=response,
            services=getattr(request.app.state, "services", {}),
        )

    async def on_ws_connect(self, context: Context) -> UnsetType | dict[str, object] | None:
        """WebSockets authenticate once, with the token in ``connection_init``'s payload."""
        params = context.connection_params or {}
        header = params.get("Authorization") or params.get("authorization")
        principal = await authenticate(
            context.pool, bearer_token(header if isinstance(header, str) else None)
        )
        if principal is None:
            raise ConnectionRejectionError(
                {"message": "authentication required", "code": "UNAUTHENTICATED"}
            )
        context.principal = principal
        sockets = context.services.get("sockets")
        if sockets is not None and isinstance(context.request, WebSocket):
            sockets.add(principal.token_id, context.request, context)
        return None

    async def render_graphql_ide(self, request: Request) -> Response:
        """Our own GraphiQL page, with every asset served from this server (see app.ide)."""
        if (observed := _OBSERVED.get()) is not None:
            observed.page = True
        return graphiql_page(
            endpoint=request.url.path,
            initial_headers=getattr(request.app.state, "graphiql_initial_headers", None),
        )

    def decode_json(self, data: str | bytes) -> object:
        """orjson refuses invalid UTF-8 and nesting deeper than 1,024 with a JSONDecodeError,
        which Strawberry turns into a 400; the standard library would raise UnicodeDecodeError
        or RecursionError instead, and those became plain 500s."""
        return orjson.loads(data)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """HTTP errors Strawberry raises before execution (unparsable JSON, no query, a wrong
        method or content type) come back as a GraphQL error body with a code, not plain
        text, so clients can handle every failure the same way."""
        if scope["type"] == "websocket":
            websocket = WebSocket(scope, receive=receive, send=send)
            try:
                await self.run(websocket)
            finally:
                sockets = getattr(websocket.app.state, "services", {}).get("sockets")
                if sockets is not None:
                    sockets.discard(websocket)
            return
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        request = Request(scope=scope, receive=receive)
        observed, started = _Observed(), time.perf_counter()
        token = _OBSERVED.set(observed)
        try:
            # A second line of defence behind the static cost limit: no request holds a
            # connection and its share of the loop longer than this.
            async with asyncio.timeout(self.settings.request_deadline_s):
                response = await self.run(request)
        except HTTPException as exc:
            response = _error(exc.reason, "BAD_USER_INPUT", exc.status_code)
        except TimeoutError:
            log.info("request stopped at its %.0f s deadline", self.settings.request_deadline_s)
            response = _error(
                f"the request did not finish within its {self.settings.request_deadline_s:g} s "
                "deadline", "DEADLINE_EXCEEDED", 503)
        except DATABASE_UNAVAILABLE as exc:
            # PostgreSQL is down or restarting before execution starts (authentication is the
            # first thing that needs it); mid-execution it is schema.extensions' to answer.
            log.warning("database unavailable: %s", type(exc).__name__)
            response = _error(DATABASE_UNAVAILABLE_MESSAGE, "SERVICE_UNAVAILABLE", 503,
                              retry_after=RETRY_AFTER_S)
        finally:
            _OBSERVED.reset(token)
        if not observed.page:
            metrics.graphql_request(observed.operation, time.perf_counter() - started)
        await response(scope, receive, send)

    def encode_json(self, data: object) -> str:
        """A ``str``, not bytes: Strawberry sends a ``str`` as a WebSocket *text* frame, and
        graphql-ws (GraphiQL, Apollo, urql) and browsers only read protocol messages from text
        frames; a binary frame reaches them as a Blob and is rejected. A subscription answer
        shared by many sockets is not serialised again for each: its frame is spliced around
        the payload it serialised once (``app.frames``)."""
        if isinstance(data, dict) and (frame := spliced_frame(data)) is not None:
            return frame
        return orjson.dumps(data).decode()


def _error(message: str, code: str, status: int, *, retry_after: str | None = None
           ) -> JSONResponse:
    metrics.graphql_error(code)
    headers = {"Retry-After": retry_after} if retry_after else None
    return JSONResponse({"errors": [{"message": message, "extensions": {"code": code}}]},
                        status_code=status, headers=headers)


class BodySizeLimit:
    """Refuse request bodies over ``limit`` bytes before anything parses them."""

    def __init__(self, app: ASGIApp, *, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await self._refuse(scope, receive, send)
            return
        seen = 0

        async def limited_receive() -> Any:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise _TooLarge
            return message

        try:
            await self.app(scope, limited_receive, send)
        except _TooLarge:
            await self._refuse(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = _error(f"request body is larger than {self.limit} bytes", "BAD_USER_INPUT",
                          413)
        await response(scope, receive, send)


class _TooLarge(Exception):
    pass


def build_graphql_app(settings: Settings, vault: Vault) -> ASGIApp:
    return BodySizeLimit(FleetGraphQL(settings, vault), limit=settings.max_body_bytes)
