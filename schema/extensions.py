"""Schema extensions: authentication for every operation, and error codes on every error.

``RequireAuthentication`` runs before execution, so an unauthenticated request never reaches
a resolver (not even ``__typename``). ``ErrorCodes`` runs last: errors we raised keep their
code; the database going away mid-request becomes SERVICE_UNAVAILABLE (503 when nothing
could be answered); parse, validation, limit and variable errors become BAD_USER_INPUT (a
refused value is not repeated, see ``schema.variable_errors``); anything else reaches the
client only as "internal error", with no stack trace or SQL.

``log_error`` is the one place errors are logged (the schema's ``process_errors`` calls it): the
caller's mistakes at INFO, one line with the public message and no traceback; server faults at
ERROR with the traceback. Both log the public form of a refused variable, so no variable value
reaches the log either.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from typing import Any

from graphql import ExecutionResult, GraphQLError
from strawberry.extensions import SchemaExtension

from resolvers.errors import (
    DATABASE_UNAVAILABLE,
    DATABASE_UNAVAILABLE_MESSAGE,
    RETRY_AFTER_S,
    STATEMENT_TIMED_OUT,
    ApiError,
    drop_traceback,
)
from schema.variable_errors import refused_literal, refused_syntax, refused_variable

log = logging.getLogger("fleetgraph.graphql")

INTERNAL = "INTERNAL"
SERVICE_UNAVAILABLE = "SERVICE_UNAVAILABLE"
DEADLINE_EXCEEDED = "DEADLINE_EXCEEDED"


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


def public_error(error: GraphQLError, variables: Mapping[str, Any] | None = None) -> GraphQLError:
    """The error as the client sees it; ``variables`` are the request's raw variables."""
    original = error.original_error
    if isinstance(original, ApiError):
        return GraphQLError(original.message, nodes=error.nodes, path=error.path,
                            extensions={"code": original.code})
    if error.extensions and "code" in error.extensions:
        return error
    if isinstance(original, STATEMENT_TIMED_OUT):
        return GraphQLError("a statement of this request ran past the database's statement "
                            "timeout", nodes=error.nodes, path=error.path,
                            extensions={"code": DEADLINE_EXCEEDED})
    if isinstance(original, DATABASE_UNAVAILABLE):
        return GraphQLError(DATABASE_UNAVAILABLE_MESSAGE, nodes=error.nodes, path=error.path,
                            extensions={"code": SERVICE_UNAVAILABLE})
    refused = refused_variable(error, variables)
    if refused is not None:
        return GraphQLError(refused.message, nodes=error.nodes, path=error.path,
                            extensions={"code": "BAD_USER_INPUT"})
    if original is None:
        # Parse and validation errors (and the depth/alias/token limits, which are validation
        # rules): the request itself is wrong. Neither repeats a value the request holds.
        message = refused_syntax(error) if error.nodes is None else refused_literal(error)
        return GraphQLError(message, nodes=error.nodes, path=error.path,
                            extensions={"code": "BAD_USER_INPUT"})
    return GraphQLError("internal error", nodes=error.nodes, path=error.path,
                        extensions={"code": INTERNAL})


def log_error(error: GraphQLError, variables: Mapping[str, Any] | None = None) -> None:
    """Log ``error`` once, at the level its cause deserves (see the module docstring)."""
    public = public_error(error, variables)
    code = (public.extensions or {}).get("code")
    if code == INTERNAL:
        log.error("unexpected error in %s", error.path, exc_info=error.original_error or error)
    elif code in (SERVICE_UNAVAILABLE, DEADLINE_EXCEEDED):  # the database's state: no traceback
        log.warning("%s at %s: %s", code, error.path, type(error.original_error).__name__)
    else:
        log.info("request refused (%s) at %s: %s", code, public.path, public.message)


class ErrorCodes(SchemaExtension):
    def on_operation(self) -> Iterator[None]:
        yield
        result = self.execution_context.result
        errors = getattr(result, "errors", None)
        if result is not None and errors:
            variables = self.execution_context.variables
            result.errors = [public_error(e, variables) for e in errors]
            if result.data is None and all(
                    (e.extensions or {}).get("code") in (SERVICE_UNAVAILABLE, DEADLINE_EXCEEDED)
                    for e in result.errors):
                _answer_retry_later(self.execution_context.context)
            for error in errors:
                drop_traceback(error)


def _answer_retry_later(context: Any) -> None:
    """Nothing could be answered because the database went away or ran out of time
    mid-request: an HTTP client gets the same 503 with Retry-After as when it is gone before
    execution starts, or the request's deadline passes (a WebSocket operation just gets the
    coded error)."""
    response = getattr(context, "response", None)
    if response is not None and hasattr(response, "status_code"):
        response.status_code = 503
        response.headers["Retry-After"] = RETRY_AFTER_S


class DropLoaders(SchemaExtension):
    """A request's dataloaders go with its operation. Each holds a fetch closure over the
    context that holds the loader: a reference cycle per loader, with every row it loaded,
    that only the collector would free."""

    def on_operation(self) -> Iterator[None]:
        yield
        loaders = getattr(self.execution_context.context, "loaders", None)
        if isinstance(loaders, dict):
            loaders.clear()
