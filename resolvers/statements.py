"""Counting the SQL statements a request sends.

The graph promises that the number of statements depends on a query's shape, never on how many
rows come back. That promise is only worth something if it is measured, so every request's
database handle goes through these thin wrappers: they add one to the request's counter for
each statement and hand everything else to asyncpg untouched. The counter costs an integer
increment; the schema reports it in a response header (see ``schema.statement_count``).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any


@dataclass
class StatementCounter:
    count: int = 0


class _Counting:
    """Statement methods that count, on top of an asyncpg pool or connection."""

    def __init__(self, target: Any, counter: StatementCounter) -> None:
        self._target = target
        self.counter = counter

    async def _run(self, method: str, *args: Any, **kwargs: Any) -> Any:
        self.counter.count += 1
        return await getattr(self._target, method)(*args, **kwargs)

    async def fetch(self, *args: Any, **kwargs: Any) -> Any:
        return await self._run("fetch", *args, **kwargs)

    async def fetchrow(self, *args: Any, **kwargs: Any) -> Any:
        return await self._run("fetchrow", *args, **kwargs)

    async def fetchval(self, *args: Any, **kwargs: Any) -> Any:
        return await self._run("fetchval", *args, **kwargs)

    async def execute(self, *args: Any, **kwargs: Any) -> Any:
        return await self._run("execute", *args, **kwargs)

    async def executemany(self, *args: Any, **kwargs: Any) -> Any:
        return await self._run("executemany", *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._target, name)


class CountingConnection(_Counting):
    """An acquired connection whose statements count (``transaction()`` etc. pass through)."""


class CountingPool(_Counting):
    """A pool whose statements, and those of connections acquired from it, count."""

    @contextlib.asynccontextmanager
    async def acquire(self, **kwargs: Any) -> AsyncIterator[CountingConnection]:
        async with self._target.acquire(**kwargs) as conn:
            yield CountingConnection(conn, self.counter)

    @contextlib.asynccontextmanager
    async def pinned(self) -> AsyncIterator[CountingPool]:
        """One connection for a run of sequential statements, spoken to like this pool and
        counted the same (one acquire and one reset instead of one per statement)."""
        async with self._target.acquire() as conn:
            yield CountingPool(conn, self.counter)
