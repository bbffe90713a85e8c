"""The Starlette application and its lifespan.

One process, one loop: uvicorn serves this app, and the lifespan opens the database pool,
migrates, and (from the sync issue on) starts the sync supervisor on the same loop, stopping
everything again on shutdown.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable
from typing import Any, Protocol

import asyncpg
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, WebSocketRoute

from app import collector
from app.db import EmbeddedPostgres, close_pool, create_pool
from app.events import ChangeHub
from app.health import healthz, readyz
from app.ide import ASSET_ROUTE, asset_endpoint, asset_root, missing_assets
from app.logs import RequestIdMiddleware
from app.metrics import LoopLagMonitor, MetricsListener, render_metrics
from app.migrations import upgrade_to_head_async
from app.settings import Settings
from app.sockets import OpenSockets
from app.vault import Vault

log = logging.getLogger(__name__)


class BackgroundService(Protocol):
    async def start(self) -> None: ...
    async def stop(self) -> None: ...


def start_background(
    pool: asyncpg.Pool, vault: Vault, settings: Settings
) -> list[BackgroundService]:
    """The loops that run beside the API on the same event loop: cluster sync (with its
    partition housekeeping) and the hourly cost engine."""
    from cost.scheduler import CostScheduler
    from sync.supervisor import Supervisor

    return [Supervisor(pool, vault, settings), CostScheduler(pool)]


def scrape(state: Any, accept: str | None) -> Awaitable[tuple[bytes, str]]:
    """One Prometheus scrape of this app: the pool, the open subscriptions and sockets, and
    the process-wide families (see app.metrics)."""
    services = getattr(state, "services", {})
    events, sockets = services.get("events"), services.get("sockets")
    return render_metrics(
        pool=getattr(state, "pool", None),
        subscriptions=events.subscriber_count if events is not None else None,
        sockets=sockets.count if sockets is not None else None,
        accept=accept,
    )


async def metrics_endpoint(request: Request) -> Response:
    """``/metrics`` on the API port, open like the probes (it holds ids and counts, never a
    name, a token or query text); FLEETGRAPH_PROMETHEUS moves it to a port of its own or
    switches it off."""
    body, content_type = await scrape(request.app.state, request.headers.get("accept"))
    return Response(body, headers={"Content-Type": content_type})


def create_app(settings: Settings, *, migrate: bool = True) -> Starlette:
    """Build the ASGI app. Nothing connects until the lifespan starts."""
    from app.graphql_app import build_graphql_app

    vault = Vault.from_env(settings.encryption_keys)  # a bad or missing key stops us here
    graphql_app = build_graphql_app(settings, vault)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        embedded: EmbeddedPostgres | None = None
        url = settings.database_url
        if not url:
            embedded = EmbeddedPostgres(settings.data_dir)
            url = embedded.start()
        try:
            if migrate:
                await upgrade_to_head_async(url)
            pool = await create_pool(
                url,
                statement_timeout_ms=settings.statement_timeout_ms,
                min_size=settings.pool_min_size,
                max_size=settings.pool_max_size,
            )
            app.state.pool = pool
            app.state.database_url = url
            events = ChangeHub(url, pool)
            sockets = OpenSockets()
            events.revocation_listeners.append(sockets.tokens_revoked)
            await events.start()
            app.state.services = {"events": events, "sockets": sockets}
            background: list[BackgroundService] = [LoopLagMonitor()]
            if settings.prometheus and settings.prometheus_listen is not None:
                host, port = settings.prometheus_listen
                app.state.metrics_listener = MetricsListener(
                    host=host, port=port, scrape=lambda accept: scrape(app.state, accept))
                background.append(app.state.metrics_listener)
            if settings.sync_enabled:
                background.extend(start_background(pool, vault, settings))
            for service in background:
                await service.start()
            collector.tune_after_startup()
            try:
                yield
            finally:
                for service in reversed(background):
                    await service.stop()
                await events.stop()
                await close_pool(pool)
        finally:
            if embedded is not None:
                embedded.stop()

    routes: list[Any] = [
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        *([Route("/metrics", metrics_endpoint)]
          if settings.prometheus and settings.prometheus_listen is None else []),
        Route("/graphql", graphql_app, methods=["GET", "POST"]),
        WebSocketRoute("/graphql", graphql_app),
    ]
    if settings.graphiql:
        assets = asset_root(settings.graphiql_assets_dir)
        if missing := missing_assets(assets):
            log.warning("GraphiQL assets are not installed (%s missing under %s): "
                        "run `make install`", ", ".join(missing), assets)
        routes.append(Route(ASSET_ROUTE + "/{name}", asset_endpoint(assets)))
    # Outermost, so every log line of a request (the access log included) carries its id.
    middleware: list[Middleware] = [Middleware(RequestIdMiddleware)]
    if settings.cors_origins:
        # Starlette answers the preflight itself; only the listed origins get CORS headers.
        middleware.append(Middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST", "OPTIONS"],
            allow_headers=["Authorization", "Content-Type", "Accept"],
            max_age=600,
        ))
    app = Starlette(routes=routes, lifespan=lifespan, middleware=middleware)
    app.state.settings = settings
    app.state.vault = vault
    return app
