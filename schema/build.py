"""Assembles the Strawberry ``Schema``: root types, scalars, limits and error handling."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import strawberry
from graphql import ASTValidationRule, GraphQLError, GraphQLObjectType
from graphql.execution.executor import CollectedErrors
from strawberry.extensions import (
    AddValidationRules,
    DisableIntrospection,
    MaxTokensLimiter,
    ParserCache,
    ValidationCache,
)
from strawberry.extensions.max_aliases import create_validator as aliases_rule
from strawberry.extensions.query_depth_limiter import create_validator as depth_rule
from strawberry.schema.config import StrawberryConfig
from strawberry.types import ExecutionContext

from resolvers.errors import drop_traceback
from resolvers.inventory.plan import Planner, RootPlan
from resolvers.inventory.run import Completion, argument_reader, run_plan
from resolvers.inventory.spec import RowReaders
from schema.cluster_types import CLUSTER_READERS, Cluster
from schema.cooperative import CooperativeExecutionContext
from schema.extensions import (
    DropLoaders,
    ErrorCodes,
    RequireAuthentication,
    log_error,
)
from schema.mutation import Mutation
from schema.pod_types import NODE_READERS, POD_READERS, ClusterNode, Pod
from schema.query import Query
from schema.query_cost import QueryCostLimit
from schema.scalars import SCALAR_MAP
from schema.statement_count import StatementCountHeader
from schema.subscription import Subscription
from schema.workload_types import (
    DEPLOYMENT_READERS,
    NAMESPACE_READERS,
    Deployment,
    HelmRelease,
    Namespace,
)

if TYPE_CHECKING:
    from app.settings import Settings


PLANNER_ATTRIBUTE = "fleetgraph_inventory_planner"
DOCUMENT_CACHE_SIZE = 256
ROW_READERS: dict[str, RowReaders] = {
    "Cluster": CLUSTER_READERS, "Namespace": NAMESPACE_READERS, "ClusterNode": NODE_READERS,
    "Deployment": DEPLOYMENT_READERS, "Pod": POD_READERS,
}


class DocumentCache(ParserCache):
    """Strawberry's parser cache, except that a document that does not parse is left to
    Strawberry's own parse, which reports it as every refused request is reported (with a
    code); the stock extension lets the syntax error escape from its hook instead."""

    def on_parse(self) -> Iterator[None]:
        ctx = self.execution_context
        with contextlib.suppress(GraphQLError):
            ctx.graphql_document = self.cached_parse_document(ctx.query, **ctx.parse_options)
        yield


class PlannedExecutionContext(CooperativeExecutionContext):
    """Root fields with an inventory plan run it (``resolvers.inventory``), which hands the
    fields it does not cover back to this executor's ``execute_field``. Other root fields,
    and any planned field the plan cannot answer exactly (an invalid cursor, a missing
    cluster, a value that does not serialise, a hole's error that would null a planned
    field), run through the resolvers, which then report what went wrong exactly as they
    always have. The planned path raises nothing of its own to clients.
    """

    def execute_field(self, parent_type: GraphQLObjectType, source: Any, field_details_list: Any,
                      path: Any, position_context: Any) -> Any:
        planner: Planner | None = getattr(self.schema, PLANNER_ATTRIBUTE, None)
        if planner is not None and path.prev is None and parent_type is self.schema.query_type:
            plan = planner.root_plan(self, parent_type, field_details_list, path.key)
            if plan is not None:
                return self._planned(plan, parent_type, source, field_details_list, path,
                                     position_context)
        return super().execute_field(parent_type, source, field_details_list, path,
                                     position_context)

    async def _planned(self, plan: RootPlan, parent_type: Any, source: Any,
                       field_details_list: Any, path: Any, position_context: Any) -> Any:
        try:
            return await run_plan(plan, self.context_value, argument_reader(self),
                                  Completion(self, path))
        except Exception as unplanned:
            drop_traceback(unplanned)  # its frames hold the run: a cycle, else
        retract_errors(self.collected_errors, path.key)
        answer = super().execute_field(parent_type, source, field_details_list, path,
                                       position_context)
        return await answer if self.is_awaitable(answer) else answer


def retract_errors(collected: CollectedErrors, root_key: str | int) -> None:
    """Takes back the errors recorded under the root field ``root_key`` (by the holes of a
    plan that was then given up), and the positions they nulled, so that the resolvers'
    answer of the field records its own, once, and none is skipped as already nulled.
    ``CollectedErrors`` offers no removal: its two private collections are edited here."""
    errors: list[GraphQLError] = collected._errors
    errors[:] = [e for e in errors if not e.path or e.path[0] != root_key]
    positions = collected._error_positions
    for position in [p for p in positions if p is not None and _root_key(p) == root_key]:
        positions.discard(position)


def _root_key(path: Any) -> str | int:
    while path.prev is not None:
        path = path.prev
    key: str | int = path.key
    return key


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


def build_schema(settings: Settings | None = None, *, planned: bool = True
                 ) -> strawberry.Schema:
    """The API's schema; ``planned=False`` leaves every field to the resolvers (the
    differential test's reference)."""
    from app.settings import Settings

    s = settings or Settings()
    limit_rules: list[type[ASTValidationRule]] = [depth_rule(s.max_query_depth, None),
                                                  aliases_rule(s.max_aliases)]
    # Factories, not instances: Strawberry builds fresh extensions for every request.
    extensions: list[Any] = [
        ErrorCodes,
        DropLoaders,
        RequireAuthentication,
        StatementCountHeader,
        # The depth and alias rules as QueryDepthLimiter and MaxAliasesLimiter add them, but
        # made once per schema: a rule class per request would make every validation a
        # cache miss for ValidationCache below.
        lambda: AddValidationRules(limit_rules),
        lambda: MaxTokensLimiter(max_token_count=s.max_tokens),
        lambda: QueryCostLimit(limits=s.query_cost_limits),
        # A document is parsed and validated once, not per request: both leave reference
        # cycles (the token list, the validation visitors) for the collector to find.
        lambda: DocumentCache(maxsize=DOCUMENT_CACHE_SIZE),
        lambda: ValidationCache(maxsize=DOCUMENT_CACHE_SIZE),
    ]
    if not s.introspection:
        extensions.append(DisableIntrospection)
    schema = FleetGraphSchema(
        query=Query, mutation=Mutation, subscription=Subscription,
        types=[Cluster, Namespace, ClusterNode, Deployment, Pod, HelmRelease],
        extensions=extensions, config=StrawberryConfig(scalar_map=SCALAR_MAP),
        execution_context_class=PlannedExecutionContext,
    )
    # One planner per schema: its plans hold this schema's field definitions.
    if planned:
        setattr(schema._schema, PLANNER_ATTRIBUTE, Planner(ROW_READERS))
    return schema
