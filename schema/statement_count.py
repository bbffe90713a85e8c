"""Reports how many SQL statements a request sent, in the ``X-SQL-Statements`` header.

The graph's promise (statement count depends on the query's shape, not on the rows) is pinned
by tests over real HTTP, and a client profiling a dashboard query can read the same number.
It is a count, never the SQL itself.
"""

from __future__ import annotations

from collections.abc import Iterator

from starlette.datastructures import MutableHeaders
from strawberry.extensions import SchemaExtension

STATEMENTS_HEADER = "x-sql-statements"


class StatementCountHeader(SchemaExtension):
    def on_operation(self) -> Iterator[None]:
        yield
        context = self.execution_context.context
        response = getattr(context, "response", None)
        counter = getattr(context, "statements", None)
        headers = getattr(response, "headers", None)
        # Only an HTTP answer's headers are still to be sent: on a WebSocket, ``response`` is
        # the socket, whose headers are the handshake's (read-only, and long sent).
        if counter is not None and isinstance(headers, MutableHeaders):
            headers[STATEMENTS_HEADER] = str(counter.count)
