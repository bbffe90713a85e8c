"""Cursor pagination: keyset pages with signed, tenant-bound cursors.

A cursor carries the sort value and id of the last row seen, plus an HMAC over the
organization id and the connection's kind; a cursor that was edited, or minted for another
organization or another list, is refused instead of silently paging somewhere else.

Sort values keep their Python type through the cursor: each one is stored with a type tag
(``_CURSOR_TYPES``) and decoded back to the same type, because asyncpg binds parameters by type
and refuses a string where ``$n::timestamptz`` expects a datetime. A sort key of a new type
fails loudly when its first cursor is minted, not on some client's second page.
"""

from __future__ import annotations

import base64
import decimal
import hashlib
import hmac
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import orjson

from resolvers.errors import BadUserInput
from resolvers.sql import Params

_MAC_BYTES = 16


def check_first(first: int, maximum: int, *, field: str = "first") -> int:
    if first < 0 or first > maximum:
        raise BadUserInput(field, f"must be between 0 and {maximum}")
    return first


@dataclass(frozen=True)
class _CursorType:
    tag: str
    python_type: type
    encode: Callable[[Any], str | int | float | bool]
    decode: Callable[[Any], Any]


# Order matters where types nest: bool before int (a bool is an int), datetime before date.
_CURSOR_TYPES = (
    _CursorType("b", bool, bool, bool),
    _CursorType("i", int, int, int),
    _CursorType("f", float, float, float),
    _CursorType("s", str, str, str),
    _CursorType("t", datetime, datetime.isoformat, datetime.fromisoformat),
    _CursorType("d", date, date.isoformat, date.fromisoformat),
    _CursorType("n", decimal.Decimal, str, decimal.Decimal),
    _CursorType("u", uuid.UUID, str, uuid.UUID),
)
_BY_TAG = {t.tag: t for t in _CURSOR_TYPES}


def _tagged(value: Any) -> list[Any]:
    if value is None:
        return ["z", None]
    for cursor_type in _CURSOR_TYPES:
        if isinstance(value, cursor_type.python_type):
            return [cursor_type.tag, cursor_type.encode(value)]
    raise TypeError(f"no cursor encoding for sort values of type {type(value).__name__}")


def _untagged(item: Any) -> Any:
    """The value ``_tagged`` stored; ValueError for anything it could not have written."""
    if not isinstance(item, list) or len(item) != 2:
        raise ValueError("not a tagged cursor value")
    tag, stored = item
    if tag == "z" and stored is None:
        return None
    cursor_type = _BY_TAG.get(tag) if isinstance(tag, str) else None
    if cursor_type is None:
        raise ValueError("unknown cursor value tag")
    return cursor_type.decode(stored)


def encode_cursor(key: bytes, org_id: uuid.UUID, kind: str, values: Sequence[Any]) -> str:
    payload = orjson.dumps([kind, [_tagged(v) for v in values]])
    mac = hmac.new(key, org_id.bytes + payload, hashlib.sha256).digest()[:_MAC_BYTES]
    return base64.urlsafe_b64encode(payload + mac).decode().rstrip("=")


def decode_cursor(
    key: bytes, org_id: uuid.UUID, kind: str, cursor: str, *, field: str = "after"
) -> list[Any]:
    invalid = BadUserInput(field, "invalid cursor")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
    except (ValueError, TypeError):
        raise invalid from None
    payload, mac = raw[:-_MAC_BYTES], raw[-_MAC_BYTES:]
    expected = hmac.new(key, org_id.bytes + payload, hashlib.sha256).digest()[:_MAC_BYTES]
    if len(raw) <= _MAC_BYTES or not hmac.compare_digest(mac, expected):
        raise invalid
    try:
        found_kind, tagged = orjson.loads(payload)
        if found_kind != kind or not isinstance(tagged, list):
            raise invalid
        return [_untagged(item) for item in tagged]
    except (ValueError, TypeError, decimal.InvalidOperation):
        # Signed by us but not in this format: minted by an older release of the server.
        raise invalid from None


@dataclass(frozen=True)
class SortKey:
    """An ORDER BY expression, its SQL type (to cast cursor values back) and direction."""

    expression: str
    sql_type: str
    descending: bool = False


def keyset_clause(keys: Sequence[SortKey], values: Sequence[Any], params: Params) -> str:
    """Rows strictly after ``values`` in the order ``keys`` define (mixed directions allowed)."""
    if len(values) != len(keys):
        raise BadUserInput("after", "invalid cursor")
    ors = []
    for i, key in enumerate(keys):
        ands = [
            f"{k.expression} = {params.add(values[j])}::{k.sql_type}"
            for j, k in enumerate(keys[:i])
        ]
        op = "<" if key.descending else ">"
        ands.append(f"{key.expression} {op} {params.add(values[i])}::{key.sql_type}")
        ors.append("(" + " AND ".join(ands) + ")")
    return " OR ".join(ors)


def order_by(keys: Sequence[SortKey]) -> str:
    return ", ".join(f"{k.expression} {'DESC' if k.descending else 'ASC'}" for k in keys)


@dataclass
class Page:
    """One page of rows plus what a Relay connection needs to describe it."""

    rows: list[Any]
    cursors: list[str]
    has_next_page: bool
    has_previous_page: bool


async def fetch_page(
    conn: Any,
    *,
    sql: str,
    clauses: list[str],
    params: Params,
    keys: Sequence[SortKey],
    first: int,
    after: str | None,
    cursor_key: bytes,
    org_id: uuid.UUID,
    kind: str,
) -> Page:
    """Run ``sql`` (a SELECT with a ``{where}`` slot) as one keyset page.

    Fetches ``first + 1`` rows to learn whether another page follows without counting.
    """
    clauses = list(clauses)
    if after is not None:
        values = decode_cursor(cursor_key, org_id, kind, after)
        clauses.append(keyset_clause(keys, values, params))
    limit = params.add(first + 1)
    query = f"{sql.format(where=' AND '.join(f'({c})' for c in clauses) or 'true')} " \
            f"ORDER BY {order_by(keys)} LIMIT {limit}"
    rows = list(await conn.fetch(query, *params.values))
    has_next = len(rows) > first
    rows = rows[:first]
    cursors = [
        encode_cursor(cursor_key, org_id, kind, [row[f"_k{i}"] for i in range(len(keys))])
        for row in rows
    ]
    return Page(rows=rows, cursors=cursors, has_next_page=has_next,
                has_previous_page=after is not None)


def sort_key_columns(keys: Sequence[SortKey]) -> str:
    """Select-list items exposing each sort value as ``_k0``, ``_k1``… for the cursor."""
    return ", ".join(f"{k.expression} AS _k{i}" for i, k in enumerate(keys))
