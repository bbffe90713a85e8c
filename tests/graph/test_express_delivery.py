"""The change hub writes shared subscription answers to idle sockets in its own pass
(``schema.express``): the frames are byte for byte what the general path writes, a socket
that stops reading neither delays nor blocks anyone else and is still dropped when it falls
too far behind, and a completed subscription gets nothing more while its socket's other
subscriptions go on. Below those, the route itself: one execution per key and event, and
every case in which it leaves the event to the subscriber's own task."""

from __future__ import annotations

import asyncio
import inspect
import socket
import uuid
import weakref
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlsplit

import orjson
from graphql import ExecutionResult, GraphQLError, parse

from app.events import DEFAULT_QUEUE_SIZE, ChangeHub
from schema.express import ExpressRoute, FrameSink
from schema.relay import to_global_id
from schema.shared_results import SharedResults, execute_shared, sharing_key
from tests.api import Tenant, running_api
from tests.graph import rows
from tests.graph.raw_sockets import Socket, all_live
from tests.graph.ws import change_health

SAME = "subscription { clusterHealth { clusterName status reason } }"
FULL = ("subscription Full { clusterHealth { clusterId clusterName status reason changedAt "
        "figures { podsTotal nodesTotal status } } }")
ONE_CLUSTER = "subscription($id: ID) { clusterHealth(clusterId: $id) { clusterName status } }"


def _hub(api: Any) -> ChangeHub:
    hub: ChangeHub = api.app.state.services["events"]
    return hub


def _reason(frame: str) -> str:
    reason: str = orjson.loads(frame)["payload"]["data"]["clusterHealth"]["reason"]
    return reason


async def test_frames_written_by_the_hub_are_the_general_paths_byte_for_byte(
    api: Any, tenant: Tenant, database_url: str, db_pool: Any
) -> None:
    """The same subscriptions on this server and on one whose sockets cannot be written
    from the hub (plain uvicorn ``websockets-sansio``, so every frame goes through the
    subscriber's task, Strawberry and ASGI) receive the same bytes for the same change."""
    async with db_pool.acquire() as conn:
        cluster_id = await rows.cluster(conn, tenant.org_id, "bytes")
    gid = str(to_global_id("Cluster", cluster_id))
    token = tenant.tokens["viewer"]
    shapes: list[tuple[str, str, bool, dict[str, Any] | None]] = [
        (SAME, "same-1", False, None), (SAME, "same-2", False, None),
        (SAME, "legacy-1", True, None), (FULL, "full", False, None),
        (FULL, "full-legacy", True, None), (ONE_CLUSTER, "variables", False, {"id": gid}),
    ]
    async with running_api(database_url, db_pool, slug_prefix=f"x-{uuid.uuid4().hex[:8]}",
                           ws="websockets-sansio") as plain:
        hubs = (_hub(api), _hub(plain))
        sockets = [[await Socket.open(server.ws_url, token, query, sid, legacy=legacy,
                                      variables=variables)
                    for query, sid, legacy, variables in shapes] for server in (api, plain)]
        try:
            await all_live([*sockets[0], *sockets[1]], lambda: change_health(
                db_pool, cluster_id, tenant.org_id, "degraded", "warming up"))
            before = [hub.stats.express for hub in hubs]
            await change_health(db_pool, cluster_id, tenant.org_id, "critical",
                                'quotes " and \\ and ünïcödé')
            express, general = [await asyncio.gather(*(s.frame() for s in group))
                                for group in sockets]
            assert express == general
            assert [hub.stats.express - b for hub, b in zip(hubs, before, strict=True)] \
                == [len(shapes), 0]
            assert _reason(express[0]) == 'quotes " and \\ and ünïcödé'
        finally:
            for group in sockets:
                for s in group:
                    await s.ws.close()


async def _unread_socket(url: str, token: str, query: str) -> Socket:
    """A subscriber that will stop reading: a small receive buffer, and its client stops
    taking frames off the socket once one is waiting (``max_queue=1``)."""
    parts = urlsplit(url)
    raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    raw.setblocking(False)
    await asyncio.get_running_loop().sock_connect(raw, (parts.hostname, parts.port))
    return await Socket.open(url, token, query, "stalled", sock=raw, max_queue=1)


