"""The GraphQL schema FleetGraph serves (types, inputs, enums, the ``Schema`` object)."""

from schema.build import build_schema

__all__ = ["build_schema"]
