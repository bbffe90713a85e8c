"""Planning: an operation's inventory fields turned, once, into compiled row builders.

A plan is made from graphql-core's own field collection (so aliases, fragments, merged
fields and ``@skip``/``@include`` come out exactly as execution would see them) and keeps only
what every request of the same operation shares: the response keys in order, how each key is
read from a row and serialised (the GraphQL type's own ``serialize``), which connections nest
where and whether their cursors, counts and page info are selected, and which columns each
level's rows must hold. Each object becomes one compiled function over its rows
(``resolvers.inventory.rowcode``). Argument values are not in the plan; they are read per
request, because variables change them.

Planning is field by field. A field of a planned object that reaches anything without a
registered reader or connection spec (health, cost, metrics, Helm releases, a pod's containers
or node…) becomes a *hole*: the object's other fields still come from the plan, and the hole
alone, with its subtree, is completed by graphql-core on the object the resolvers would have
made from the row (its type's ``from_row``), for every row of the level before any is awaited,
so its dataloaders batch as they do on the resolvers' path (``resolvers.inventory.run``). An
object with holes reads every column, since ``from_row`` does. Only a root field that cannot be
planned at all (no spec, a type without readers, ``@defer``) runs entirely through the
resolvers. Plans are cached per (document text, operation name, values of the variables that
``@skip``/``@include`` read), the only inputs that change the field collection.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from graphql import (
    GraphQLBoolean,
    GraphQLEnumType,
    GraphQLField,
    GraphQLFloat,
    GraphQLID,
    GraphQLInt,
    GraphQLInterfaceType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLSchema,
    GraphQLString,
    GraphQLUnionType,
    OperationDefinitionNode,
    VariableNode,
    is_leaf_type,
    visit,
)
from graphql.language import DirectiveNode, Visitor
from graphql.pyutils import Undefined

from resolvers.inventory.rowcode import (
    Child,
    Constant,
    FromRow,
    Hole,
    Leaf,
    Part,
    Record,
    RowsBuilder,
    Source,
    Unplanned,
    Value,
    compile_rows,
    part_source,
    value_columns,
)
from resolvers.inventory.spec import (
    METADATA_KEY,
    ChildConnection,
    InventorySpec,
    RootConnection,
    RootObject,
    RowReaders,
)

MAX_CACHED_OPERATIONS = 256
_INT_MIN, _INT_MAX = -(2**31), 2**31 - 1
STRAWBERRY_DEFINITION = "strawberry-definition"


@dataclass(frozen=True)
class ArgumentSource:
    """Where a field's arguments come from in the document (read per request)."""

    field_def: GraphQLField
    field_details: Any  # graphql-core's FieldDetails of the field's first node
    strawberry_field: Any


@dataclass(frozen=True)
class HolePlan:
    """A field of a planned object that graphql-core completes (see the module docstring)."""

    key: str
    field_details_list: Any  # graphql-core's FieldDetailsList, as ``execute_field`` takes it


@dataclass(frozen=True)
class PathSteps:
    """How a row's response path goes on from its connection's: the list's key (a field of
    the connection type), the row's index, then the edge's ``node`` key where the rows are
    ``edges { node }`` (``item_key`` None for ``nodes``). Type names are the owners of each
    key, as graphql-core records them in a ``Path``."""

    list_key: str
    connection_type: str
    item_key: str | None = None
    edge_type: str | None = None


@dataclass(eq=False)
class ObjectPlan:
    """One inventory object per row: ``build_rows`` makes the response dicts of a list of
    rows (``resolvers.inventory.rowcode``), given each of ``connections``' finished dicts
    by parent id. ``holes`` are completed on ``model(row)`` afterwards, at each row's path;
    ``needs_paths`` says whether this object's rows or any below them have holes."""

    type_: GraphQLObjectType
    build_rows: RowsBuilder
    connections: list[ConnectionPlan] = field(default_factory=list)
    columns: frozenset[str] | None = None  # what the rows must hold; None: every column
    holes: list[HolePlan] = field(default_factory=list)
    model: Callable[[Any], Any] | None = None
    steps: PathSteps | None = None  # set by the connection that lists it
    needs_paths: bool = False


