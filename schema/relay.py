"""Relay building blocks: the ``Node`` interface, global IDs and cursor connections."""

from __future__ import annotations

import base64
import binascii
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

import strawberry

from resolvers.errors import BadUserInput
from resolvers.pagination import Page

T = TypeVar("T")


def to_global_id(type_name: str, db_id: uuid.UUID | str) -> strawberry.ID:
    return strawberry.ID(base64.b64encode(f"{type_name}:{db_id}".encode()).decode())


def parse_global_id(global_id: str) -> tuple[str, uuid.UUID] | None:
    """(type name, database id) of a global ID, or None if it is not one of ours."""
    try:
        type_name, _, raw = base64.b64decode(global_id, validate=True).decode().partition(":")
        return type_name, uuid.UUID(raw)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None


def from_global_id(global_id: str, *, field: str = "id") -> tuple[str, uuid.UUID]:
    """(type name, database id) of a global ID; a malformed one is a BAD_USER_INPUT."""
    parsed = parse_global_id(global_id)
    if parsed is None:
        raise BadUserInput(field, "not a valid ID")
    return parsed


def expect_global_id(global_id: str, type_name: str, *, field: str = "id") -> uuid.UUID:
    found, db_id = from_global_id(global_id, field=field)
    if found != type_name:
        raise BadUserInput(field, f"expected a {type_name} ID")
    return db_id


@strawberry.interface(description="An object with a globally unique ID (Relay).")
class Node:
    id: strawberry.ID


@strawberry.type
class PageInfo:
    has_next_page: bool
    has_previous_page: bool
    start_cursor: str | None
    end_cursor: str | None


@strawberry.type
class Edge(Generic[T]):
    cursor: str
    node: T


@strawberry.type
class Connection(Generic[T]):
    """A page of a list. ``totalCount`` is counted only when asked for."""

    edges: list[Edge[T]]
    page_info: PageInfo
    count: strawberry.Private[Callable[[], Awaitable[int]]]

    @strawberry.field(description="Nodes of this page, without the edges (a shortcut).")
    def nodes(self) -> list[T]:
        return [edge.node for edge in self.edges]

    @strawberry.field(description="How many items match the filter, across all pages.")
    async def total_count(self) -> int:
        return await self.count()


def connection(
    page: Page, count: Callable[[], Awaitable[int]], to_node: Callable[[Any], T]
) -> Connection[T]:
    """A Relay connection from one keyset page of rows."""
    edges = [Edge(cursor=c, node=to_node(r)) for r, c in zip(page.rows, page.cursors, strict=True)]
    return Connection(
        edges=edges,
        page_info=PageInfo(
            has_next_page=page.has_next_page,
            has_previous_page=page.has_previous_page,
            start_cursor=page.cursors[0] if page.cursors else None,
            end_cursor=page.cursors[-1] if page.cursors else None,
        ),
        count=count,
    )
