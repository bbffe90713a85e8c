"""CORS, proven by the client that enforces it: a page served on another loopback port calls
the API with ``fetch`` from a real Chromium. With its origin in ``FLEETGRAPH_CORS_ORIGINS``
the call (preflighted, because it sends Authorization) succeeds; otherwise the browser blocks
it. Without the setting, no CORS header is ever sent."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.responses import HTMLResponse
from starlette.routing import Route

from tests.api import running_api
from tests.browser.conftest import OfflinePage
from tests.live_server import live_server

CALL_API = """async ([url, token]) => {
  try {
    const response = await fetch(url, {
      method: "POST",
      headers: {"Content-Type": "application/json", "Authorization": "Bearer " + token},
      body: JSON.stringify({query: "{ clusters(first: 1) { totalCount } }"}),
    });
    return {ok: true, status: response.status, body: await response.json()};
  } catch (error) {
    return {ok: false, error: String(error)};
  }
}"""


@contextlib.asynccontextmanager
async def frontend() -> AsyncIterator[str]:
    """A stand-in for a frontend's dev server: another origin serving a blank page."""
    async def index(request: Any) -> HTMLResponse:
        return HTMLResponse("<!doctype html><title>frontend</title><p>frontend</p>")

    async with live_server(Starlette(routes=[Route("/", index)])) as origin:
        yield origin


async def _call_from(offline: OfflinePage, page_origin: str, api: Any) -> dict[str, Any]:
    offline.allowed.extend([page_origin, api.base_url])
    await offline.page.goto(page_origin + "/")
    result: dict[str, Any] = await offline.page.evaluate(
        CALL_API, [api.base_url + "/graphql", api.a.tokens["viewer"]])
    return result


async def test_an_allowed_origin_calls_the_api_from_a_browser(
    database_url: str, db_pool: Any, offline_page: OfflinePage
) -> None:
    async with frontend() as origin, running_api(
        database_url, db_pool, slug_prefix="cors-ok", cors_origins=(origin,)
    ) as api:
        result = await _call_from(offline_page, origin, api)
        assert result == {"ok": True, "status": 200,
                          "body": {"data": {"clusters": {"totalCount": 0}}}}
        assert offline_page.blocked == []


async def test_an_origin_not_listed_is_blocked_by_the_browser(
    database_url: str, db_pool: Any, offline_page: OfflinePage
) -> None:
    async with frontend() as origin, running_api(
        database_url, db_pool, slug_prefix="cors-no",
        cors_origins=("http://frontend.example.test",),
    ) as api:
        result = await _call_from(offline_page, origin, api)
        assert result["ok"] is False and "Failed to fetch" in result["error"]


async def test_without_the_setting_no_cors_headers_are_sent(api: Any) -> None:
    async with httpx.AsyncClient(base_url=api.base_url) as http:
        preflight = await http.options("/graphql", headers={
            "Origin": "http://127.0.0.1:1", "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type"})
        simple = await http.post("/graphql", json={"query": "{ __typename }"},
                                 headers={"Origin": "http://127.0.0.1:1"})
    assert preflight.status_code == 405
    assert not any(h.lower().startswith("access-control-") for h in preflight.headers)
    assert not any(h.lower().startswith("access-control-") for h in simple.headers)
