"""Running a plan: read level by level, then build the response's dicts bottom up.

Reading goes down the plan one level at a time. Every connection of a level asks for its page
under all its parents at once, and connections of the same level with the same relation and
arguments share one statement, as the resolvers' dataloaders do; the statements themselves are
``resolvers.graph_reads``' own, so both paths see the same rows, totals and ``hasNextPage``
(asked for only the columns the plan builds from, the sort keys only where cursors are
minted, and counts only where ``totalCount`` is selected). A request's reads run in turn on
one connection, given back before the build.

Building goes back up: the deepest objects first, each connection from its already built
children, then their parents. Rows become dicts through the plan's compiled builders, a few
hundred rows per call, with no object per row and no resolver call per field; cursors are
minted only for connections whose ``cursor``, ``startCursor`` or ``endCursor`` is selected.
Nothing built refers back to anything (plain dicts, lists and scalars), so a request leaves
no reference cycle behind.

Then the holes (fields the plan leaves to graphql-core, see ``resolvers.inventory.plan``) are
completed, top level first: for every row of an object with holes, its model object is made
from the row and each hole goes through the request's own ``execute_field`` at the row's
response path, so resolvers, permissions, errors and their paths are the resolvers' path's
own. Every hole of every row is asked before any is awaited, so a dataloader sees all of a
level's keys and answers them in one statement, as it does for the resolvers. The completed
values replace the placeholders the builders left, in place, so response order is kept. A
hole whose error reaches a non-null field would null some planned ancestor; the run then
raises and the resolvers answer the whole root field (``schema.build`` takes back the errors
the holes had already recorded).

The build gives the loop back every ``SLICE_SECONDS``, as the cooperative execution context
does for the resolvers' path, so a big answer never holds ``/healthz`` or the sync up.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import inspect
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from graphql import GraphQLObjectType
from graphql.execution.values import get_argument_values
from graphql.pyutils import Path
from strawberry.types.arguments import convert_arguments

from resolvers.context import Context
from resolvers.errors import drop_traceback
from resolvers.graph_reads import (
    ChildRows,
    ChildRowSet,
    PageArgs,
    empty_child_rows,
    fetch_child_rows,
)
from resolvers.inventory.plan import (
    ArgumentSource,
    ConnectionPlan,
    ObjectPlan,
    RootObjectPlan,
    RootPlan,
    Unplanned,
)
from resolvers.inventory.spec import ChildConnection, RootConnection

SLICE_SECONDS = 0.01
_ROWS_PER_BUILD = 256  # rows built between two looks at the clock

Arguments = Callable[[ArgumentSource], dict[str, Any]]


@dataclass(frozen=True)
class Completion:
    """graphql-core's completion of the fields a plan leaves out: the request's executor,
    and the response path of the root field being run."""

    executor: Any  # graphql-core's ExecutionContext (Executor) of the request
    root_path: Path

    def field(self, parent_type: GraphQLObjectType, source: Any, field_details_list: Any,
              path: Path) -> Any:
        """The field's completed value, or an awaitable of it, as execution gives it for a
        field below the root (no incremental delivery position)."""
        return self.executor.execute_field(parent_type, source, field_details_list, path,
                                           None)


def argument_reader(executor: Any) -> Arguments:
    """A field's arguments as its resolver would receive them (Strawberry input objects and
    enums), read with ``executor``'s variables."""
    strawberry_schema = executor.schema._strawberry_schema
    registry = strawberry_schema.schema_converter.scalar_registry
    config = strawberry_schema.config

    def read(source: ArgumentSource) -> dict[str, Any]:
        raw = get_argument_values(source.field_def, source.field_details.node,
                                  executor.variable_values, None, executor.hide_suggestions)
        return convert_arguments(raw, source.strawberry_field.arguments,
                                 scalar_registry=registry, config=config)

    return read


@dataclass
class _Fetched:
    """A connection's pages by parent (parents in the order they asked), and what mints
    their cursors: the statement's sort keys, or the cursors a root read already minted."""

    pages: dict[Any, ChildRows]
    empty: ChildRows
    parents: list[Any]
    offsets: dict[Any, int]
    row_set: ChildRowSet | None = None
    minted: dict[int, str] | None = None

    def cursors(self, ctx: Context, rows: list[Any]) -> list[str]:
        if self.row_set is not None:
            return self.row_set.cursors(ctx, rows)
        minted = self.minted or {}
        return [minted[id(row)] for row in rows]


@dataclass
class _Group:
    """Connections of one level that one statement answers: same relation and arguments,
    all their parents, and every column any of them builds from."""

    spec: ChildConnection
    parents: list[Any]
    columns: frozenset[str] | None
    cursors: bool = False  # whether any of them mints cursors (which read the sort keys)
    totals: bool = False  # whether any of them selects ``totalCount``

    def add_columns(self, columns: frozenset[str] | None) -> None:
        self.columns = None if columns is None or self.columns is None else \
            self.columns | columns


