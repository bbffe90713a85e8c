"""A starting server freezes what start-up built and sets its collector thresholds (see
app/collector.py for the measurements behind them)."""

from __future__ import annotations

import gc

import httpx

from app.collector import THRESHOLDS
from app.server import create_app
from app.settings import Settings
from app.vault import generate_key
from tests.live_server import live_server


async def test_a_started_server_freezes_start_up_objects_and_sets_the_thresholds(
    database_url: str,
) -> None:
    before = gc.get_threshold()
    gc.unfreeze()
    gc.set_threshold(700, 10, 10)  # CPython's defaults, whatever earlier tests left
    try:
        app = create_app(Settings(database_url=database_url, encryption_keys=generate_key(),
                                  sync_enabled=False), migrate=False)
        assert gc.get_freeze_count() == 0  # building the app is not starting it
        async with live_server(app) as base, httpx.AsyncClient(base_url=base) as http:
            assert (await http.get("/healthz")).status_code == 200
            assert gc.get_threshold() == THRESHOLDS
            assert gc.get_freeze_count() > 10_000  # modules, the schema, the app
    finally:
        gc.set_threshold(*before)
