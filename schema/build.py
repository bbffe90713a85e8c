"""Assembles the Strawberry ``Schema``: root types, scalars, limits and error handling."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import strawberry
from graphql import GraphQLError
from strawberry.extensions import (
    DisableIntrospection,
    MaxAliasesLimiter,
    MaxTokensLimiter,
    QueryDepthLimiter,
)
from strawberry.schema.config import StrawberryConfig
from strawberry.types import ExecutionContext

from schema.cluster_types import Cluster
from schema.cooperative import CooperativeExecutionContext
from schema.extensions import ErrorCodes, RequireAuthentication, log_error
from schema.mutation import Mutation
from schema.pod_types import ClusterNode, Pod
from schema.query import Query
from schema.query_cost import QueryCostLimit
from schema.scalars import SCALAR_MAP
from schema.statement_count import StatementCountHeader
from schema.subscription import Subscription
from schema.workload_types import Deployment, HelmRelease, Namespace

if TYPE_CHECKING:
    from app.settings import Settings


class FleetGraphSchema(strawberry.Schema):
    """Strawberry's schema, logging errors our way.

    Strawberry's own ``process_errors`` logs every error at ERROR with a traceback and the raw
    message — a mistyped variable would be logged as a server fault, with its value.
    """

    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        variables = execution_context.variables if execution_context is not None else None
        for error in errors:
            log_error(error, variables)


def build_schema(settings: Settings | None = None) -> strawberry.Schema:
    from app.settings import Settings

    s = settings or Settings()
    # Factories, not instances: Strawberry builds fresh extensions for every request.
    extensions: list[Any] = [
        ErrorCodes,
        RequireAuthentication,
        StatementCountHeader,
        lambda: QueryDepthLimiter(max_depth=s.max_query_depth),
        lambda: MaxAliasesLimiter(max_alias_count=s.max_aliases),
        lambda: MaxTokensLimiter(max_token_count=s.max_tokens),
        lambda: QueryCostLimit(limits=s.query_cost_limits),
    ]
    if not s.introspection:
        extensions.append(DisableIntrospection)
    return FleetGraphSchema(
        query=Query, mutation=Mutation, subscription=Subscription,
        types=[Cluster, Namespace, ClusterNode, Deployment, Pod, HelmRelease],
        extensions=extensions, config=StrawberryConfig(scalar_map=SCALAR_MAP),
        execution_context_class=CooperativeExecutionContext,
    )