async def test_a_socket_that_stops_reading_neither_delays_nor_blocks_the_others(
    api: Any, tenant: Tenant
) -> None:
    async with api.pool.acquire() as conn:
        cluster_id = await rows.cluster(conn, tenant.org_id, "stall")
    token = tenant.tokens["viewer"]

    async def change(reason: str) -> None:
        await change_health(api.pool, cluster_id, tenant.org_id, "critical", reason)

    healthy = [await Socket.open(api.ws_url, token, SAME, f"h{i}") for i in range(4)]
    stalled = await _unread_socket(api.ws_url, token, SAME)
    hub = _hub(api)
    try:
        await all_live([*healthy, stalled], lambda: change("warming up"))
        dropped = hub.stats.dropped
        # The stalled client takes one frame off its socket and then no more. Big frames
        # follow until the kernel's buffers (megabytes, on loopback) and then the transport's
        # high-water mark are full: from then on the pass declines that socket (its event is
        # queued for its own task) and goes on writing to the others.
        sent = ["taken"]
        await change(sent[0])
        await asyncio.gather(*(s.frame() for s in healthy))
        while True:
            assert len(sent) < 12, "the stalled socket never filled up"
            sent.append(f"{len(sent)} " + "x" * 900_000)
            express = hub.stats.express
            await change(sent[-1])
            frames = await asyncio.gather(*(s.frame() for s in healthy))
            assert [_reason(f) == sent[-1] for f in frames] == [True] * len(healthy)
            if hub.stats.express - express == len(healthy):
                break
            assert hub.stats.express - express == len(healthy) + 1
        # Every further change reaches the others at once, from the pass; the stalled one's
        # events wait in its bounded queue until it is dropped, and nobody waits for it.
        for i in range(DEFAULT_QUEUE_SIZE + 10):
            if hub.stats.dropped > dropped:
                break
            express = hub.stats.express
            sent.append(f"change {i}")
            await change(sent[-1])
            frames = await asyncio.gather(*(s.frame(wait=2) for s in healthy))
            assert [_reason(f) for f in frames] == [sent[-1]] * len(healthy)
            assert hub.stats.express - express == len(healthy)
        assert hub.stats.dropped == dropped + 1
        # What the stalled subscriber finally reads: its events in order, none missing,
        # then the error that says it was dropped.
        received: list[str] = []
        while True:
            payload = orjson.loads(await stalled.frame(wait=10))["payload"]
            if payload.get("errors"):
                break
            received.append(payload["data"]["clusterHealth"]["reason"])
        assert payload["data"] is None
        assert [e["extensions"]["code"] for e in payload["errors"]] == ["SUBSCRIBER_TOO_SLOW"]
        assert received == sent[:len(received)] and len(received) >= 2
    finally:
        for s in [*healthy, stalled]:
            await s.ws.close()


async def test_a_completed_subscription_gets_nothing_more_and_its_sibling_goes_on(
    api: Any, tenant: Tenant
) -> None:
    """Two subscriptions on one socket, in each protocol: after one is completed (stopped),
    the next change reaches only the other, from the hub's pass."""
    async with api.pool.acquire() as conn:
        cluster_id = await rows.cluster(conn, tenant.org_id, "complete")
    token = tenant.tokens["viewer"]

    async def change(reason: str) -> None:
        await change_health(api.pool, cluster_id, tenant.org_id, "critical", reason)

    sockets = [await Socket.open(api.ws_url, token, SAME, "first", legacy=legacy)
               for legacy in (False, True)]
    for s in sockets:
        await s.subscribe(SAME, "second")
    hub = _hub(api)
    try:
        await all_live(sockets, lambda: change("warming up"))
        for s in sockets:
            await s.drain()  # each socket's second subscription answered the poke too
            await s.stop("first")
            if s.legacy:  # the legacy protocol acknowledges a stop; the other one does not
                assert orjson.loads(await s.frame()) == {"type": "complete", "id": "first"}
        await asyncio.sleep(0.3)
        express = hub.stats.express
        await change("after complete")
        for s in sockets:
            message = orjson.loads(await s.frame())
            assert (message["id"], message["type"]) \
                == ("second", "data" if s.legacy else "next")
            assert message["payload"]["data"]["clusterHealth"]["reason"] == "after complete"
        assert hub.stats.express - express == len(sockets)
        for s in sockets:
            try:
                extra = await s.frame(wait=0.5)
            except TimeoutError:
                continue
            raise AssertionError(f"a frame after complete: {extra}")
    finally:
        for s in sockets:
            await s.ws.close()


