"""Assembles the Strawberry ``Schema``: root types, limits and error handling."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import strawberry
from strawberry.extensions import (
    DisableIntrospection,
    MaxAliasesLimiter,
    MaxTokensLimiter,
    QueryDepthLimiter,
)
from strawberry.schema.config import StrawberryConfig

from schema.cluster_types import Cluster
from schema.extensions import ErrorCodes, RequireAuthentication
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
    return strawberry.Schema(
        query=Query, mutation=Mutation, subscription=Subscription,
        types=[Cluster, Namespace, ClusterNode, Deployment, Pod, HelmRelease],
        extensions=extensions, config=StrawberryConfig(scalar_map=SCALAR_MAP),
    )
