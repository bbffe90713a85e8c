"""The GraphiQL page and its assets over real HTTP: served from our own routes, with a
policy that forbids every other origin, a fixed table of assets, and a token in the page
only when the demo put it there."""

from __future__ import annotations

from typing import Any

import httpx
import orjson
import pytest

from app.ide import ASSET_ROUTE


async def _page(api: Any) -> httpx.Response:
    return await api.http.get("/graphql", headers={"Accept": "text/html"})


async def test_page_loads_every_asset_from_this_server(api: Any) -> None:
    page = await _page(api)
    assert page.status_code == 200
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert "connect-src 'self'" in page.headers["content-security-policy"]
    assert "http" not in page.text.split("<body>")[0].replace("http-equiv", "")
    for name in ("react.js", "react-dom.js", "graphql-ws.js", "graphiql.js", "graphiql.css",
                 "fleetgraph-graphiql.js"):
        assert f'{ASSET_ROUTE}/{name}"' in page.text
        asset = await api.http.get(f"{ASSET_ROUTE}/{name}")
        assert asset.status_code == 200, name
        assert len(asset.content) > 1000, name


@pytest.mark.parametrize("name", ["package.json", "..%2F..%2Fide.py", "node_modules",
                                  "graphiql.min.js"])
async def test_only_the_fixed_table_of_assets_is_served(api: Any, name: str) -> None:
    assert (await api.http.get(f"{ASSET_ROUTE}/{name}")).status_code == 404


async def test_a_real_server_never_embeds_a_token(api: Any) -> None:
    config = _config(await _page(api))
    assert config == {"endpoint": "/graphql", "initialHeaders": ""}


async def test_the_demo_page_carries_its_admin_token_in_the_headers_editor(
    database_url: str
) -> None:
    from app.server import create_app
    from app.settings import Settings
    from app.vault import generate_key
    from tests.live_server import live_server

    app = create_app(Settings(database_url=database_url, encryption_keys=generate_key(),
                              sync_enabled=False), migrate=False)
    # What `fleetgraph demo` does once its token exists.
    app.state.graphiql_initial_headers = {"Authorization": "Bearer demo-token</script>"}
    async with live_server(app) as base, httpx.AsyncClient(base_url=base) as http:
        page = await http.get("/graphql", headers={"Accept": "text/html"})
    assert orjson.loads(_config(page)["initialHeaders"]) == {
        "Authorization": "Bearer demo-token</script>"}
    assert "demo-token</script>" not in page.text  # escaped inside the JSON block


def _config(page: httpx.Response) -> dict[str, Any]:
    block = page.text.split('id="fleetgraph-config">')[1].split("</script>")[0]
    config: dict[str, Any] = orjson.loads(block)
    return config
