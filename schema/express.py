"""Express delivery: the change hub's fan-out writes a subscription event's frame itself.

With a thousand ``clusterHealth`` subscribers, every health change used to wake a thousand
tasks, and each ran about nine awaits to get one frame out: the hub's queue, three async
generators, graphql-core's map iterator and a copy of the executor, Strawberry's stream with
its extension hooks, the protocol handler, the ASGI send chain and uvicorn. Sharing had
already made the execution and the serialisation once per event; the rest was per socket.

So a subscription whose answer can be shared gets an ``ExpressRoute``, registered with the
hub beside its queue. While the subscription's own task is parked on an empty queue, the hub
hands the event to the route instead of the queue, and the route, in the hub's one pass over
the subscribers, finds the event's shared answer (``schema.shared_results``; the first
subscriber of a key executes it, with its own executor, exactly as its task would have), and
writes the frame: the same envelope the encoder would put around the same payload bytes
(``app.frames``), through the socket's own protocol, without awaiting anything.

Whenever it cannot do exactly what the general path would have done, the route declines
(returns False) and the hub queues the event as before, so the subscriber's task delivers it:

- the subscription's task is being cancelled (``complete``/``stop``, the socket closing) or its
  principal is gone (a revoked token), or its stream is not parked on an empty queue (an
  earlier event is still on its way: frames of one subscription never overtake each other);
- the answer has errors or extensions, or did not finish synchronously (those are never
  shared; an operation that once did not finish synchronously is not tried again);
- the socket cannot take the frame now (its transport is over its high-water mark, closing,
  or closed): a slow socket never holds up the pass, and its own task waits for it as before,
  behind a bounded queue that drops it when it falls too far behind.

A route exists only where everything that could touch a streamed result is known not to:
there is a socket to write to (``FRAME_SINK``, set by the WebSocket handlers per operation),
the operation has a sharing key, and no schema extension has a per-result hook.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from strawberry.extensions import SchemaExtension
from strawberry.types import Info

from schema.shared_results import STATS, SharedResults, sharing_key


@dataclass(frozen=True, slots=True)
class FrameSink:
    """Where one subscription's frames go when the hub writes them.

    ``send_text`` writes a text frame to the socket now and says True, or writes nothing and
    says False (closing, closed, or over its high-water mark). ``head`` and ``tail`` are the
    frame's envelope around its payload, as ``app.frames.envelope`` gives it."""

    send_text: Callable[[str], bool]
    head: str
    tail: str


# Set inside each WebSocket operation's own task (app.ws_handlers), read by its resolver.
FRAME_SINK: ContextVar[FrameSink | None] = ContextVar("fleetgraph_frame_sink", default=None)
# Set by the subscription's executor when it is built (schema.cooperative), in the same task.
SUBSCRIPTION_EXECUTOR: ContextVar[weakref.ref[Any] | None] = ContextVar(
    "fleetgraph_subscription_executor", default=None)

# Executions abandoned by a route because they did not finish synchronously: they are left
# to finish (their futures and drainer tasks settle normally), and nobody waits for them.
_ABANDONED: set[asyncio.Future[Any]] = set()


class ExpressRoute:
    """One subscription's way around its own task, for events whose answer is shared."""

    __slots__ = ("_context", "_executor", "_key", "_off", "_payload", "_principal", "_sink",
                 "_task")

    def __init__(self, *, sink: FrameSink, executor: weakref.ref[Any], key: tuple[Any, ...],
                 payload: Callable[[Any], Any], context: Any, task: asyncio.Task[Any]) -> None:
        self._sink = sink
        self._executor = executor
        self._key = key
        self._payload = payload
        self._context = context
        self._principal = context.principal
        # Weakly: the task's frames hold this route, and a cycle would outlive the
        # subscription until the collector found it.
        self._task = weakref.ref(task)
        self._off = False

    def deliver(self, event: Any) -> bool:
        """Write ``event``'s frame now (True), or decline (False) and leave it to the
        subscriber's own task. Never awaits."""
        task = self._task()
        if self._off or task is None or task.done() or task.cancelling() \
                or self._context.principal is not self._principal:
            return False
        try:
            payload = self._payload(event)
        except Exception:  # its own task builds it again, and reports the error its way
            return False
        table = getattr(payload, "shared_results", None)
        if not isinstance(table, SharedResults) or table.refused(self._key):
            return False
        data = table.get(self._key)
        reused = data is not None
        if data is None:
            data = self._execute(payload, table)
            if data is None:
                return False
        if not self._sink.send_text(self._sink.head + data.payload_json + self._sink.tail):
            return False
        STATS.express += 1
        if reused:
            STATS.reused += 1
        return True

    def _execute(self, payload: Any, table: SharedResults) -> Any:
        """The shared answer for this route's key, executed with the subscription's own
        executor (the sharing hook keeps it), or None if it is not one to share."""
        executor = self._executor()
        if executor is None:
            return None
        try:
            result = executor.build_per_event_executor(payload).execute_operation(False)
        except Exception:  # each subscriber's task meets it again, on its own error path
            table.refuse(self._key)
            return None
        if executor.is_awaitable(result):
            self._off = True
            future = asyncio.ensure_future(result)
            _ABANDONED.add(future)
            future.add_done_callback(_forget)
            return None
        return table.get(self._key)


def _forget(future: asyncio.Future[Any]) -> None:
    _ABANDONED.discard(future)
    if not future.cancelled():
        future.exception()  # retrieved: its subscriber's task executes (and reports) anew


def _results_untouched(schema: Any) -> bool:
    """No extension looks at, or adds to, a streamed result (Strawberry's ``on_stream_result``
    and ``get_results`` hooks run per result on the general path only)."""
    for extension in schema.get_extensions():
        kind = type(extension)
        if kind.on_stream_result is not SchemaExtension.on_stream_result \
                or kind.get_results is not SchemaExtension.get_results:
            return False
    return True


def express_route(info: Info[Any, Any], payload: Callable[[Any], Any]) -> ExpressRoute | None:
    """The current subscription's express route, or None where only its task may deliver.

    ``payload`` turns an event into the root value the resolver yields for it (the same
    object, ``ClusterEvent.shared``). Called from the resolver, inside the operation's task.
    """
    sink = FRAME_SINK.get()
    ref = SUBSCRIPTION_EXECUTOR.get()
    task = asyncio.current_task()
    if sink is None or ref is None or task is None or info.context.principal is None:
        return None
    executor = ref()
    if executor is None:
        return None
    key = sharing_key(executor)
    if key is None or not _results_untouched(info.schema):
        return None
    return ExpressRoute(sink=sink, executor=ref, key=key, payload=payload,
                        context=info.context, task=task)
