"""A plan's objects turned into Python functions that build a whole list of rows at once.

The planned path spent most of a large request calling small closures: per field of every
row, one to read the column, one to serialise it, one to compose the two, and a value object
(``ResourceAmounts``) built only to be taken apart again. Here each object plan becomes the
source of one function, compiled once when the operation is planned: a loop over the rows
whose body reads each selected column inline (``row['name']``), serialises it with the
GraphQL type's own ``serialize`` unless the value is already what that would answer (a
``str`` for ``String``, an ``int`` in range for ``Int``…), and writes the response's dict
literal. Value objects declared as ``Composite`` are never built; their selected attributes
are read from their columns. What a ``Column`` converter makes of a repeated stored value
(an enum's) is remembered, bounded.

Only names made here and ``repr`` of strings appear in the source; every value the code
needs (readers, serialisers, caches) is passed in as a constant of its namespace, so nothing
from a document or a row ever becomes code.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from resolvers.inventory.spec import Column, Composite, reader_columns

RowsBuilder = Callable[..., list[dict[str, Any]]]
"""``build(rows, *children)``: the rows' response dicts; ``children[i]`` maps a row's id to
its ``i``-th connection's finished dict."""

MAX_REMEMBERED = 64  # distinct stored values whose converted, serialised form is kept
_MISSING = object()


class Unplanned(Exception):
    """The planned path cannot answer this exactly; the resolvers answer it instead."""


# --- what the planner says about each selected field ---------------------------------------


@dataclass(frozen=True)
class FromRow:
    """A value read from the row by a reader (``Column``, ``Composite`` or any callable)."""

    reader: Callable[[Any], Any]


@dataclass(frozen=True)
class FromAttribute:
    """A value read as an attribute of the enclosing value object."""

    name: str


Source = FromRow | FromAttribute


@dataclass(frozen=True)
class Leaf:
    """A scalar or enum: its source, then the type's serialisation (``finish``), skipped
    for values of type ``verbatim`` (and, for ``Int``, in range; for ``Float``, finite)."""

    source: Source
    finish: Callable[[Any], Any]
    verbatim: str | None  # "str", "bool", "int", "float", "enum" or None


@dataclass(frozen=True)
class Constant:
    value: Any


@dataclass(frozen=True)
class Record:
    """A value object's selected fields, in response order."""

    source: Source
    parts: Sequence[tuple[str, Value]]
    non_null: bool


Value = Leaf | Constant | Record


@dataclass(frozen=True)
class Child:
    """A connection nested in the object, finished elsewhere and found by the row's id."""

    index: int


@dataclass(frozen=True)
class Hole:
    """A field the plan leaves to graphql-core's own execution. The builder writes None under
    its key, so the key keeps its place in the response's order; the run then replaces it
    with what execution completes for the field on the row's model object."""


Part = Value | Child | Hole


# --- turning them into code -----------------------------------------------------------------


@dataclass
class _Source:
    """The function being written: its lines and the namespace its constants live in."""

    lines: list[str] = field(default_factory=list)
    namespace: dict[str, Any] = field(default_factory=dict)
    names: int = 0

    def constant(self, value: Any) -> str:
        name = f"k{len(self.namespace)}"
        self.namespace[name] = value
        return name

    def local(self) -> str:
        self.names += 1
        return f"v{self.names}"

    def emit(self, depth: int, line: str) -> None:
        self.lines.append("    " * depth + line)


def _unplanned() -> None:
    """Raised from built code: a null where the schema promises a value. The resolvers then
    answer the field and report the error where graphql-core would."""
    raise Unplanned


def _remembering(convert: Callable[[Any], Any], finish: Callable[[Any], Any]
                 ) -> tuple[dict[Any, Any], Callable[[Any], Any]]:
    cache: dict[Any, Any] = {}

    def fill(stored: Any) -> Any:
        out = finish(convert(stored))
        if len(cache) < MAX_REMEMBERED:
            cache[stored] = out
        return out

    return cache, fill


def _raw(code: _Source, source: Source, holder: str | None) -> str:
    """An expression for ``source``'s value before serialisation."""
    if isinstance(source, FromAttribute):
        if holder is None or not source.name.isidentifier():
            raise Unplanned
        return f"{holder}.{source.name}"
    reader = source.reader
    if isinstance(reader, Column):
        stored = f"row[{reader.name!r}]"
        if reader.convert is None:
            return stored
        return f"{code.constant(reader.convert)}({stored})"
    return f"{code.constant(reader)}(row)"