@dataclass(eq=False)
class ConnectionPlan:
    """A connection: its spec and arguments, its parts in response order, and the object
    plans of its rows (one for ``edges { node }``, one for ``nodes``, as selected)."""

    spec: InventorySpec
    arguments: ArgumentSource
    key: str  # its response key in the parent object (or at the root)
    parts: list[tuple[str, str, Any]] = field(default_factory=list)
    objects: list[ObjectPlan] = field(default_factory=list)
    needs_cursors: bool = False
    needs_count: bool = False

    @property
    def columns(self) -> frozenset[str] | None:
        """The columns its rows' objects build from (None: every column)."""
        found: frozenset[str] = frozenset()
        for obj in self.objects:
            if obj.columns is None:
                return None
            found |= obj.columns
        return found


@dataclass(eq=False)
class RootObjectPlan:
    """A root field answering one object of any planned type (``node``, ``cluster``)."""

    spec: RootObject
    arguments: ArgumentSource
    by_type: dict[str, ObjectPlan | None]


RootPlan = ConnectionPlan | RootObjectPlan


def _leaf(type_: GraphQLOutputType, source: Source) -> Leaf:
    """Serialise as graphql-core completes a leaf, or raise ``Unplanned`` where it would
    report an error (a null in a non-null field, a value the type cannot serialise)."""
    non_null = isinstance(type_, GraphQLNonNull)
    named = type_.of_type if isinstance(type_, GraphQLNonNull) else type_
    serialize = named.serialize  # type: ignore[union-attr]
    is_enum = isinstance(named, GraphQLEnumType)
    # An enum member always serialises to the same name: remembered, not looked up per row.
    names: dict[Any, Any] | None = {} if is_enum else None

    def finish(value: Any) -> Any:
        if value is None:
            if non_null:
                raise Unplanned
            return None
        if names is not None and value in names:
            return names[value]
        out = serialize(value)
        if out is None or out is Undefined:
            raise Unplanned
        if names is not None:
            names[value] = out
        return out

    verbatim = next((kind for scalar, kind in _VERBATIM if named is scalar),
                    "enum" if is_enum else None)
    return Leaf(source, finish, verbatim)


# Values each built-in scalar's ``serialize`` answers unchanged (see rowcode's checks).
_VERBATIM = ((GraphQLString, "str"), (GraphQLID, "str"), (GraphQLBoolean, "bool"),
             (GraphQLInt, "int"), (GraphQLFloat, "float"))


class Planner:
    """Plans root fields for one schema and caches the plans (see the module docstring)."""

    def __init__(self, readers: Mapping[str, RowReaders]) -> None:
        self.readers = readers
        self._plans: OrderedDict[tuple[Any, ...], dict[str, RootPlan | None]] = OrderedDict()
        self._directive_variables: dict[tuple[str, str | None], tuple[str, ...]] = {}

    def root_plan(self, executor: Any, parent_type: GraphQLObjectType,
                  field_details_list: Any, response_key: str) -> RootPlan | None:
        operation: OperationDefinitionNode = executor.operation
        source = operation.loc.source.body if operation.loc is not None else None
        if source is None:
            return None
        name = operation.name.value if operation.name is not None else None
        variables = self._directive_variables.get((source, name))
        if variables is None:
            variables = self._directive_variables[(source, name)] = _directive_variables(
                operation, executor.fragments)
        coerced = executor.variable_values.coerced
        key = (source, name, tuple(coerced.get(v) for v in variables))
        plans = self._plans.get(key)
        if plans is None:
            plans = self._plans[key] = {}
            if len(self._plans) > MAX_CACHED_OPERATIONS:
                self._plans.popitem(last=False)
        if response_key not in plans:
            try:
                plans[response_key] = _Planning(self, executor).root(
                    parent_type, field_details_list, response_key)
            except Unplanned:
                plans[response_key] = None
        return plans[response_key]


def _directive_variables(operation: OperationDefinitionNode, fragments: Any) -> tuple[str, ...]:
    """Names of the variables ``@skip``/``@include`` read anywhere the operation reaches."""
    found: set[str] = set()

    class Directives(Visitor):
        def enter_directive(self, node: DirectiveNode, *_args: Any) -> None:
            if node.name.value in ("skip", "include"):
                for argument in node.arguments or ():
                    if isinstance(argument.value, VariableNode):
                        found.add(argument.value.name.value)

    visit(operation, Directives())
    for fragment in (fragments or {}).values():
        visit(getattr(fragment, "definition", fragment), Directives())
    return tuple(sorted(found))


