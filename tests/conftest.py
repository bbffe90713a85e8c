"""Shared fixtures: one real PostgreSQL database per test session, migrated to head.

The server is ``DATABASE_URL`` when set (CI sets it to the machine's PostgreSQL 15), else an
embedded PostgreSQL started in a temporary folder. Each session creates its own database and
drops it at the end, so parallel runs and reruns never see each other's rows.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from app.db import close_pool, create_pool, database_url_or_embedded
from tests.databases import scratch_database

DATABASE_FIXTURES = {
    "server_url", "empty_database_url", "database_url", "isolated_database_url", "db_pool", "api"
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that reaches PostgreSQL, so CI can rerun exactly those on another server."""
    for item in items:
        if DATABASE_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.db)


@pytest.fixture(scope="session")
def server_url() -> Iterator[str]:
    """The PostgreSQL server for this session.

    The embedded server lives in a folder of this process's own outside pytest's tmp_path:
    pytest prunes old ``pytest-N`` folders at start, which would pull the data directory out
    from under a concurrently running session.
    """
    data_dir = Path(tempfile.gettempdir()) / f"fleetgraph-test-pg-{os.getpid()}"
    with database_url_or_embedded(os.environ.get("DATABASE_URL"), data_dir,
                                  throwaway=True) as url:
        yield url
    shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture(scope="session")
async def empty_database_url(server_url: str) -> AsyncIterator[str]:
    """A fresh, unmigrated database on the test server, dropped after the session."""
    async with scratch_database(server_url, migrate=False) as url:
        yield url


@pytest.fixture(scope="session")
async def database_url(server_url: str) -> AsyncIterator[str]:
    """A fresh database migrated to head, shared by the session's tests, dropped after."""
    async with scratch_database(server_url) as url:
        yield url


@pytest.fixture
async def isolated_database_url(server_url: str) -> AsyncIterator[str]:
    """A database of this test's own, migrated to head, for tests that act on *every* row."""
    async with scratch_database(server_url) as url:
        yield url


@pytest.fixture(scope="session")
async def db_pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(database_url, max_size=8)
    yield pool
    await close_pool(pool)


@pytest.fixture(scope="session")
async def api(database_url: str, db_pool: asyncpg.Pool) -> AsyncIterator[Any]:
    """One API server for the session, with tenants ``a`` and ``b`` (a token per role each)."""
    from tests.api import running_api

    async with running_api(database_url, db_pool, slug_prefix="t") as running:
        yield running
