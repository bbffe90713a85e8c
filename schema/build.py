"""Assembles the Strawberry ``Schema`` from the root types."""

from __future__ import annotations

from typing import TYPE_CHECKING

import strawberry

if TYPE_CHECKING:
    from app.settings import Settings


@strawberry.type
class Query:
    @strawberry.field(description="The API version this server speaks.")
    def api_version(self) -> str:
        return "1"


def build_schema(settings: Settings | None = None) -> strawberry.Schema:
    return strawberry.Schema(query=Query)
