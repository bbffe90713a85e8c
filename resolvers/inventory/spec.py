"""What the schema tells the planner about its inventory types and connection fields.

The schema types build themselves from rows through the same ``RowReaders`` the planner reads
fields with (``read_row``), so the two paths cannot drift apart on how a column becomes a
field. Connection fields carry a ``ChildConnection``/``RootConnection``/``RootObject`` in their
Strawberry metadata: the relation they list and how their arguments become a page request.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from resolvers.graph_reads import PageArgs
from resolvers.graph_sql import Relation
from resolvers.pagination import Page

RowReaders = Mapping[str, Callable[[Any], Any]]
"""A type's Python attribute names → how each is read from its row."""

METADATA_KEY = "fleetgraph.inventory"


def read_row(readers: RowReaders, row: Any) -> dict[str, Any]:
    """The keyword arguments that build a type from ``row``."""
    return {name: read(row) for name, read in readers.items()}


@dataclass(frozen=True, slots=True)
class Column:
    """A reader of one column, as stored or through ``convert`` (a pure function of the
    stored value). Declared rather than written as a lambda so the planner can read the
    column itself, inline, and remember what a repeated value (an enum's) becomes."""

    name: str
    convert: Callable[[Any], Any] | None = None

    def __call__(self, row: Any) -> Any:
        value = row[self.name]
        return value if self.convert is None else self.convert(value)


@dataclass(frozen=True, slots=True)
class Composite:
    """A reader of a value object (``ResourceAmounts``, ``DeploymentReplicas``) made of
    columns: ``build(**{attribute: part(row)})``. The planner reads the selected attributes
    straight from their columns and never builds the object; the resolvers build it."""

    build: Callable[..., Any]
    parts: Mapping[str, Column | Composite]

    def __call__(self, row: Any) -> Any:
        return self.build(**{name: part(row) for name, part in self.parts.items()})


def reader_columns(reader: Callable[[Any], Any]) -> frozenset[str] | None:
    """The columns ``reader`` reads, or None when it does not say (it may read any)."""
    if isinstance(reader, Column):
        return frozenset((reader.name,))
    if isinstance(reader, Composite):
        found: set[str] = set()
        for part in reader.parts.values():
            columns = reader_columns(part)
            if columns is None:
                return None
            found |= columns
        return frozenset(found)
    return None


def record(build: Callable[..., Any], **parts: Column | Composite) -> Composite:
    """A reader of a value object made of columns (see ``Composite``)."""
    return Composite(build, parts)


def column(name: str, convert: Callable[[Any], Any] | None = None) -> Column:
    """A reader of one column (see ``Column``)."""
    return Column(name, convert)


@dataclass(frozen=True)
class ChildConnection:
    """An inventory connection under a parent row (or under the organization)."""

    relation: Relation
    page_args: Callable[..., PageArgs]  # the field's (converted) arguments → the page asked


@dataclass(frozen=True)
class RootConnection:
    """A root connection with its own read (``clusters``): a page with its cursors, and a
    count that runs only when ``totalCount`` is selected."""

    load: Callable[..., Awaitable[tuple[Page, Callable[[], Awaitable[int]]]]]


@dataclass(frozen=True)
class RootObject:
    """A root field answering one object: ``load`` gives its type name and row, or None.
    ``null_when_missing``: None is a null answer (``node``); otherwise the resolvers answer it
    (``cluster`` raises NOT_FOUND, which they already do)."""

    load: Callable[..., Awaitable[tuple[str, Any] | None]]
    null_when_missing: bool


InventorySpec = ChildConnection | RootConnection | RootObject


def spec_metadata(spec: InventorySpec) -> dict[str, Any]:
    """Strawberry field metadata that marks a field as planned by ``spec``."""
    return {METADATA_KEY: spec}
