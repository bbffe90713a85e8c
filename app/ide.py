"""GraphiQL, served by FleetGraph itself.

Operations teams run tools like this on networks without internet, where a page that loads
its JavaScript from a CDN is blank. So the page and every asset it needs come from our own
routes: GraphiQL, React and the graphql-ws client are installed from the npm registry at
install time (``app/graphiql/package.json``, pinned by its lock file, ``npm ci`` from the
Makefile) and served from ``app/graphiql/node_modules``; only our small glue script and the
page template live in the repository. No third-party bundle is committed.

The page's Content-Security-Policy allows nothing but this origin, so a stray asset URL
fails loudly in the browser instead of silently reaching out.
"""

from __future__ import annotations

import functools
import html
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

import orjson
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, PlainTextResponse, Response

log = logging.getLogger(__name__)

PAGE_DIR = Path(__file__).with_name("graphiql")
ASSET_ROUTE = "/graphiql/assets"

# Public name → path under the asset root. A fixed table, never a path from the request, so
# the route cannot be walked out of node_modules.
_ASSETS: dict[str, tuple[str, str]] = {
    "react.js": ("node_modules/react/umd/react.production.min.js", "text/javascript"),
    "react-dom.js": ("node_modules/react-dom/umd/react-dom.production.min.js", "text/javascript"),
    "graphiql.js": ("node_modules/graphiql/graphiql.min.js", "text/javascript"),
    "graphiql.css": ("node_modules/graphiql/graphiql.min.css", "text/css"),
    "graphql-ws.js": ("node_modules/graphql-ws/umd/graphql-ws.min.js", "text/javascript"),
}
_OWN_ASSETS: dict[str, tuple[str, str]] = {
    "fleetgraph-graphiql.js": ("fleetgraph-graphiql.js", "text/javascript"),
}

CONTENT_SECURITY_POLICY = "; ".join([
    "default-src 'self'",
    "script-src 'self'",
    # GraphiQL's components set inline styles.
    "style-src 'self' 'unsafe-inline'",
    "img-src 'self' data:",
    "font-src 'self' data:",
    "connect-src 'self'",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
])


def asset_root(configured: Path | None) -> Path:
    """Where the npm-installed assets live: ``FLEETGRAPH_GRAPHIQL_ASSETS`` or ours."""
    return configured if configured is not None else PAGE_DIR


def missing_assets(root: Path) -> list[str]:
    """The installed files the page needs that are not there (empty when ready)."""
    return [relative for relative, _ in _ASSETS.values() if not (root / relative).is_file()]


@functools.cache
def _template() -> str:
    return (PAGE_DIR / "index.html").read_text(encoding="utf-8")


def graphiql_page(*, endpoint: str, initial_headers: dict[str, str] | None) -> HTMLResponse:
    """The page. ``initial_headers`` is only ever set by ``fleetgraph demo``: a real server
    never embeds a token in a page."""
    config = {
        "endpoint": endpoint,
        "initialHeaders": orjson.dumps(initial_headers, option=orjson.OPT_INDENT_2).decode()
        if initial_headers else "",
    }
    template = _template()
    # The config is data in a JSON script block (never executed); escaping "<" keeps a value
    # from closing the block.
    config_json = orjson.dumps(config).decode().replace("<", "\\u003c")
    body = (template
            .replace("{{ASSETS}}", html.escape(ASSET_ROUTE))
            .replace("{{CONFIG}}", config_json))
    return HTMLResponse(body, headers={
        "Content-Security-Policy": CONTENT_SECURITY_POLICY,
        "Cache-Control": "no-store",
        "Referrer-Policy": "no-referrer",
        "X-Content-Type-Options": "nosniff",
    })


def asset_endpoint(root: Path) -> Callable[[Request], Awaitable[Response]]:
    """A Starlette endpoint serving the fixed table of assets (``/graphiql/assets/{name}``)."""

    async def serve_asset(request: Request) -> Response:
        name = request.path_params["name"]
        if name in _OWN_ASSETS:
            relative, media_type = _OWN_ASSETS[name]
            path = PAGE_DIR / relative
        elif name in _ASSETS:
            relative, media_type = _ASSETS[name]
            path = root / relative
        else:
            return PlainTextResponse("no such asset", status_code=404)
        if not path.is_file():
            return PlainTextResponse(
                f"GraphiQL asset {name} is not installed ({path}); run `make install`",
                status_code=404,
            )
        return FileResponse(path, media_type=media_type, headers={
            "Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff",
        })

    return serve_asset
