"""What our columns can hold, and row values made to fit them before a flush.

A flush is one transaction: a single value PostgreSQL or asyncpg refuses fails all of it, and
the retry fails the same way, so one odd object would stop its cluster's sync until it went
away. Valid Kubernetes objects do produce such values: a pod whose two containers each request
``memory: 5Ei`` sums past int64; a ``creationTimestamp`` of ``0001-01-01T00:00:00+01:00``
falls before year 1 once in UTC (Python's datetime, hence asyncpg, cannot hold that, though
PostgreSQL could); a very long label value in an indexed column (``team``) exceeds what a
B-tree entry holds; a NUL is refused in text and jsonb alike.

So every value is checked against its column as the catalog describes it (type, NOT NULL,
``numeric(p, s)``, the B-tree indexes a text column is in) and, when it does not fit:

- a number is clamped into the column's range (int64 to ±2^63, ``numeric(p, s)`` to its
  precision, unconstrained ``numeric`` to PostgreSQL's 131072 digits: past them asyncpg and
  PostgreSQL silently store 0);
- a NUL is dropped from text and from every string inside a jsonb document;
- anything else is stored as null (a NOT NULL jsonb column gets its empty value), and if the
  column is NOT NULL and part of the object's identity (``uid``, ``name``, ``created_at``) the
  object is not written at all: :class:`Unstorable`.

Each change is returned as an :class:`Adjustment`, which the writer logs per object (kind,
namespace, name) and counts in :class:`FitStats`.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import asyncpg
import orjson

from sync.quantity import EXACT

__all__ = [
    "Adjustment",
    "Column",
    "FitStats",
    "RowFitter",
    "Unstorable",
    "fit_record",
    "fit_value",
    "load_columns",
]

_INTEGER_RANGES = {"int2": (-(2**15), 2**15 - 1), "int4": (-(2**31), 2**31 - 1),
                   "int8": (-(2**63), 2**63 - 1)}
# PostgreSQL's numeric: up to 131072 digits before the decimal point, 16383 after.
_NUMERIC_INTEGER_DIGITS, _NUMERIC_SCALE = 131072, 16383
# A B-tree entry holds at most 2704 bytes (a third of a page); the rest of an entry's columns
# are fixed-width (uuid, timestamptz), so text columns share a little less.
_BTREE_TEXT_BUDGET = 2600
# orjson refuses to nest deeper than 254; documents are cut off below that.
_JSON_DEPTH = 200
_INT64 = _INTEGER_RANGES["int8"]


@dataclass(frozen=True, slots=True)
class Column:
    """One column as the catalog describes it."""

    name: str
    type: str  # pg_type.typname: int4, int8, numeric, text, jsonb, timestamptz, bool, ...
    not_null: bool
    numeric_precision: int | None = None  # numeric(p, s); None when unconstrained
    numeric_scale: int | None = None
    text_bytes: int | None = None  # longest text a B-tree index on it can hold
    empty_json: str | None = None  # what a NOT NULL jsonb column gets instead of null


@dataclass(frozen=True, slots=True)
class Adjustment:
    """One value changed to fit: ``action`` is ``clamped`` or ``nulled``."""

    column: str
    action: str
    detail: str

    def __str__(self) -> str:
        return f"{self.column} {self.action} ({self.detail})"


class Unstorable(Exception):
    """A value that cannot be stored in a NOT NULL column the object cannot do without."""

    def __init__(self, column: str, detail: str) -> None:
        super().__init__(f"{column}: {detail}")
        self.column = column
        self.detail = detail


@dataclass
class FitStats:
    """Running totals of what had to change for objects to fit (what the logs detail)."""

    values_clamped: int = 0
    values_nulled: int = 0
    objects_adjusted: int = 0
    objects_skipped: int = 0

    def add(self, other: FitStats) -> None:
        self.values_clamped += other.values_clamped
        self.values_nulled += other.values_nulled
        self.objects_adjusted += other.objects_adjusted
        self.objects_skipped += other.objects_skipped

    def count(self, adjustments: Iterable[Adjustment]) -> None:
        changed = False
        for adjustment in adjustments:
            changed = True
            if adjustment.action == "clamped":
                self.values_clamped += 1
            else:
                self.values_nulled += 1
        self.objects_adjusted += changed


# For each column: its type, NOT NULL, typmod, default, and - for text in B-tree indexes - the
# bytes it may take: the budget shared by the index's text columns, the tightest index winning.
_CATALOG = f"""
SELECT c.relname AS table_name, a.attname AS name, t.typname AS type, a.attnotnull AS not_null,
       a.atttypmod AS typmod, pg_get_expr(d.adbin, d.adrelid) AS default_expr,
       (SELECT min({_BTREE_TEXT_BUDGET} / NULLIF((
                 SELECT count(*) FROM unnest(i.indkey) k
                   JOIN pg_attribute ka ON ka.attrelid = i.indrelid AND ka.attnum = k
                   JOIN pg_type kt ON kt.oid = ka.atttypid
                  WHERE kt.typcategory = 'S'), 0))
          FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
          JOIN pg_am am ON am.oid = ic.relam
         WHERE i.indrelid = c.oid AND am.amname = 'btree' AND a.attnum = ANY(i.indkey))
         AS text_bytes
  FROM pg_class c
  JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
  JOIN pg_type t ON t.oid = a.atttypid
  LEFT JOIN pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum
 WHERE c.oid = ANY(SELECT to_regclass(n) FROM unnest($1::text[]) n)