class _Slicer:
    """Gives the loop back once a slice of building is spent."""

    def __init__(self) -> None:
        self.started = time.perf_counter()

    async def pause_if_due(self) -> None:
        if time.perf_counter() - self.started >= SLICE_SECONDS:
            await asyncio.sleep(0)
            self.started = time.perf_counter()


class _Run:
    """One request's execution of one root plan. Holds rows while it builds, then nothing."""

    def __init__(self, ctx: Context, arguments: Arguments, completion: Completion) -> None:
        self.ctx = ctx
        self.arguments = arguments
        self.completion = completion
        self.fetched: dict[ConnectionPlan, _Fetched] = {}
        self.page_args: dict[ConnectionPlan, PageArgs] = {}
        self.counts: dict[ConnectionPlan, int] = {}
        self.built: dict[ObjectPlan, list[dict[str, Any]]] = {}
        self.connections: dict[ConnectionPlan, dict[Any, dict[str, Any]]] = {}
        self.paths: dict[ObjectPlan, list[Path]] = {}
        self.slicer = _Slicer()

    async def root(self, plan: RootPlan) -> Any:
        """Reads every level on one connection, gives it back, then builds."""
        shared = self.ctx
        async with _pinned(shared) as self.ctx:
            if isinstance(plan, RootObjectPlan):
                found = await self._root_object(plan)
                if found is None:
                    return None
                obj, levels = found
                if obj.needs_paths:
                    self._paths_below(obj, levels[0][0][1], [self.completion.root_path])
            else:
                if isinstance(plan.spec, RootConnection):
                    await self._root_connection(plan)
                    parent = None
                else:
                    parent = self.ctx.require().organization_id
                    await self._fetch([(plan, [parent])])
                levels = await self._descend(self._children(plan))
                self._row_paths(plan, {parent: self.completion.root_path})
        self.ctx = shared
        await self._build(levels)
        await self._complete_holes(levels)
        if isinstance(plan, RootObjectPlan):
            return self.built[obj][0]
        return self._connection(plan, self.fetched[plan], parent)

    async def _root_object(self, plan: RootObjectPlan
                           ) -> tuple[ObjectPlan, list[list[tuple[ObjectPlan, list[Any]]]]] | None:
        found = await plan.spec.load(self.ctx, **self.arguments(plan.arguments))
        if found is None:
            if plan.spec.null_when_missing:
                return None
            raise Unplanned
        type_name, row = found
        obj = plan.by_type.get(type_name)
        if obj is None:
            raise Unplanned
        return obj, await self._descend([(obj, [row])])

    async def _root_connection(self, plan: ConnectionPlan) -> None:
        spec = plan.spec
        assert isinstance(spec, RootConnection)
        page, count = await spec.load(self.ctx, **self.arguments(plan.arguments))
        if plan.needs_count:
            self.counts[plan] = await count()
        minted = {id(row): cursor for row, cursor in zip(page.rows, page.cursors, strict=True)}
        rows = ChildRows(page.rows, page.has_next_page, page.has_previous_page, 0)
        self.fetched[plan] = _Fetched({None: rows}, rows, [None], {None: 0}, minted=minted)

    def _children(self, plan: ConnectionPlan) -> list[tuple[ObjectPlan, list[Any]]]:
        fetched = self.fetched[plan]
        rows = [row for parent in fetched.parents
                for row in fetched.pages.get(parent, fetched.empty).rows]
        return [(obj, rows) for obj in plan.objects]

    async def _descend(self, level: list[tuple[ObjectPlan, list[Any]]]
                       ) -> list[list[tuple[ObjectPlan, list[Any]]]]:
        """Fetches level after level below ``level``; every level of objects, with rows."""
        levels = []
        while level:
            levels.append(level)
            asks = [(connection, [row["id"] for row in rows])
                    for obj, rows in level for connection in obj.connections]
            if not asks:
                break
            await self._fetch(asks)
            level = [pair for connection, _ in asks for pair in self._children(connection)]
        return levels

    async def _fetch(self, asks: list[tuple[ConnectionPlan, list[Any]]]) -> None:
        """One statement per (relation, arguments) among ``asks``, all parents together."""
        groups: dict[tuple[str, PageArgs], _Group] = {}
        for connection, parents in asks:
            spec = connection.spec
            assert isinstance(spec, ChildConnection)
            args = self.page_args[connection] = spec.page_args(
                **self.arguments(connection.arguments))
            group = groups.get((spec.relation.name, args))
            if group is None:
                group = groups[(spec.relation.name, args)] = _Group(spec, [], frozenset())
            group.parents.extend(parents)
            group.add_columns(connection.columns)
            group.cursors |= connection.needs_cursors
            group.totals |= connection.needs_count
        keys = list(groups)
        results = []
        for k in keys:  # in turn: they share the run's one connection
            parents = _unique(groups[k].parents)
            if not parents:  # nothing above it came back: no statement, as for the resolvers
                results.append(ChildRowSet({}, "", 0))
                continue
            results.append(await fetch_child_rows(
                self.ctx, groups[k].spec.relation, parents, k[1],
                groups[k].columns, cursors=groups[k].cursors, totals=groups[k].totals))
        found = dict(zip(keys, results, strict=True))
        for connection, parents in asks:
            spec = connection.spec
            assert isinstance(spec, ChildConnection)
            args = self.page_args[connection]
            row_set = found[(spec.relation.name, args)]
            unique = _unique(parents)
            offsets, at = {}, 0
            for parent in unique:
                offsets[parent] = at
                at += len(row_set.pages[parent].rows) if parent in row_set.pages else 0
            self.fetched[connection] = _Fetched(row_set.pages, empty_child_rows(args), unique,
                                                offsets, row_set=row_set)

    async def _build(self, levels: list[list[tuple[ObjectPlan, list[Any]]]]) -> None:
        for level in reversed(levels):
            for obj, rows in level:
                for connection in obj.connections:
                    self.connections[connection] = await self._connections_by_parent(
                        connection)
                self.built[obj] = await self._objects(obj, rows)

    def _row_paths(self, plan: ConnectionPlan, at: Mapping[Any, Path]) -> None:
        """The response path of every row of ``plan``'s objects that need one (theirs or
        their descendants' holes), given the connection's path under each parent."""
        fetched = self.fetched[plan]
        for obj in plan.objects:
            if not obj.needs_paths:
                continue
            steps = obj.steps
            assert steps is not None
            rows, paths = [], []
            for parent in fetched.parents:
                listed = Path(at[parent], steps.list_key, steps.connection_type)
                for index, row in enumerate(fetched.pages.get(parent, fetched.empty).rows):
                    item = Path(listed, index, None)
                    rows.append(row)
                    paths.append(item if steps.item_key is None
                                 else Path(item, steps.item_key, steps.edge_type))
            self._paths_below(obj, rows, paths)

    def _paths_below(self, obj: ObjectPlan, rows: list[Any], paths: list[Path]) -> None:
        """Keeps the paths of ``obj``'s rows, then finds those of the rows below them."""
        self.paths[obj] = paths
        for connection in obj.connections:
            if any(child.needs_paths for child in connection.objects):
                self._row_paths(connection, {
                    row["id"]: Path(path, connection.key, obj.type_.name)
                    for row, path in zip(rows, paths, strict=True)})

    async def _complete_holes(self, levels: list[list[tuple[ObjectPlan, list[Any]]]]) -> None:
        """Completes every hole of every built row (see the module docstring): all asked,
        then all awaited together; the first error that would null a planned ancestor is
        raised once every other hole has settled."""
        pending: list[tuple[dict[str, Any], str, Awaitable[Any]]] = []
        is_awaitable = self.completion.executor.is_awaitable
        try:
            for level in levels:
                for obj, rows in level:
                    if obj.holes:
                        await self._ask_holes(obj, rows, pending, is_awaitable)
        except asyncio.CancelledError:  # the request was abandoned: start none of them
            _abandon(pending)
            raise
        except Exception:  # one failed as it was asked: the others may fail too, settle them
            await _settle(pending)
            raise
        failure = await _settle(pending)
        if failure is not None:
            raise failure

    async def _ask_holes(self, obj: ObjectPlan, rows: list[Any],
                         pending: list[tuple[dict[str, Any], str, Awaitable[Any]]],
                         is_awaitable: Callable[[Any], bool]) -> None:
        assert obj.model is not None
        field = self.completion.field
        type_, type_name, model, holes = obj.type_, obj.type_.name, obj.model, obj.holes
        built, paths = self.built[obj], self.paths[obj]
        for start in range(0, len(rows), _ROWS_PER_BUILD):
            for at in range(start, min(start + _ROWS_PER_BUILD, len(rows))):
                source, out, path = model(rows[at]), built[at], paths[at]
                for hole in holes:
                    value = field(type_, source, hole.field_details_list,
                                  Path(path, hole.key, type_name))
                    if is_awaitable(value):
                        pending.append((out, hole.key, value))
                    else:
                        out[hole.key] = value
            # One turn between slices: the dataloaders wait for several quiet turns before
            # they ask, so a level's keys still make one batch.
            await self.slicer.pause_if_due()

    async def _objects(self, obj: ObjectPlan, rows: list[Any]) -> list[dict[str, Any]]:
        children = [self.connections[connection] for connection in obj.connections]
        out: list[dict[str, Any]] = []
        for start in range(0, len(rows), _ROWS_PER_BUILD):
            out += obj.build_rows(rows[start:start + _ROWS_PER_BUILD], *children)
            await self.slicer.pause_if_due()
        return out

    async def _connections_by_parent(self, plan: ConnectionPlan) -> dict[Any, dict[str, Any]]:
        fetched = self.fetched[plan]
        out = {}
        for parent in fetched.parents:
            out[parent] = self._connection(plan, fetched, parent)
            await self.slicer.pause_if_due()
        return out

    def _connection(self, plan: ConnectionPlan, fetched: _Fetched, parent: Any
                    ) -> dict[str, Any]:
        child = fetched.pages.get(parent, fetched.empty)
        start = fetched.offsets[parent]
        count = len(child.rows)
        cursors = fetched.cursors(self.ctx, child.rows) if plan.needs_cursors else []
        out: dict[str, Any] = {}
        for key, kind, payload in plan.parts:
            if kind == "edges" and len(payload) == 1 and payload[0][1] == "node":
                node_key, _, node = payload[0]  # the usual ``edges { node }``: no cursor
                out[key] = [{node_key: n} for n in self.built[node][start:start + count]]
            elif kind == "edges":
                out[key] = [self._edge(payload, cursors, start, i) for i in range(count)]
            elif kind == "nodes":
                out[key] = self.built[payload][start:start + count]
            elif kind == "totalCount":
                out[key] = self.counts.get(plan, child.total)
            elif kind == "pageInfo":
                info, type_name = payload
                values = {"hasNextPage": child.has_next_page,
                          "hasPreviousPage": child.has_previous_page,
                          "startCursor": cursors[0] if cursors else None,
                          "endCursor": cursors[-1] if cursors else None,
                          "__typename": type_name}
                out[key] = {k: values[name] for k, name in info}
            else:
                out[key] = payload
        return out

    def _edge(self, parts: list[tuple[str, str, Any]], cursors: list[str], start: int,
              i: int) -> dict[str, Any]:
        edge: dict[str, Any] = {}
        for key, kind, payload in parts:
            if kind == "node":
                edge[key] = self.built[payload][start + i]
            elif kind == "cursor":
                edge[key] = cursors[i]
            else:
                edge[key] = payload
        return edge


