"""The GraphQL endpoint: Strawberry's ASGI app bound to our schema and request context."""

from __future__ import annotations

from typing import Any

from strawberry.asgi import GraphQL

from app.settings import Settings
from schema import build_schema


def build_graphql_app(settings: Settings) -> Any:
    schema = build_schema(settings)
    return GraphQL(schema, graphql_ide="graphiql" if settings.graphiql else None)