"""


async def load_columns(
    conn: asyncpg.Connection, tables: Iterable[str]
) -> dict[str, dict[str, Column]]:
    """The columns of ``tables``, by table then column name, read from the catalog."""
    columns: dict[str, dict[str, Column]] = {}
    for r in await conn.fetch(_CATALOG, list(tables)):
        precision = scale = None
        if r["type"] == "numeric" and r["typmod"] >= 4:
            precision, scale = (r["typmod"] - 4) >> 16, (r["typmod"] - 4) & 0xFFFF
        empty = None
        if r["type"] in ("json", "jsonb") and r["not_null"]:
            empty = "[]" if "'[]'" in (r["default_expr"] or "") else "{}"
        columns.setdefault(r["table_name"], {})[r["name"]] = Column(
            name=r["name"], type=r["type"], not_null=r["not_null"], numeric_precision=precision,
            numeric_scale=scale, text_bytes=r["text_bytes"], empty_json=empty,
        )
    return columns


def _short(value: object) -> str:
    text = str(value)
    return text if len(text) <= 40 else f"{text[:20]}…{text[-8:]} ({len(text)} characters)"


def _gone(column: Column, detail: str, replacement: Any = None) -> tuple[Any, Adjustment]:
    """Null (or the column's empty value) instead; for a NOT NULL column without one, the
    object cannot be stored."""
    if replacement is None and column.not_null:
        raise Unstorable(column.name, detail)
    return replacement, Adjustment(column.name, "nulled", detail)


def _fit_integer(column: Column, value: Any) -> tuple[Any, Adjustment | None]:
    low, high = _INTEGER_RANGES[column.type]
    if isinstance(value, Decimal):
        if not value.is_finite():
            return _gone(column, f"{value} is not a number it can hold")
        # past the range the exact figure does not matter, and 1E+2000000000 must stay short
        value = int(value) if value.copy_abs() <= high else (high + 1 if value > 0 else low - 1)
    if low <= value <= high:
        return value, None
    clamped = high if value > high else low
    return clamped, Adjustment(column.name, "clamped", f"{_short(value)} to {clamped}")


@functools.lru_cache(maxsize=16)
def _numeric_limit(digits: int, scale: int) -> Decimal:
    """The largest magnitude with ``digits`` before the point and ``scale`` after."""
    return EXACT.subtract(Decimal(1).scaleb(digits), Decimal(1).scaleb(-scale))


def _fit_numeric(column: Column, value: Any) -> tuple[Any, Adjustment | None]:
    number = value if isinstance(value, Decimal) else Decimal(value)
    if not number.is_finite():
        return _gone(column, f"{number} is not a number it can hold")
    if column.numeric_precision is None:
        digits, scale = _NUMERIC_INTEGER_DIGITS, _NUMERIC_SCALE
    else:
        scale = column.numeric_scale or 0
        digits = column.numeric_precision - scale
    fitted = number
    exponent = number.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -scale:
        # what PostgreSQL rounds to on the way in, so that the range check sees it too
        fitted = number.quantize(Decimal(1).scaleb(-scale), rounding=ROUND_HALF_UP, context=EXACT)
    if fitted != 0 and fitted.adjusted() >= digits:
        # unconstrained: the largest whole number (all 131072 digits, no fraction after them)
        limit = _numeric_limit(digits, 0 if column.numeric_precision is None else scale)
        fitted = limit if fitted > 0 else limit.copy_negate()
        return fitted, Adjustment(column.name, "clamped", f"{_short(number)} to {_short(fitted)}")
    if fitted is not number and column.numeric_precision is None:
        return fitted, Adjustment(column.name, "clamped", f"rounded to {scale} decimals")
    return (value if fitted is number else fitted), None


def _fit_text(column: Column, value: Any) -> tuple[Any, Adjustment | None]:
    adjustment = None
    if not isinstance(value, str):
        value, adjustment = str(value), Adjustment(column.name, "clamped", "written as text")
    if "\x00" in value:
        value = value.replace("\x00", "")
        adjustment = Adjustment(column.name, "clamped", "NUL characters dropped")
    limit = column.text_bytes
    if limit is not None and len(value) * 4 > limit and len(value.encode()) > limit:
        return _gone(column, f"{len(value.encode())} bytes, more than its index holds ({limit})")
    return value, adjustment


def _fit_time(column: Column, value: Any) -> tuple[Any, Adjustment | None]:
    if not isinstance(value, datetime) or (value.tzinfo is not None and 1 < value.year < 9999):
        return value, None
    try:
        value.astimezone(UTC)
    except (OverflowError, ValueError):
        # 0001-01-01T00:00:00+01:00 is year 0 in UTC: Python, and so asyncpg, cannot hold it
        return _gone(column, f"{value.isoformat()} is outside the years 1-9999 in UTC")
    return value, None


def _sanitized(value: Any, depth: int = 0) -> Any:
    """``value`` with what jsonb or orjson refuses taken out: NULs, integers past int64
    (clamped), strings that are not valid UTF-8, nesting deeper than ``_JSON_DEPTH``."""
    if isinstance(value, str):
        return value.replace("\x00", "").encode("utf-8", "replace").decode()
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return max(_INT64[0], min(_INT64[1], value))
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if depth >= _JSON_DEPTH:
        return None
    if isinstance(value, Mapping):
        return {_sanitized(str(k)): _sanitized(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_sanitized(v, depth + 1) for v in value]
    return str(value)


def _fit_json(column: Column, value: Any) -> tuple[Any, Adjustment | None]:
    """jsonb travels as text (see the writer's ``_stage``): encoded here, where a failure can
    still be mended."""
    try:
        text = orjson.dumps(value).decode()
    except (TypeError, orjson.JSONEncodeError):
        text = None
    if text is not None and "\\u0000" not in text:
        return text, None
    try:
        mended = orjson.dumps(_sanitized(value)).decode()
    except (TypeError, orjson.JSONEncodeError):
        return _gone(column, "a document jsonb cannot hold", column.empty_json)
    why = "NUL characters dropped" if text is not None else "values jsonb cannot hold dropped"
    return mended, Adjustment(column.name, "clamped", why)


_FITTERS: dict[str, Callable[[Column, Any], tuple[Any, Adjustment | None]]] = {
    **dict.fromkeys(_INTEGER_RANGES, _fit_integer),
    "numeric": _fit_numeric,
    "text": _fit_text,
    "varchar": _fit_text,
    "timestamptz": _fit_time,
    "timestamp": _fit_time,
    "json": _fit_json,
    "jsonb": _fit_json,
}


def fit_value(column: Column, value: Any) -> tuple[Any, Adjustment | None]:
    """``value`` as ``column`` can store it, and what had to change (None: nothing).

    JSON columns come back encoded (text), ready for COPY. Raises :class:`Unstorable`."""
    if value is None:
        return None, None
    fitter = _FITTERS.get(column.type)
    if fitter is None or (isinstance(value, bool) and column.type not in ("json", "jsonb")):
        return value, None
    return fitter(column, value)


_Check = Callable[[Any], bool]


def _passes(column: Column) -> _Check | None:
    """A cheap test that a value needs no fitting (the common case, run on every value of
    every row of every flush); None where no value ever needs it. A value that fails the test
    goes through :func:`fit_value`."""
    if column.type in _INTEGER_RANGES:
        low, high = _INTEGER_RANGES[column.type]
        return lambda v: type(v) is int and low <= v <= high  # bool is no int here
    if column.type in ("text", "varchar"):
        if column.text_bytes is None:
            return lambda v: type(v) is str and "\x00" not in v
        quarter = column.text_bytes // 4  # a character is at most 4 bytes in UTF-8
        return lambda v: type(v) is str and len(v) <= quarter and "\x00" not in v
    if column.type in ("timestamptz", "timestamp"):
        return lambda v: isinstance(v, datetime) and v.tzinfo is not None and 1 < v.year < 9999
    if column.type in _FITTERS:
        return lambda v: False  # numeric and json: always through fit_value
    return None


class RowFitter:
    """Fits rows of one table for COPY: ``names`` are the record's columns, in order."""

    def __init__(self, columns: Mapping[str, Column], names: Iterable[str]) -> None:
        self._names = tuple(names)
        self._checks = [
            (i, column, passes)
            for i, name in enumerate(self._names)
            if (column := columns.get(name)) is not None and (passes := _passes(column))
        ]

    def fit(self, row: Mapping[str, Any]) -> tuple[tuple[Any, ...], list[Adjustment]]:
        """The COPY record of ``row``, every value fitted, and what changed; raises
        :class:`Unstorable`."""
        record = list(map(row.get, self._names))
        adjustments: list[Adjustment] = []
        for i, column, passes in self._checks:
            value = record[i]
            if value is not None and not passes(value):
                record[i], adjustment = fit_value(column, value)
                if adjustment is not None:
                    adjustments.append(adjustment)
        return tuple(record), adjustments


def fit_record(
    columns: Mapping[str, Column], names: Iterable[str], row: Mapping[str, Any]
) -> tuple[tuple[Any, ...], list[Adjustment]]:
    """The COPY record of ``row`` for ``names``, every value fitted, and what changed."""
    return RowFitter(columns, names).fit(row)
