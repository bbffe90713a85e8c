"""A tiny builder for parameterised SQL: values always travel as ``$n`` parameters."""

from __future__ import annotations

from typing import Any


class Params:
    """Collects values and hands back their ``$n`` placeholders, in order."""

    def __init__(self, *initial: Any) -> None:
        self.values: list[Any] = list(initial)

    def add(self, value: Any) -> str:
        self.values.append(value)
        return f"${len(self.values)}"


def where(clauses: list[str]) -> str:
    return " AND ".join(f"({c})" for c in clauses) if clauses else "true"
