"""The graph's custom scalars, each with a wire format a code generator can map to a type.

GraphQL's ``Int`` is 32-bit and JSON numbers are IEEE doubles, so a byte count past 2^53 or a
price with more digits than a double holds would be changed in transit. ``Long`` and
``Decimal`` therefore travel as strings, which every JSON parser keeps verbatim; clients turn
them into a BigInt or a decimal type of their choice. ``DateTime`` is an RFC 3339 string with
an offset, so an instant means the same thing on every client. Each scalar says so in its
description and, where a specification exists, in ``@specifiedBy``; graphql-codegen and
friends read both (see README, "Scalars and codegen").

A refused input raises ``GraphQLError`` with a message that never repeats the value: a value
can be a credential, and graphql-core reports such errors as they are.
"""

from __future__ import annotations

import decimal
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, NewType, overload

import strawberry
from graphql import GraphQLError, IntValueNode, StringValueNode, ValueNode
from graphql.language import FloatValueNode
from strawberry.scalars import JSON
from strawberry.types.scalar import ScalarDefinition

Long = NewType("Long", int)

RFC3339_URL = "https://datatracker.ietf.org/doc/html/rfc3339"
RFC8259_URL = "https://datatracker.ietf.org/doc/html/rfc8259"

_LONG_MIN, _LONG_MAX = -(2**63), 2**63 - 1
_INTEGER_TEXT = re.compile(r"-?[0-9]+")
# RFC 3339 section 5.6 ``date-time``: the offset is required; "T" may be "t" or a space.
_RFC3339 = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:[Zz]|[+-]\d{2}:\d{2})"
)


def _literal(parse: Callable[[object], object], type_name: str) -> Callable[..., object]:
    """A literal parser that reads the literal's own text, so ``0.1`` stays exactly ``0.1``
    instead of passing through a float first."""

    def parse_literal(node: ValueNode, _variables: Any = None) -> object:
        if isinstance(node, (IntValueNode, FloatValueNode, StringValueNode)):
            text = node.value
            return parse(int(text) if isinstance(node, IntValueNode) else text)
        raise GraphQLError(f"{type_name} must be written as a string or a number.")

    return parse_literal


def parse_long(value: object) -> int:
    """An integer, or a string of decimal digits (how Long travels), within 64 bits."""
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and _INTEGER_TEXT.fullmatch(value):
        number = int(value)
    else:
        raise GraphQLError("Long must be an integer or a string of decimal digits.")
    if not _LONG_MIN <= number <= _LONG_MAX:
        raise GraphQLError("Long must fit in a signed 64-bit integer.")
    return number


def serialize_long(value: object) -> str:
    return str(int(value))  # type: ignore[call-overload]


def parse_decimal(value: object) -> decimal.Decimal:
    """A decimal string (how Decimal travels); a JSON number is taken as the digits it shows,
    which keeps older clients that send numbers working."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise GraphQLError('Decimal must be a string such as "0.0316".')
    try:
        number = decimal.Decimal(value if isinstance(value, str) else repr(value))
    except decimal.InvalidOperation:
        raise GraphQLError('Decimal must be a string such as "0.0316".') from None
    if not number.is_finite():
        raise GraphQLError("Decimal must be a finite number.")
    return number


def serialize_decimal(value: object) -> str:
    """Plain notation (``"100"``, not ``"1E+2"``): what decimal libraries parse everywhere."""
    return format(decimal.Decimal(value), "f")  # type: ignore[arg-type]


def parse_datetime(value: object) -> datetime:
    if not isinstance(value, str) or not _RFC3339.fullmatch(value):
        raise GraphQLError("DateTime must be an RFC 3339 date-time with an offset, "
                           "e.g. 2024-05-01T12:00:00Z.")
    try:
        return datetime.fromisoformat(value.upper().replace(" ", "T"))
    except ValueError:
        raise GraphQLError("DateTime is not a valid calendar date and time.") from None


def serialize_datetime(value: object) -> str:
    """RFC 3339 always: a naive value (none is expected, the database keeps timestamptz) is
    taken as UTC rather than sent without an offset."""
    if not isinstance(value, datetime):
        raise TypeError("DateTime fields must hold datetime values")
    return (value if value.tzinfo is not None else value.replace(tzinfo=UTC)).isoformat()


def _json_identity(value: object) -> object:
    return value


SCALAR_MAP: dict[object, ScalarDefinition] = {
    Long: strawberry.scalar(
        name="Long",
        description="A signed 64-bit integer (byte counts), sent as a string of decimal digits "
                    'such as "17179869184" because JSON numbers are exact only up to 2^53. '
                    "Input accepts the string or a JSON integer.",
        serialize=serialize_long,
        parse_value=parse_long,
        parse_literal=_literal(parse_long, "Long"),
    ),
    decimal.Decimal: strawberry.scalar(
        name="Decimal",
        description='A fixed-point decimal number (prices), sent as a string such as "0.0316" '
                    "so no digit is lost to floating point. Input accepts the string; a JSON "
                    "number is read as the digits it shows.",
        serialize=serialize_decimal,
        parse_value=parse_decimal,
        parse_literal=_literal(parse_decimal, "Decimal"),
    ),
    datetime: strawberry.scalar(
        name="DateTime",
        description="An instant, as an RFC 3339 date-time string with an offset, such as "
                    '"2024-05-01T12:00:00+00:00" (the server answers in UTC).',
        specified_by_url=RFC3339_URL,
        serialize=serialize_datetime,
        parse_value=parse_datetime,
    ),
    JSON: strawberry.scalar(
        name="JSON",
        description="Any JSON value (RFC 8259 / ECMA-404): an object, array, string, number, "
                    "boolean or null, sent as itself.",
        specified_by_url=RFC8259_URL,
        serialize=_json_identity,
        parse_value=_json_identity,
    ),
}


_MONEY_PLACES = decimal.Decimal("0.000001")


@overload
def money(value: None) -> None: ...
@overload
def money(value: decimal.Decimal | int) -> decimal.Decimal: ...
def money(value: decimal.Decimal | int | None) -> decimal.Decimal | None:
    """A numeric column as a ``Decimal`` with the cost engine's six places (a view's average or
    a capacity times a price can carry more digits than any price has), keeping NULL as null."""
    if value is None:
        return None
    return decimal.Decimal(value).quantize(_MONEY_PLACES)


def number(value: object) -> float | None:
    """A numeric column (Decimal) as a float for the wire, keeping NULL as null."""
    return None if value is None else float(value)  # type: ignore[arg-type]
