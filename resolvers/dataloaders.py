"""Per-request batching: many ``load(key)`` calls become one set-based SQL statement.

Why not Strawberry's ``DataLoader``: it dispatches a batch one loop turn after the first key,
and graphql-core reaches sibling fields of a list a few turns apart once the parent itself came
from a batch. A batch that closes early splits the level into several statements whose number
depends on how many rows came back, exactly what the graph promises never happens. This loader
waits until the loop has gone a few turns without a new key, which is when every sibling that
is going to ask has asked.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable, Mapping
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

_QUIET_TURNS = 3


class BatchLoader(Generic[K, V]):
    """Loads values by key in batches; each key is fetched once per request."""

    def __init__(
        self, fetch: Callable[[list[K]], Awaitable[Mapping[K, V]]], *, missing: Callable[[], V]
    ) -> None:
        self._fetch = fetch
        self._missing = missing
        self._futures: dict[K, asyncio.Future[V]] = {}
        self._pending: list[K] = []
        self._dispatcher: asyncio.Task[None] | None = None

    async def load(self, key: K) -> V:
        future = self._futures.get(key)
        if future is None:
            future = self._futures[key] = asyncio.get_running_loop().create_future()
            self._pending.append(key)
            if self._dispatcher is None:
                self._dispatcher = asyncio.create_task(self._dispatch())
        return await future

    async def _dispatch(self) -> None:
        seen = -1
        while seen != len(self._pending):
            seen = len(self._pending)
            for _ in range(_QUIET_TURNS):
                await asyncio.sleep(0)
        keys, self._pending, self._dispatcher = self._pending, [], None
        futures = [self._futures[k] for k in keys]
        try:
            found = await self._fetch(keys)
        except BaseException as exc:  # every waiter gets the error, none hangs
            for future in futures:
                if not future.done():
                    future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        for key, future in zip(keys, futures, strict=True):
            if not future.done():
                future.set_result(found[key] if key in found else self._missing())
