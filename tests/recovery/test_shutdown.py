"""Clean logs through database restarts and shutdown: nothing at ERROR, no traceback.

A query sent on a connection whose server has just ended it (its FATAL message has arrived,
the socket's close not yet) fails in asyncpg with ``InternalClientError: cannot switch to
state 11; another operation (2) is in progress``. A loop that did not count that as "the
database went away" died of it, and the shutdown that awaited the dead task logged its
traceback at ERROR. Here sessions are ended under a running hub hundreds of times, and a
whole server is run through a PostgreSQL restart and shut down with PostgreSQL gone.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable

import httpx
import pytest

from app.db import close_pool, create_pool
from app.events import ChangeHub
from app.server import create_app
from app.settings import Settings
from kubesim import KubeSim
from resolvers.events import CHANGES_CHANNEL
from tests.live_server import live_server
from tests.recovery.support import own_postgres, until
from tests.sync.factories import TEST_KEY, make_vault, register_cluster

_END_OTHER_SESSIONS = """
SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
 WHERE datname = current_database() AND pid <> pg_backend_pid()
"""


def errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [f"{r.name}: {r.getMessage()}" for r in caplog.records if r.levelno >= logging.ERROR]


@pytest.mark.db
async def test_the_change_hub_outlives_sessions_ended_under_it_and_stops_cleanly(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    rng = random.Random(7)
    async with own_postgres() as pg:
        pool = await create_pool(pg.url, max_size=4)
        admin = await create_pool(pg.url, min_size=1, max_size=1)
        # Its revocation check runs all the time, so ended sessions catch it mid-query and
        # in the instant between a server's FATAL and the socket's close.
        hub = ChangeHub(pg.url, pool, revocation_interval=0.001)
        try:
            await hub.start()
            for _ in range(150):
                await admin.fetchval(_END_OTHER_SESSIONS)
                await asyncio.sleep(rng.uniform(0, 0.01))
            # Still listening: a notice sent now is heard (once it has reconnected).
            before = hub.stats.notices

            async def heard() -> bool:
                await admin.execute("SELECT pg_notify($1, 'not json')", CHANGES_CHANNEL)
                await asyncio.sleep(0.05)
                return hub.stats.notices > before

            await until(heard, within=10, what="a notice after the sessions were ended")
            assert all(not task.done() for task in hub._tasks)  # nothing died of it
        finally:
            await hub.stop()
            await close_pool(admin)
            await close_pool(pool)
    assert errors(caplog) == []


@pytest.mark.db
async def test_a_server_through_a_postgresql_restart_and_shut_down_without_it_logs_no_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    vault = make_vault()
    async with own_postgres() as pg, KubeSim.start(fleet="small", seed=41) as sim:
        setup = await create_pool(pg.url, max_size=2)
        async with setup.acquire() as conn:
            cluster_id = await register_cluster(conn, vault, server=sim.url, token=sim.token)
        await close_pool(setup)
        settings = Settings(database_url=pg.url, encryption_keys=TEST_KEY,
                            allow_local_clusters=True, metrics_interval_s=3600.0)
        app = create_app(settings, migrate=False)
        async with live_server(app) as base, httpx.AsyncClient(base_url=base) as http:
            pool = app.state.pool

            async def status() -> str | None:
                try:
                    value: str | None = await pool.fetchval(
                        "SELECT status FROM k8s_clusters WHERE id = $1", cluster_id)
                except Exception:
                    return None
                return value

            await until(lambda: _is(status, "active"), within=60, what="first sync")
            await pg.stop()
            await asyncio.sleep(2)
            down = await http.get("/readyz")
            assert down.status_code == 503
            await pg.start()
            await until(lambda: _is(status, "active"), within=30, what="sync after restart")
            assert (await http.get("/readyz")).status_code == 200
            await pg.stop()  # and the server shuts down while PostgreSQL is gone
            await asyncio.sleep(1)
    assert errors(caplog) == []


async def _is(probe: Callable[[], Awaitable[str | None]], expected: str) -> bool:
    return await probe() == expected