class _Planning:
    """One planning pass, with the executor whose field collection it borrows."""

    def __init__(self, planner: Planner, executor: Any) -> None:
        self.readers = planner.readers
        self.executor = executor
        self.schema: GraphQLSchema = executor.schema

    def _subfields(self, type_: GraphQLObjectType, field_details_list: Any) -> Any:
        grouped, new_defer_usages, *_ = self.executor.collect_subfields(type_,
                                                                         field_details_list)
        if new_defer_usages:
            raise Unplanned
        return grouped

    def _definition(self, owner: GraphQLObjectType, field_details_list: Any
                    ) -> tuple[GraphQLField, Any, ArgumentSource]:
        first = field_details_list[0]
        if getattr(first, "fragment_variable_values", None) is not None:
            raise Unplanned
        field_def = owner.fields.get(first.node.name.value)
        if field_def is None:  # a root __typename or introspection field
            raise Unplanned
        strawberry_field = (field_def.extensions or {}).get(STRAWBERRY_DEFINITION)
        if strawberry_field is None:
            raise Unplanned
        return field_def, strawberry_field, ArgumentSource(field_def, first, strawberry_field)

    def root(self, parent_type: GraphQLObjectType, field_details_list: Any,
             response_key: str) -> RootPlan:
        field_def, strawberry_field, arguments = self._definition(parent_type,
                                                                  field_details_list)
        spec = strawberry_field.metadata.get(METADATA_KEY)
        if isinstance(spec, ChildConnection | RootConnection):
            return self._connection(spec, arguments, field_def.type, field_details_list,
                                    response_key)
        if isinstance(spec, RootObject):
            named = _unwrap(field_def.type)
            types: list[GraphQLObjectType] = (
                list(self.schema.get_possible_types(named))
                if isinstance(named, GraphQLInterfaceType | GraphQLUnionType) else [named]
            )
            by_type: dict[str, ObjectPlan | None] = {}
            for type_ in types:
                try:
                    by_type[type_.name] = self._object(type_, field_details_list)
                except Unplanned:
                    by_type[type_.name] = None
            return RootObjectPlan(spec, arguments, by_type)
        raise Unplanned

    def _object(self, type_: GraphQLObjectType, field_details_list: Any) -> ObjectPlan:
        readers = self.readers.get(type_.name)
        if readers is None:
            raise Unplanned
        parts: list[tuple[str, Part]] = []
        connections: list[ConnectionPlan] = []
        holes: list[HolePlan] = []
        columns: set[str] | None = {"id"}  # children are asked for by their parent's id
        for key, details in self._subfields(type_, field_details_list).items():
            if details[0].node.name.value == "__typename":
                parts.append((key, Constant(type_.name)))
                continue
            try:
                part = self._field(type_, readers, key, details, connections)
            except Unplanned:
                holes.append(HolePlan(key, details))
                parts.append((key, Hole()))
                continue
            parts.append((key, part))
            if not isinstance(part, Child):
                read_columns = value_columns(part)
                columns = None if columns is None or read_columns is None \
                    else columns | read_columns
        model = None
        if holes:
            definition = (type_.extensions or {}).get(STRAWBERRY_DEFINITION)
            model = getattr(getattr(definition, "origin", None), "from_row", None)
            if model is None:  # no way to make the resolvers' object from a row
                raise Unplanned
            columns = None  # ``from_row`` reads them all
        return ObjectPlan(
            type_, compile_rows(parts, len(connections)), connections,
            None if columns is None else frozenset(columns), holes, model,
            needs_paths=bool(holes) or any(o.needs_paths for c in connections
                                           for o in c.objects))

    def _field(self, type_: GraphQLObjectType, readers: RowReaders, key: str, details: Any,
               connections: list[ConnectionPlan]) -> Value | Child:
        """A field of a planned object as the plan answers it (a connection is appended to
        ``connections``), or ``Unplanned``: it is then a hole."""
        field_def, strawberry_field, arguments = self._definition(type_, details)
        spec = strawberry_field.metadata.get(METADATA_KEY)
        if isinstance(spec, ChildConnection):
            connections.append(self._connection(spec, arguments, field_def.type, details, key))
            return Child(len(connections) - 1)
        read = readers.get(strawberry_field.python_name)
        if read is None or strawberry_field.base_resolver is not None:
            raise Unplanned
        return self._value(field_def.type, details, FromRow(read))

    def _value(self, type_: GraphQLOutputType, field_details_list: Any, source: Source
               ) -> Value:
        """A plain value: a leaf, or an object of resolver-less fields."""
        if is_leaf_type(_unwrap_non_null(type_)):
            return _leaf(type_, source)
        named = _unwrap_non_null(type_)
        if not isinstance(named, GraphQLObjectType):
            raise Unplanned  # lists and abstract types of values are left to the resolvers
        reader = source.reader if isinstance(source, FromRow) else None
        parts: list[tuple[str, Value]] = []
        for key, details in self._subfields(named, field_details_list).items():
            if details[0].node.name.value == "__typename":
                parts.append((key, Constant(named.name)))
                continue
            field_def, strawberry_field, _ = self._definition(named, details)
            if strawberry_field.base_resolver is not None:
                raise Unplanned
            inner = part_source(reader, strawberry_field.python_name)
            parts.append((key, self._value(field_def.type, details, inner)))
        return Record(source, parts, isinstance(type_, GraphQLNonNull))

    def _connection(self, spec: InventorySpec, arguments: ArgumentSource,
                    type_: GraphQLOutputType, field_details_list: Any, key: str
                    ) -> ConnectionPlan:
        connection_type = _unwrap(type_)
        plan = ConnectionPlan(spec, arguments, key)
        node_type = _unwrap(connection_type.fields["edges"].type).fields["node"].type
        node_named = _unwrap(node_type)
        for key, details in self._subfields(connection_type, field_details_list).items():
            name = details[0].node.name.value
            if name == "__typename":
                plan.parts.append((key, "typename", connection_type.name))
            elif name == "totalCount":
                plan.needs_count = True
                plan.parts.append((key, "totalCount", None))
            elif name == "pageInfo":
                info_type = _unwrap(connection_type.fields["pageInfo"].type)
                info = [(k, d[0].node.name.value)
                        for k, d in self._subfields(info_type, details).items()]
                plan.needs_cursors |= any(n in ("startCursor", "endCursor") for _, n in info)
                plan.parts.append((key, "pageInfo", (info, info_type.name)))
            elif name == "nodes":
                nodes = self._object(node_named, details)
                nodes.steps = PathSteps(key, connection_type.name)
                plan.objects.append(nodes)
                plan.parts.append((key, "nodes", nodes))
            elif name == "edges":
                plan.parts.append((key, "edges", self._edges(connection_type, details, plan, key)))
            else:
                raise Unplanned
        return plan

    def _edges(self, connection_type: GraphQLObjectType, field_details_list: Any,
               plan: ConnectionPlan, edges_key: str) -> list[tuple[str, str, Any]]:
        edge_type = _unwrap(connection_type.fields["edges"].type)
        parts: list[tuple[str, str, Any]] = []
        for key, details in self._subfields(edge_type, field_details_list).items():
            name = details[0].node.name.value
            if name == "__typename":
                parts.append((key, "typename", edge_type.name))
            elif name == "cursor":
                plan.needs_cursors = True
                parts.append((key, "cursor", None))
            elif name == "node":
                node = self._object(_unwrap(edge_type.fields["node"].type), details)
                node.steps = PathSteps(edges_key, connection_type.name, key, edge_type.name)
                plan.objects.append(node)
                parts.append((key, "node", node))
            else:
                raise Unplanned
        return parts


def _unwrap_non_null(type_: Any) -> Any:
    return type_.of_type if isinstance(type_, GraphQLNonNull) else type_


def _unwrap(type_: Any) -> Any:
    """The named type inside non-null and list wrappers."""
    while isinstance(type_, GraphQLNonNull | GraphQLList):
        type_ = type_.of_type
    return type_
