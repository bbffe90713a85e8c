"""Errors resolvers raise, each carrying the ``extensions.code`` clients branch on.

Messages are written for the caller: they never contain SQL, a stack trace, a credential, or
whether something exists in another organization.
"""

from __future__ import annotations

import asyncpg
from graphql import GraphQLError

from app.db import CONNECTION_LOST

# The database went away under a request (it is down, restarting, or ended the session): not
# a fault of this server's code and not the caller's, but something to retry. ``TimeoutError``
# stays out: the request's own deadline raises it, and that is answered on its own.
DATABASE_UNAVAILABLE: tuple[type[BaseException], ...] = tuple(
    kind for kind in CONNECTION_LOST if kind is not TimeoutError)
# A statement that ran past the database's statement timeout (asyncpg files it under operator
# intervention): the request's deadline, kept by PostgreSQL, so it is answered as one.
STATEMENT_TIMED_OUT = asyncpg.QueryCanceledError
DATABASE_UNAVAILABLE_MESSAGE = "the database is unavailable; retry shortly"
RETRY_AFTER_S = "2"


class ApiError(GraphQLError):
    code = "INTERNAL"

    def __init__(self, message: str) -> None:
        super().__init__(message, extensions={"code": self.code})


class Unauthenticated(ApiError):
    code = "UNAUTHENTICATED"


class Forbidden(ApiError):
    code = "FORBIDDEN"


class NotFound(ApiError):
    code = "NOT_FOUND"


class BadUserInput(ApiError):
    code = "BAD_USER_INPUT"

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


def drop_traceback(error: BaseException) -> None:
    """Once logged (``process_errors`` runs inside the operation), an error's traceback only
    holds frames, and through them the executor, the context and the rows, in a cycle with
    the error itself: the request's whole state for the collector to find. The client's
    form of an error carries no traceback anyway."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        current.__traceback__ = None
        original = getattr(current, "original_error", None)
        current = original if isinstance(original, BaseException) else (
            current.__cause__ or current.__context__)
