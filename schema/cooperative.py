"""Execution that gives the event loop back every few milliseconds.

graphql-core completes a resolved list synchronously: once a dataloader answers, every pod of
every deployment is turned into its response in one stretch, with no await in between. One
large query then holds the loop (and with it ``/healthz``, the sync's flushes and every
subscription on this process) for as long as that takes: seconds, for the biggest query the
cost limit allows. The static cost limit bounds the total; this bounds each stretch.

Each execution keeps a time slice. A list that is to be completed once the slice is spent is
not completed there: it is queued, and the caller gets a future for it (graphql-core accepts
an awaitable wherever a value may be). One task per execution drains the queue slice by
slice, with an ``await asyncio.sleep(0)`` between slices, so the loop polls its sockets and
runs other tasks at least every ``SLICE_SECONDS``. Lists are completed by graphql-core's own
method either way, so results, order and error paths are unchanged; the cost is one future
per list completed after the first slice, not per item.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections import deque
from collections.abc import Iterable, Sequence
from functools import partial
from typing import Any, cast

from graphql import GraphQLError, OperationType
from graphql.type.definition import GraphQLResolveInfoHelpers
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

from resolvers.errors import drop_traceback
from resolvers.inventory.run import SLICE_SECONDS
from schema.express import SUBSCRIPTION_EXECUTOR
from schema.shared_results import execute_shared


class CooperativeExecutionContext(StrawberryGraphQLCoreExecutionContext):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # graphql-core hands resolvers helpers bound to the executor, which the executor
        # holds: a reference cycle per request that only the collector frees, and with it
        # everything the request reached. Through a weak reference there is no cycle.
        executor = weakref.ref(self)

        def gather(values: Sequence[Any]) -> Any:
            return cast(CooperativeExecutionContext, executor()).gather_async_work(values)

        def track(values: Sequence[Any]) -> None:
            cast(CooperativeExecutionContext, executor()).track_async_work(values)

        self.async_helpers = GraphQLResolveInfoHelpers(gather=gather, track=track)
        self._loop = asyncio._get_running_loop()
        self._slice_started = time.perf_counter()
        self._queue: deque[tuple[asyncio.Future[Any], tuple[Any, ...]]] = deque()
        self._drainer: asyncio.Task[None] | None = None
        self._raised: dict[int, GraphQLError] = {}  # see build_response
        if self.operation.operation == OperationType.SUBSCRIPTION:
            # Its resolver runs later in this same task and finds it here, for the hub's
            # express route (schema.express); weakly, so it never outlives the subscription.
            SUBSCRIPTION_EXECUTOR.set(executor)

    def build_per_event_executor(self, payload: Any) -> CooperativeExecutionContext:
        """A subscription's executor for one event, with caches of its own.

        graphql-core makes it with a shallow ``copy``, so every event shares the
        subscription's memo of collected subfields. That memo is keyed by the identity of
        field lists that are built anew for each event and kept alive by the memo: it grew by
        about 2 KiB per delivered event for as long as the subscription lived (measured with
        tracemalloc: the whole of the subscription memory growth). Each event now starts
        with an empty memo, which is dropped with its executor, and its own time slice.
        """
        executor = cast(CooperativeExecutionContext, super().build_per_event_executor(payload))
        executor._relevant_sub_fields = {}
        executor._slice_started = time.perf_counter()
        executor._queue = deque()
        executor._drainer = None
        executor._raised = {}
        return executor

    def execute_operation(self, serially: bool | None = None) -> Any:
        """A subscription event's answer, computed once for every subscriber who would get
        the same bytes (``schema.shared_results``). Everything else executes as usual."""
        if self.operation.operation != OperationType.SUBSCRIPTION:
            return super().execute_operation(serially)
        return execute_shared(self, partial(super().execute_operation, serially))

    def handle_field_error(self, raw_error: Exception, return_type: Any,
                           field_details_list: Any, path: Any) -> None:
        """graphql-core's own handling, noting each error it raises on towards a nullable
        ancestor (see ``build_response``)."""
        try:
            super().handle_field_error(raw_error, return_type, field_details_list, path)
        except GraphQLError as error:
            self._raised[id(error)] = error
            raise

    def build_response(self, data: Any) -> Any:
        """graphql-core's response; and every error raised on the way to a null that another
        error had already caused loses its traceback now. graphql-core drops such an error
        unreported (a sibling's failure settles it, or the null it reaches is already
        reported), and its traceback holds the frame that raised it, whose locals hold the
        error: a cycle through the executor, the context and the rows, the request's whole
        state for the collector to find. Reported errors keep theirs until they are logged."""
        response = super().build_response(data)
        reported = {id(error) for error in self.collected_errors.errors}
        for key, error in self._raised.items():
            if key not in reported:
                drop_traceback(error)
        self._raised = {}
        return response

    def complete_iterable_value(self, item_type: Any, field_details_list: Any, info: Any,
                                path: Any, items: Iterable[Any], position_context: Any
                                ) -> Any:
        args = (item_type, field_details_list, info, path, items, position_context)
        if self._loop is None or time.perf_counter() - self._slice_started < SLICE_SECONDS:
            return super().complete_iterable_value(*args)
        future: asyncio.Future[Any] = self._loop.create_future()
        self._queue.append((future, args))
        if self._drainer is None:
            self._drainer = self._loop.create_task(self._drain())
        return future

    async def _drain(self) -> None:
        try:
            while self._queue:
                await asyncio.sleep(0)
                self._slice_started = time.perf_counter()
                while self._queue and \
                        time.perf_counter() - self._slice_started < SLICE_SECONDS:
                    future, args = self._queue.popleft()
                    if not future.cancelled():  # the request was abandoned
                        self._complete_into(future, args)
        finally:
            self._drainer = None

    def _complete_into(self, future: asyncio.Future[Any], args: tuple[Any, ...]) -> None:
        try:
            completed = super().complete_iterable_value(*args)
        except Exception as exc:  # graphql-core locates it, as if raised where it was asked
            future.set_exception(exc)
            return
        if not self.is_awaitable(completed):
            future.set_result(completed)
            return

        def settle(done: asyncio.Future[Any]) -> None:
            if future.cancelled():
                return
            if done.cancelled():
                future.cancel()
            elif done.exception() is not None:
                future.set_exception(done.exception())  # type: ignore[arg-type]
            else:
                future.set_result(done.result())

        asyncio.ensure_future(completed).add_done_callback(settle)
