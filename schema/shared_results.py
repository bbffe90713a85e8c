"""One execution and one serialisation per subscription event for every subscriber who would
get the same answer.

A health change reaches every ``clusterHealth`` subscriber of its organization. With a
thousand of them, executing the same selection over the same payload a thousand times, and
turning each answer into JSON a thousand times, was most of the delivery time. The hub hands
one payload object per event to all of them (``resolvers.events.ClusterEvent.shared``); a
payload type that opts in carries a ``SharedResults`` table, and every subscriber whose
answer cannot differ (same operation text and name, same coerced variables, same
organization and role) gets the answer the first one computed. The answer's ``data`` is a
``SharedData``, which serialises its ``{"data": ...}`` payload once; the WebSocket layer
(``app.frames``) splices those bytes into each socket's own frame.

What is deliberately *not* shared, and why (the first version of this, taken out in 4bdc3e3
after a flaky GraphiQL failure, did all three):

- Nothing is found by ``id()``: the table lives on the payload object itself, so it dies with
  the event and can never be reached from another event's object at a reused address.
- An execution that did not finish synchronously (a resolver awaiting, or cooperative
  execution deferring a list to a later slice) is not shared: it belongs to the subscriber
  whose task runs it, and its cancellation, context and drainer stay that subscriber's. Only
  a finished result is shared.
- A result with errors is not shared: errors are logged and coded per operation, and each
  subscriber should see its own.

Each subscriber gets a new ``ExecutionResult`` around the shared data, so nothing a transport
or extension sets on a result object reaches another subscriber.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NoReturn

import orjson
from graphql import ExecutionResult


@dataclass
class SharingStats:
    """What the sharing did in this process (tests pin exact counts per event)."""

    executed: int = 0  # subscription-event executions that ran
    reused: int = 0  # executions answered from another subscriber's result
    serialised: int = 0  # ``{"data": ...}`` payloads turned into JSON
    express: int = 0  # frames the hub's fan-out wrote itself (``schema.express``)


STATS = SharingStats()


class SharedData(dict[str, Any]):
    """The ``data`` of one shared answer: read-only, and serialised at most once.

    Strawberry hands ``data`` unchanged to the transport, so this object reaches the frame
    encoder, which asks it for ``payload_json`` instead of serialising it again per socket.
    """

    __slots__ = ("_payload_json",)

    def __init__(self, data: dict[str, Any]) -> None:
        super().__init__(data)
        self._payload_json: str | None = None

    @property
    def payload_json(self) -> str:
        """``{"data": <this>}`` as JSON text, exactly as the per-socket encoder would write
        it (text, because protocol messages travel in text frames)."""
        if self._payload_json is None:
            STATS.serialised += 1
            self._payload_json = orjson.dumps({"data": self}).decode()
        return self._payload_json

    def __reduce__(self) -> tuple[type[dict[str, Any]], tuple[dict[str, Any]]]:
        """Copies (``copy``, ``deepcopy``, ``pickle``) are plain, writable dicts."""
        return dict, (dict(self),)

    def _read_only(self, *_args: Any, **_kwargs: Any) -> NoReturn:
        raise TypeError("a shared subscription result is read-only")

    __setitem__ = __delitem__ = __ior__ = clear = pop = popitem = setdefault = update = \
        _read_only


class SharedResults:
    """The finished answers to one event's payload, by everything that could change them."""

    __slots__ = ("_answers", "_refused")

    def __init__(self) -> None:
        self._answers: dict[tuple[Any, ...], SharedData] = {}
        # Keys whose execution of this payload gave an answer that is not shared (errors,
        # extensions, unfinished): nobody tries to share them again for this event.
        self._refused: set[tuple[Any, ...]] = set()

    def get(self, key: tuple[Any, ...]) -> SharedData | None:
        return self._answers.get(key)

    def keep(self, key: tuple[Any, ...], data: dict[str, Any]) -> SharedData:
        shared = self._answers[key] = SharedData(data)
        return shared

    def refuse(self, key: tuple[Any, ...]) -> None:
        self._refused.add(key)

    def refused(self, key: tuple[Any, ...]) -> bool:
        return key in self._refused


def sharing_key(executor: Any) -> tuple[Any, ...] | None:
    """What a subscriber's answer depends on besides the payload; None: do not share."""
    principal = getattr(executor.context_value, "principal", None)
    location = executor.operation.loc
    if principal is None or location is None:
        return None
    coerced = executor.variable_values.coerced
    try:
        variables = orjson.dumps(coerced, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS
                                 ) if coerced else b""
    except TypeError:  # a variable value orjson cannot write: do not share
        return None
    name = executor.operation.name.value if executor.operation.name else None
    return (location.source.body, name, variables, principal.organization_id,
            principal.role)


def execute_shared(executor: Any, execute: Callable[[], Any]) -> Any:
    """``execute()`` for the first subscriber of an event with a given key; a copy of its
    finished answer for the others (see the module docstring for what is never shared)."""
    table = getattr(executor.root_value, "shared_results", None)
    key = sharing_key(executor) if isinstance(table, SharedResults) else None
    if table is None or key is None:
        return execute()
    found = table.get(key)
    if found is not None:
        STATS.reused += 1
        return ExecutionResult(data=found, errors=None)
    STATS.executed += 1
    result = execute()
    if executor.is_awaitable(result) or not isinstance(result, ExecutionResult) \
            or result.errors or result.data is None or result.extensions:
        table.refuse(key)
        return result
    return ExecutionResult(data=table.keep(key, result.data), errors=None)
