"""Static query cost: what a request would make the server build, worked out before it runs.

Depth and alias limits do not bound work: ``pods(first: 50) { cluster { pods(first: 50) {
cluster { pods(first: 50) … }}}}`` is shallow yet asks for 125,000 pods. So every operation
is costed from its selection set alone, and refused before execution when the cost is over
the caller's budget:

- a field that returns objects costs its *multiplicity*: how many of them the response can
  hold, i.e. the product of the list sizes above it and its own;
- a connection's list size is its ``first`` argument (a variable's value, else the schema's
  default); its ``edges``/``nodes`` lists, its edges' ``node`` and its ``pageInfo`` add
  nothing of their own: they are the items already counted;
- any other list is bounded by a ``first``/``limit``/``last`` argument when it has one, by
  the cap its resolver enforces when it has one (``KNOWN_LIST_SIZES``: a metric series holds
  at most ``MAX_POINTS`` points, and exactly its range over its step when its arguments say),
  else counted as ``DEFAULT_LIST_SIZE`` (the remaining lists
  are small by design: containers, conditions, a cluster's kinds);
- scalars cost nothing: their price is their object's.

Fragments and inline fragments are costed where they are spread. The computed cost is in the
refusal's message and extensions, so a client can see how far over it is.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLField,
    GraphQLList,
    GraphQLNamedType,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLSchema,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
    get_named_type,
    value_from_ast,
)
from graphql.execution.values import VariableValues, get_variable_values
from graphql.type import GraphQLInterfaceType, GraphQLUnionType
from strawberry.extensions import SchemaExtension

from resolvers.metrics import MAX_POINTS

DEFAULT_LIST_SIZE = 10
KNOWN_LIST_SIZES = {("MetricSeries", "points"): MAX_POINTS}
SIZE_ARGUMENTS = ("first", "last", "limit")
CONNECTION_LISTS = ("edges", "nodes")
CONNECTION_PARTS = ("edges", "nodes", "node", "pageInfo")


def _is_list(type_: Any) -> bool:
    if isinstance(type_, GraphQLNonNull):
        type_ = type_.of_type
    return isinstance(type_, GraphQLList)


def _is_connection(type_: GraphQLNamedType) -> bool:
    return isinstance(type_, GraphQLObjectType) and "edges" in type_.fields and \
        "pageInfo" in type_.fields


def _is_edge(type_: GraphQLNamedType) -> bool:
    return isinstance(type_, GraphQLObjectType) and "node" in type_.fields and \
        "cursor" in type_.fields


class QueryCost:
    """The cost of one operation of ``document`` with ``variables``."""

    def __init__(self, schema: GraphQLSchema, document: DocumentNode,
                 variables: Mapping[str, Any] | None) -> None:
        self.schema = schema
        self.variables = dict(variables or {})
        self.fragments = {d.name.value: d for d in document.definitions
                          if isinstance(d, FragmentDefinitionNode)}

    def of_operation(self, operation: OperationDefinitionNode) -> int:
        root = self.schema.get_root_type(operation.operation)
        if root is None:
            return 0
        # Arguments are read with the variables coerced as execution will see them (a
        # DateTime variable as a datetime); variables that do not coerce are left to
        # execution to refuse, and count as absent here.
        coerced = get_variable_values(self.schema, operation.variable_definitions or (),
                                      self.variables)
        self.variables = coerced.coerced if isinstance(coerced, VariableValues) else {}
        return self._selection_cost(root, operation.selection_set, 1, in_connection=False,
                                    seen=frozenset())

    def _selection_cost(self, parent: GraphQLNamedType, selections: SelectionSetNode,
                        multiplicity: int, *, in_connection: bool,
                        seen: frozenset[str], series_points: int | None = None) -> int:
        total = 0
        for field_node, owner in self._fields(parent, selections, seen):
            field = owner.fields.get(field_node.name.value) if owner is not None else None
            if owner is None or field is None:  # __typename, or a field validation refused
                continue
            named = get_named_type(field.type)
            if not isinstance(named, GraphQLObjectType | GraphQLInterfaceType |
                              GraphQLUnionType):
                continue
            known = series_points if field_node.name.value == "points" else None
            known = known or KNOWN_LIST_SIZES.get((owner.name, field_node.name.value))
            factor = known or self._list_factor(field, field_node, in_connection)
            here = multiplicity * factor
            if not (in_connection and field_node.name.value in CONNECTION_PARTS):
                # A connection's edges, its edges' nodes and its pageInfo are the items the
                # connection was already charged for, not more of them.
                total += here
            if field_node.selection_set is not None:
                total += self._selection_cost(
                    named, field_node.selection_set, here,
                    in_connection=_is_connection(named) or _is_edge(named), seen=seen,
                    series_points=self._series_points(field, field_node))
        return total

    def _fields(self, parent: GraphQLNamedType, selections: SelectionSetNode,
                seen: frozenset[str]
                ) -> Iterator[tuple[FieldNode, GraphQLObjectType | GraphQLInterfaceType | None]]:
        """Every field selected on ``parent``, with fragments flattened (each fragment once
        per path, so a fragment cycle, which validation refuses anyway, cannot loop)."""
        owner = parent if isinstance(parent, GraphQLObjectType | GraphQLInterfaceType) else None
        for selection in selections.selections:
            if isinstance(selection, FieldNode):
                yield selection, owner
            elif isinstance(selection, InlineFragmentNode):
                target = parent
                if selection.type_condition is not None:
                    target = self.schema.get_type(selection.type_condition.name.value) or parent
                yield from self._fields(target, selection.selection_set, seen)
            elif isinstance(selection, FragmentSpreadNode):
                name = selection.name.value
                fragment = self.fragments.get(name)
                if fragment is None or name in seen:
                    continue
                target = self.schema.get_type(fragment.type_condition.name.value) or parent
                yield from self._fields(target, fragment.selection_set, seen | {name})

    def _list_factor(self, field: GraphQLField, node: FieldNode, in_connection: bool) -> int:
        named = get_named_type(field.type)
        if _is_connection(named):
            return self._size_argument(field, node) or DEFAULT_LIST_SIZE
        if not _is_list(field.type):
            return 1
        if in_connection and node.name.value in CONNECTION_LISTS:
            return 1  # the connection's own list, already counted at the connection
        return self._size_argument(field, node) or DEFAULT_LIST_SIZE

    def _series_points(self, field: GraphQLField, node: FieldNode) -> int | None:
        """A time series' point count, from its ``from``/``to``/``step`` arguments (capped as
        its resolver caps it); None when the field is not one or the range is unreadable."""
        if not {"from", "to", "step"} <= field.args.keys():
            return None
        values = {name: self._argument(field, node, name) for name in ("from", "to", "step")}
        start, end, step = values["from"], values["to"], values["step"]
        if not isinstance(start, datetime) or not isinstance(end, datetime) or \
                not isinstance(step, int) or step <= 0:
            return None
        points = math.ceil((end - start).total_seconds() / step)
        # Outside (0, MAX_POINTS] the resolver refuses the range before building any point.
        return points if 0 < points <= MAX_POINTS else 1

    def _argument(self, field: GraphQLField, node: FieldNode, name: str) -> Any:
        definition = field.args[name]
        given = next((a for a in node.arguments or () if a.name.value == name), None)
        if given is not None:
            try:
                return value_from_ast(given.value, definition.type, self.variables)
            except (GraphQLError, TypeError, ValueError):  # the resolver reports it properly
                return None
        return definition.default_value

    def _size_argument(self, field: GraphQLField, node: FieldNode) -> int | None:
        for name in SIZE_ARGUMENTS:
            if name not in field.args:
                continue
            value = self._argument(field, node, name)
            if isinstance(value, int) and value > 0:
                return value
        return None


def operation_cost(schema: GraphQLSchema, document: DocumentNode,
                   variables: Mapping[str, Any] | None, operation_name: str | None) -> int:
    """The cost of the operation a request would run (0 when there is none to run)."""
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    chosen = [o for o in operations
              if operation_name is None or (o.name is not None and
                                            o.name.value == operation_name)]
    if not chosen:
        return 0
    return QueryCost(schema, document, variables).of_operation(chosen[0])


class QueryCostLimit(SchemaExtension):
    """Refuses, before execution, an operation whose cost is over the caller's budget.

    Runs after authentication (an anonymous request is refused as such first) and after
    validation (so the document is known to be well formed)."""

    def __init__(self, *, limits: Mapping[str, int]) -> None:
        super().__init__()
        self.limits = limits

    def on_execute(self) -> Iterator[None]:
        ctx = self.execution_context
        principal = getattr(ctx.context, "principal", None)
        document = ctx.graphql_document
        if principal is not None and document is not None and ctx.result is None:
            limit = self.limits.get(str(principal.role.value))
            if limit is not None:
                cost = operation_cost(ctx.schema._schema, document, ctx.variables,
                                      ctx.operation_name)
                if cost > limit:
                    from graphql import ExecutionResult

                    ctx.result = ExecutionResult(data=None, errors=[GraphQLError(
                        f"query cost {cost:,} is over the limit of {limit:,} for the "
                        f"{principal.role.value} role: ask for fewer items (smaller `first`) "
                        "or fewer nested lists",
                        extensions={"code": "BAD_USER_INPUT", "cost": cost, "limit": limit},
                    )])
        yield
