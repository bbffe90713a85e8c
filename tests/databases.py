"""Throwaway PostgreSQL databases for tests and benchmarks: created, migrated, dropped.

Every session, isolated test and benchmark run gets a database of its own on the server, so
runs never see each other's rows and nothing is left behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg

from app.db import database_url_or_embedded
from app.migrations import upgrade_to_head


def with_database(url: str, database: str) -> str:
    """The same server URL pointed at another database (handles socket-style URLs)."""
    head, sep, query = url.partition("?")
    base = head.rsplit("/", 1)[0]
    return f"{base}/{database}{sep}{query}"


@contextlib.asynccontextmanager
async def scratch_database(
    server_url: str, *, prefix: str = "fg_test", migrate: bool = True
) -> AsyncIterator[str]:
    """A new database on ``server_url`` (migrated to head unless asked not to), dropped after."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(server_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        try:
            url = with_database(server_url, name)
            if migrate:
                await asyncio.to_thread(upgrade_to_head, url)
            yield url
        finally:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@contextlib.asynccontextmanager
async def bench_database(prefix: str) -> AsyncIterator[str]:
    """For benchmarks: a scratch database on ``DATABASE_URL``, else on a throwaway embedded
    server."""
    with tempfile.TemporaryDirectory() as tmp, database_url_or_embedded(
        os.environ.get("DATABASE_URL"), Path(tmp), throwaway=True
    ) as server:
        async with scratch_database(server, prefix=prefix) as url:
            yield url
