"""Schema extensions: authentication for every operation, and error codes on every error.

``RequireAuthentication`` runs before execution, so an unauthenticated request never reaches
a resolver (not even ``__typename``). ``ErrorCodes`` runs last: errors we raised keep their
code; validation and limit errors become BAD_USER_INPUT; anything else is logged with its
traceback on the server and reaches the client only as "internal error", with no stack trace
or SQL.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from graphql import ExecutionResult, GraphQLError
from strawberry.extensions import SchemaExtension

from resolvers.errors import ApiError

log = logging.getLogger("fleetgraph.graphql")


class RequireAuthentication(SchemaExtension):
    def on_execute(self) -> Iterator[None]:
        context = self.execution_context.context
        if getattr(context, "principal", None) is None:
            self.execution_context.result = ExecutionResult(
                data=None,
                errors=[GraphQLError(
                    "authentication required: send Authorization: Bearer <token>",
                    extensions={"code": "UNAUTHENTICATED"},
                )],
            )
        yield


def _coded(error: GraphQLError) -> GraphQLError:
    original = error.original_error
    if isinstance(original, ApiError):
        return GraphQLError(original.message, nodes=error.nodes, path=error.path,
                            extensions={"code": original.code})
    if error.extensions and "code" in error.extensions:
        return error
    if original is None:
        # Parse and validation errors (and the depth/alias/token limits, which are validation
        # rules): the request itself is wrong.
        return GraphQLError(error.message, nodes=error.nodes, path=error.path,
                            extensions={"code": "BAD_USER_INPUT"})
    log.error("unexpected error in %s", error.path, exc_info=original)
    return GraphQLError("internal error", nodes=error.nodes, path=error.path,
                        extensions={"code": "INTERNAL"})


class ErrorCodes(SchemaExtension):
    def on_operation(self) -> Iterator[None]:
        yield
        result = self.execution_context.result
        errors = getattr(result, "errors", None)
        if result is not None and errors:
            result.errors = [_coded(e) for e in errors]
