"""Shared fixtures: one real PostgreSQL database per test session, migrated to head.

The server is ``DATABASE_URL`` when set (CI sets it to the machine's PostgreSQL 15), else an
embedded PostgreSQL started in a temporary folder. Each session creates its own database and
drops it at the end, so parallel runs and reruns never see each other's rows.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from app.db import create_pool, database_url_or_embedded
from app.migrations import upgrade_to_head

DATABASE_FIXTURES = {
    "server_url", "empty_database_url", "database_url", "isolated_database_url", "db_pool", "api"
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that reaches PostgreSQL, so CI can rerun exactly those on another server."""
    for item in items:
        if DATABASE_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.db)


def with_database(url: str, database: str) -> str:
    """The same server URL pointed at another database (handles socket-style URLs)."""
    head, sep, query = url.partition("?")
    base = head.rsplit("/", 1)[0]
    return f"{base}/{database}{sep}{query}"


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
    name = f"fg_test_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(server_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield with_database(server_url, name)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture(scope="session")
async def database_url(server_url: str) -> AsyncIterator[str]:
    """A fresh database migrated to head, shared by the session's tests, dropped after."""
    name = f"fg_test_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(server_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        url = with_database(server_url, name)
        await asyncio.to_thread(upgrade_to_head, url)
        yield url
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture
async def isolated_database_url(server_url: str) -> AsyncIterator[str]:
    """A database of this test's own, migrated to head, for tests that act on *every* row."""
    name = f"fg_test_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(server_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        url = with_database(server_url, name)
        await asyncio.to_thread(upgrade_to_head, url)
        yield url
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture(scope="session")
async def db_pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(database_url, max_size=8)
    yield pool
    await pool.close()


@pytest.fixture(scope="session")
async def api(database_url: str, db_pool: asyncpg.Pool) -> AsyncIterator[Any]:
    """One API server for the session, with tenants ``a`` and ``b`` (a token per role each)."""
    from tests.api import running_api

    async with running_api(database_url, db_pool, slug_prefix="t") as running:
        yield running