class _Executor:
    """The parts of a subscription's executor that a route uses: per-event executors whose
    execution goes through the sharing hook, as ``schema.cooperative``'s do."""

    is_awaitable = staticmethod(inspect.isawaitable)

    def __init__(self, execute: Callable[[], Any], principal: Any) -> None:
        self.execute = execute
        self.principal = principal
        self.runs = 0

    def per_event(self, payload: Any) -> Any:
        return SimpleNamespace(
            root_value=payload, operation=parse(SAME).definitions[0],
            context_value=SimpleNamespace(principal=self.principal),
            variable_values=SimpleNamespace(coerced={}), is_awaitable=self.is_awaitable)

    def build_per_event_executor(self, payload: Any) -> Any:
        event_executor = self.per_event(payload)

        def run() -> Any:
            self.runs += 1
            return self.execute()

        event_executor.execute_operation = lambda _serially: execute_shared(event_executor, run)
        return event_executor


class _Sink:
    def __init__(self, *, accepts: bool = True) -> None:
        self.accepts = accepts
        self.frames: list[str] = []

    def send_text(self, frame: str) -> bool:
        if self.accepts:
            self.frames.append(frame)
        return self.accepts


def _route(executor: _Executor, sink: _Sink, *, task: asyncio.Task[Any] | None = None,
           context: Any = None) -> ExpressRoute:
    principal = executor.principal
    context = context or SimpleNamespace(principal=principal)
    key = sharing_key(executor.per_event(None))
    current = task or asyncio.current_task()
    assert key is not None and current is not None
    return ExpressRoute(sink=FrameSink(sink.send_text, '{"id":"1","payload":', "}"),
                        executor=weakref.ref(executor), key=key, payload=lambda event: event,
                        context=context, task=current)


def _event() -> Any:
    return SimpleNamespace(shared_results=SharedResults())


def _principal() -> Any:
    return SimpleNamespace(organization_id=uuid.uuid4(), role="viewer")


async def test_the_pass_writes_one_execution_of_a_shared_answer_to_every_route() -> None:
    executor = _Executor(lambda: ExecutionResult(data={"clusterHealth": {"status": "OK"}},
                                                 errors=None), _principal())
    sinks = [_Sink(), _Sink()]
    event = _event()
    assert [_route(executor, sink).deliver(event) for sink in sinks] == [True, True]
    assert executor.runs == 1
    assert [sink.frames for sink in sinks] \
        == [['{"id":"1","payload":{"data":{"clusterHealth":{"status":"OK"}}}}']] * 2


async def test_answers_with_errors_are_left_to_each_subscribers_task() -> None:
    executor = _Executor(lambda: ExecutionResult(data=None, errors=[GraphQLError("boom")]),
                         _principal())
    sinks = [_Sink(), _Sink()]
    event = _event()
    assert [_route(executor, sink).deliver(event) for sink in sinks] == [False, False]
    assert executor.runs == 1  # the second route did not execute it again
    assert [sink.frames for sink in sinks] == [[], []]


async def test_an_execution_that_raises_is_left_to_each_subscribers_task() -> None:
    def raising() -> ExecutionResult:
        raise RuntimeError("a bug in a resolver")

    executor = _Executor(raising, _principal())
    event = _event()
    assert [_route(executor, _Sink()).deliver(event) for _ in range(3)] == [False] * 3
    assert executor.runs == 1  # once, not once per subscriber (nor a traceback each)


async def test_an_operation_that_does_not_finish_synchronously_stops_using_its_route() -> None:
    async def later() -> ExecutionResult:
        return ExecutionResult(data={"clusterHealth": None}, errors=None)

    executor = _Executor(later, _principal())
    sink = _Sink()
    route = _route(executor, sink)
    assert (route.deliver(_event()), route.deliver(_event())) == (False, False)
    assert executor.runs == 1 and sink.frames == []
    await asyncio.sleep(0)  # the abandoned execution finishes on its own


async def test_a_route_declines_when_its_socket_task_or_principal_cannot_take_it() -> None:
    executor = _Executor(lambda: ExecutionResult(data={"clusterHealth": None}, errors=None),
                         _principal())
    event = _event()
    full = _Sink(accepts=False)
    assert _route(executor, full).deliver(event) is False
    # The answer stays on the payload for the subscriber's own task, which reuses it.
    assert event.shared_results.get(sharing_key(executor.per_event(None))) is not None

    stopping = asyncio.create_task(asyncio.sleep(10))
    cancelled = _route(executor, _Sink(), task=stopping)
    stopping.cancel()  # what ``complete`` does to the operation's task
    context = SimpleNamespace(principal=executor.principal)
    revoked = _route(executor, _Sink(), context=context)
    context.principal = None  # what revoking the token does to the socket's context
    assert (cancelled.deliver(event), revoked.deliver(event)) == (False, False)
    assert executor.runs == 1
