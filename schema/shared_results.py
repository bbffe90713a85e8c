"""One execution per subscription event for every subscriber who would get the same answer.

A health change reaches every ``clusterHealth`` subscriber of its organization; with a
thousand of them, executing the same selection a thousand times over the same payload was
most of the delivery time. The hub hands one payload object to every subscriber of an event
(``resolvers.events.ClusterEvent.shared``), so the payload's identity stands for the event;
the key adds everything else that could change the answer: the operation's text and name,
the coerced variables, the organization and the role. Results live as long as the payload.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson


@dataclass
class SharingStats:
    """How many subscription-event executions ran, and how many reused one (for tests and
    metrics)."""

    executed: int = 0
    reused: int = 0


STATS = SharingStats()

# Per event payload (by identity, while it lives): its results by subscriber-visible key.
_RESULTS: dict[int, dict[tuple[Any, ...], Any]] = {}


def _sharing_key(executor: Any) -> tuple[Any, ...] | None:
    principal = getattr(executor.context_value, "principal", None)
    location = executor.operation.loc
    if principal is None or location is None:
        return None
    try:
        variables = orjson.dumps(executor.variable_values.coerced,
                                 option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS)
    except TypeError:  # a variable value orjson cannot write: do not share
        return None
    name = executor.operation.name.value if executor.operation.name else None
    return (location.source.body, name, variables, principal.organization_id,
            principal.role)


def shared_result(executor: Any, execute: Callable[[], Any]) -> Any:
    """Execute once per (payload, key); later subscribers get the same result.

    The hub hands one payload object to every subscriber of an event (``ClusterEvent.shared``),
    so a thousand subscribers with the same subscription cost one execution, not a thousand.
    The payload's identity is the event's; the key adds what could change the answer. An
    in-flight execution is shared as a task (each subscriber awaits it shielded, so one who
    leaves cannot cancel it for the others); a result with errors is not kept for later ones.
    """
    payload = executor.root_value
    key = _sharing_key(executor)
    if key is None:
        return execute()
    results = _RESULTS.get(id(payload))
    if results is None:
        try:
            weakref.finalize(payload, _RESULTS.pop, id(payload), None)
        except TypeError:  # not weak-referenceable: no identity to share by
            return execute()
        results = _RESULTS[id(payload)] = {}
    found = results.get(key)
    if found is not None:
        STATS.reused += 1
        return asyncio.shield(found) if isinstance(found, asyncio.Future) else found
    STATS.executed += 1
    result = execute()
    if not executor.is_awaitable(result):
        if not result.errors:
            results[key] = result
        return result
    task = asyncio.ensure_future(result)
    results[key] = task

    def forget_failures(done: asyncio.Future[Any]) -> None:
        if done.cancelled() or done.exception() is not None or done.result().errors:
            results.pop(key, None)

    task.add_done_callback(forget_failures)
    return asyncio.shield(task)