_CHECKS = {
    "str": "type({v}) is not str",
    "bool": "type({v}) is not bool",
    "int": "type({v}) is not int or not -2147483648 <= {v} <= 2147483647",
    "float": "type({v}) is not float or not {isfinite}({v})",
}


def _leaf(code: _Source, leaf: Leaf, holder: str | None, depth: int) -> str:
    out = code.local()
    finish = code.constant(leaf.finish)
    reader = leaf.source.reader if isinstance(leaf.source, FromRow) else None
    if leaf.verbatim == "enum" and isinstance(reader, Column) and reader.convert is not None:
        cache, fill = _remembering(reader.convert, leaf.finish)
        stored = code.local()
        code.emit(depth, f"{stored} = row[{reader.name!r}]")
        code.emit(depth, f"{out} = {code.constant(cache)}.get({stored}, {code.constant(_MISSING)})")
        code.emit(depth, f"if {out} is {code.constant(_MISSING)}:")
        code.emit(depth + 1, f"{out} = {code.constant(fill)}({stored})")
        return out
    code.emit(depth, f"{out} = {_raw(code, leaf.source, holder)}")
    check = _CHECKS.get(leaf.verbatim or "")
    if check is None:
        code.emit(depth, f"{out} = {finish}({out})")
    else:
        code.emit(depth, f"if {check.format(v=out, isfinite=code.constant(math.isfinite))}:")
        code.emit(depth + 1, f"{out} = {finish}({out})")
    return out


def _dict(code: _Source, parts: Sequence[tuple[str, Part]], holder: str | None, depth: int) -> str:
    items = []
    for key, part in parts:
        if isinstance(part, Child):
            items.append(f"{key!r}: c{part.index}[row['id']]")
        elif isinstance(part, Hole):
            items.append(f"{key!r}: None")
        else:
            items.append(f"{key!r}: {_value(code, part, holder, depth)}")
    return "{" + ", ".join(items) + "}"


def _value(code: _Source, value: Value, holder: str | None, depth: int) -> str:
    if isinstance(value, Constant):
        return code.constant(value.value)
    if isinstance(value, Leaf):
        return _leaf(code, value, holder, depth)
    if isinstance(value.source, FromRow) and isinstance(value.source.reader, Composite):
        return _dict(code, value.parts, None, depth)  # its parts read the row themselves
    out, obj = code.local(), code.local()
    code.emit(depth, f"{obj} = {_raw(code, value.source, holder)}")
    code.emit(depth, f"if {obj} is None:")
    if value.non_null:
        code.emit(depth + 1, f"{code.constant(_unplanned)}()")
    code.emit(depth + 1, f"{out} = None")
    code.emit(depth, "else:")
    code.emit(depth + 1, f"{out} = {_dict(code, value.parts, obj, depth + 1)}")
    return out


def compile_rows(parts: Sequence[tuple[str, Part]], children: int) -> RowsBuilder:
    """The function that builds every row of an object plan (see ``RowsBuilder``)."""
    code = _Source()
    arguments = "".join(f", c{i}" for i in range(children))
    code.emit(0, f"def build(rows{arguments}):")
    code.emit(1, "out = []")
    code.emit(1, "append = out.append")
    code.emit(1, "for row in rows:")
    body = _dict(code, parts, None, 2)
    code.emit(2, f"append({body})")
    code.emit(1, "return out")
    exec(compile("\n".join(code.lines), "<inventory plan>", "exec"), code.namespace)
    built: RowsBuilder = code.namespace["build"]
    return built


def part_source(reader: Callable[[Any], Any] | None, name: str) -> Source:
    """Where a value object's attribute ``name`` comes from, given the object's reader."""
    if isinstance(reader, Composite):
        part = reader.parts.get(name)
        if part is None:
            raise Unplanned
        return FromRow(part)
    return FromAttribute(name)


def value_columns(value: Value) -> frozenset[str] | None:
    """The columns building ``value`` reads: a value object declared as ``Composite`` reads
    only its selected parts' columns. None when a reader does not say (it may read any)."""
    if isinstance(value, Constant) or isinstance(value.source, FromAttribute):
        return frozenset()
    reader = value.source.reader
    if isinstance(value, Record) and isinstance(reader, Composite):
        found: frozenset[str] = frozenset()
        for _, part in value.parts:
            columns = value_columns(part)
            if columns is None:
                return None
            found |= columns
        return found
    return reader_columns(reader)
