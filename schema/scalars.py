"""Scalars the graph needs beyond GraphQL's own: byte counts overflow GraphQL's 32-bit Int."""

from __future__ import annotations

from typing import NewType

import strawberry
from strawberry.types.scalar import ScalarDefinition

Long = NewType("Long", int)

SCALAR_MAP: dict[object, ScalarDefinition] = {
    Long: strawberry.scalar(
        name="Long",
        serialize=int,
        parse_value=int,
        description="A 64-bit integer (byte counts); JSON numbers are exact up to 2^53.",
    ),
}


def number(value: object) -> float | None:
    """A numeric column (Decimal) as a float for the wire, keeping NULL as null."""
    return None if value is None else float(value)  # type: ignore[arg-type]