@contextlib.asynccontextmanager
async def _pinned(ctx: Context) -> AsyncIterator[Context]:
    """``ctx`` with one connection for all of a run's statements, counted as before.

    Each statement through the pool is an acquire and, on release, asyncpg's reset (one more
    round trip: ``RESET ALL``, ``UNLISTEN *``…); the planned reads of a request are
    sequential anyway, so they share one connection and one reset. The connection goes back
    before the build, which is the long part. Loaders stay apart: one made here must not
    outlive the connection."""
    pin = getattr(ctx.pool, "pinned", None)
    if pin is None:
        yield ctx
        return
    async with pin() as pool:
        yield dataclasses.replace(ctx, pool=pool, loaders={})


def _unique(values: list[Any]) -> list[Any]:
    return list(dict.fromkeys(values))


def _abandon(pending: list[tuple[dict[str, Any], str, Awaitable[Any]]]) -> None:
    """Drops holes that were asked but never awaited: coroutines closed (none was started),
    futures cancelled."""
    for _, _, value in pending:
        if inspect.iscoroutine(value):
            value.close()
        elif isinstance(value, asyncio.Future):
            value.cancel()
    pending.clear()


async def _settle(pending: list[tuple[dict[str, Any], str, Awaitable[Any]]]
                  ) -> BaseException | None:
    """Awaits every pending hole and writes each value in place; the first failure (an
    error bound for a non-null ancestor), once all have settled, is returned, not raised,
    all without their tracebacks, which would hold the run in a cycle."""
    if not pending:
        return None
    values = await asyncio.gather(*(value for _, _, value in pending), return_exceptions=True)
    failure: BaseException | None = None
    for (out, key, _), value in zip(pending, values, strict=True):
        if isinstance(value, BaseException):
            failure = failure or value
            drop_traceback(value)
        else:
            out[key] = value
    pending.clear()
    return failure


async def run_plan(plan: RootPlan, ctx: Context, arguments: Arguments,
                   completion: Completion) -> Any:
    """The root field's completed value, or ``Unplanned`` (or the resolvers' own error, or
    a hole's error bound for a non-null planned field) when only the resolvers can answer it
    exactly."""
    return await _Run(ctx, arguments, completion).root(plan)

