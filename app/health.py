"""Liveness and readiness endpoints, open without a token so orchestrators can probe them."""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import JSONResponse

from app.migrations import current_revision, head_revision


async def healthz(request: Request) -> JSONResponse:
    """Alive: the event loop answers. Says nothing about the database on purpose."""
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> JSONResponse:
    """Ready: the database answers and is migrated to the revision this code expects."""
    pool = getattr(request.app.state, "pool", None)
    expected = head_revision()
    if pool is None:
        return JSONResponse({"status": "unavailable", "database": "not connected"}, 503)
    try:
        async with asyncio.timeout(3):
            async with pool.acquire() as conn:
                revision = await current_revision(conn)
    except (OSError, TimeoutError, Exception):  # any failure to reach it means "not ready"
        return JSONResponse({"status": "unavailable", "database": "unreachable"}, 503)
    if revision != expected:
        return JSONResponse(
            {"status": "unavailable", "database": "reachable", "revision": revision,
             "expected_revision": expected},
            503,
        )
    return JSONResponse({"status": "ok", "database": "reachable", "revision": revision})
