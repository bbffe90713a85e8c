"""Raw-JSON access to a Kubernetes API server: one GET, one paged list, one watch stream.

The generated ``kubernetes_asyncio`` model classes are slow to build and drop fields they do
not know, and the sync engine only needs dicts, so every call here goes through
``ApiClient.call_api(..., _preload_content=False)`` (authentication, TLS and the connect/read
timeouts of :func:`app.kube_client.open_api_client` still apply) and parses with orjson.

Watch streams are split into lines by hand rather than with ``StreamReader.readline``:
aiohttp refuses lines over 128 KiB, and one Helm release secret is easily bigger.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
from kubernetes_asyncio.client import ApiClient

__all__ = [
    "Gone",
    "KubeApiError",
    "NotFound",
    "Page",
    "get_json",
    "list_pages",
    "watch_events",
]

_ACCEPT = {"Accept": "application/json"}
_MAX_LINE_BYTES = 64 * 1024 * 1024


class KubeApiError(Exception):
    """An HTTP error answer; ``message`` is the Status message, cut short (no object body)."""

    def __init__(self, status: int, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(f"HTTP {status}: {message}" if message else f"HTTP {status}")
        self.status = status
        self.retry_after = retry_after


class Gone(KubeApiError):
    """410 Gone: the resourceVersion (or continue token) we asked for is older than the
    server's history. Not a failure: it is how the server says "list again"."""


class NotFound(KubeApiError):
    """404: the path (e.g. an API group such as metrics.k8s.io) is not served."""


@dataclass(frozen=True, slots=True)
class Page:
    items: list[dict[str, Any]]
    resource_version: str | None


def _error(status: int, body: bytes, headers: Mapping[str, str]) -> KubeApiError:
    message = ""
    try:
        document = orjson.loads(body)
        if isinstance(document, dict):
            message = str(document.get("message") or document.get("reason") or "")
    except orjson.JSONDecodeError:
        pass
    message = message.replace("\n", " ")[:200]
    retry_after = None
    if "Retry-After" in headers:
        try:
            retry_after = float(headers["Retry-After"])
        except ValueError:
            retry_after = None
    if status == 410:
        return Gone(status, message)
    if status == 404:
        return NotFound(status, message)
    return KubeApiError(status, message, retry_after=retry_after)


async def _request(
    api: ApiClient,
    path: str,
    query: Sequence[tuple[str, str]],
    *,
    request_timeout: aiohttp.ClientTimeout | None = None,
) -> aiohttp.ClientResponse:
    response: aiohttp.ClientResponse = await api.call_api(
        path,
        "GET",
        query_params=list(query),
        header_params=dict(_ACCEPT),
        auth_settings=["BearerToken"],
        _preload_content=False,
        _request_timeout=request_timeout,
    )
    if response.status != 200:
        try:
            body = await response.read()
        finally:
            response.release()
        raise _error(response.status, body, response.headers)
    return response


def _status_code(status: object) -> int:
    """The HTTP code of a watch ERROR's Status (500 when it has none we can read)."""
    raw = status.get("code") if isinstance(status, dict) else None
    try:
        return int(raw) if raw is not None else 500
    except (TypeError, ValueError):
        return 500


_ESCAPED_NUL = b"\\u0000"


def _strip_nul(value: Any) -> Any:
    """Drop NUL characters: PostgreSQL text and jsonb refuse them, and one odd annotation must
    not stop a cluster's sync."""
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, dict):
        return {_strip_nul(k): _strip_nul(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_strip_nul(v) for v in value]
    return value


def loads(body: bytes) -> Any:
    """Parse a JSON answer; the NUL scrub runs only on the rare bodies that contain one."""
    document = orjson.loads(body)
    return _strip_nul(document) if _ESCAPED_NUL in body else document


async def get_json(
    api: ApiClient, path: str, query: Sequence[tuple[str, str]] = ()
) -> dict[str, Any]:
    response = await _request(api, path, query)
    try:
        body = await response.read()
    finally:
        response.release()
    document = loads(body)
    if not isinstance(document, dict):
        raise KubeApiError(response.status, "answer is not a JSON object")
    return document


async def list_pages(
    api: ApiClient, path: str, *, limit: int, label_selector: str | None = None
) -> AsyncIterator[Page]:
    """A consistent list in pages of ``limit`` (``continue`` tokens); the last page's
    ``resource_version`` is where a watch must start."""
    token: str | None = None
    while True:
        query = [("limit", str(limit))]
        if label_selector:
            query.append(("labelSelector", label_selector))
        if token:
            query.append(("continue", token))
        document = await get_json(api, path, query)
        metadata = document.get("metadata") or {}
        items = [i for i in document.get("items") or [] if isinstance(i, dict)]
        yield Page(items, metadata.get("resourceVersion"))
        token = metadata.get("continue") or None
        if not token:
            return


async def _lines(response: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
    pending = bytearray()
    async for chunk in response.content.iter_any():
        pending += chunk
        while (end := pending.find(b"\n")) >= 0:
            line = bytes(pending[:end])
            del pending[: end + 1]
            if line.strip():
                yield line
        if len(pending) > _MAX_LINE_BYTES:
            raise KubeApiError(200, "watch event larger than 64 MiB")
    # A partial line at the end is a cut stream, not an event: drop it.


async def watch_events(
    api: ApiClient,
    path: str,
    *,
    resource_version: str,
    timeout_seconds: int,
    connect_timeout: float,
    label_selector: str | None = None,
) -> AsyncIterator[dict[str, Any]]:
    """Watch events (``{"type": ..., "object": ...}``) from ``resource_version``, with
    BOOKMARKs, until the server ends the stream after ``timeout_seconds``.

    An ``ERROR`` event carrying 410 is raised as :class:`Gone`, like an HTTP 410.
    """
    query = [
        ("watch", "true"),
        ("resourceVersion", resource_version),
        ("allowWatchBookmarks", "true"),
        ("timeoutSeconds", str(timeout_seconds)),
    ]
    if label_selector:
        query.append(("labelSelector", label_selector))
    # The read timeout must outlast the server-side timeout plus a bookmark interval.
    timeout = aiohttp.ClientTimeout(
        total=None,
        connect=connect_timeout,
        sock_connect=connect_timeout,
        sock_read=timeout_seconds + 30,
    )
    response = await _request(api, path, query, request_timeout=timeout)
    try:
        async for line in _lines(response):
            event = loads(line)
            if not isinstance(event, dict):
                continue
            if event.get("type") == "ERROR":
                status = event.get("object") or {}
                code = _status_code(status)
                message = str(status.get("message", ""))[:200] if isinstance(status, dict) else ""
                raise Gone(code, message) if code == 410 else KubeApiError(code, message)
            yield event
    finally:
        response.release()
