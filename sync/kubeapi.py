"""Raw-JSON access to a Kubernetes API server: one GET, one paged list, one watch stream.

The generated ``kubernetes_asyncio`` model classes are slow to build and drop fields they do
not know, and the sync engine only needs dicts, so every call here goes through
``ApiClient.call_api(..., _preload_content=False)`` (authentication, TLS and the connect/read
timeouts of :func:`app.kube_client.open_api_client` still apply) and parses with orjson.

Watch streams are split into lines by hand rather than with ``StreamReader.readline``:
aiohttp refuses lines over 128 KiB, and one Helm release secret is easily bigger.

A registered server is not trusted to be a Kubernetes API server. Every answer is checked for
the shape the Kubernetes API gives that call (a ``*List`` with ``items`` and
``metadata.resourceVersion``; a stream of watch events; ``/version`` with ``gitVersion``), and
anything else raises :class:`UnexpectedAnswer`. Without that, a server answering ``200 {}`` to
every path looks like an empty cluster whose watches end at once, and the informers would
re-watch it as fast as it answers. A redirect is never followed (see
:class:`app.kube_client.RedirectRefused`) and surfaces here as :class:`Redirected`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import aiohttp
import orjson
from kubernetes_asyncio.client import ApiClient

from app.kube_client import RedirectRefused
from sync.collector import collector_paused

__all__ = [
    "EmptyWatch",
    "Gone",
    "KubeApiError",
    "NotFound",
    "Page",
    "Redirected",
    "UnexpectedAnswer",
    "get_json",
    "get_version",
    "list_pages",
    "watch_events",
]

_ACCEPT = {"Accept": "application/json"}
_MAX_LINE_BYTES = 64 * 1024 * 1024
_WATCH_EVENT_TYPES: Final = frozenset({"ADDED", "MODIFIED", "DELETED", "BOOKMARK", "ERROR"})
# A real watch stays open until timeoutSeconds (or a cut); one that ends this fast having sent
# nothing is a server that does not implement watch.
_EMPTY_WATCH_MIN_S: Final = 1.0
# 10,000 pages of 500 is five million objects of one kind: far past any real cluster.
_MAX_LIST_PAGES: Final = 10_000


class KubeApiError(Exception):
    """An HTTP error answer; ``message`` is the Status message, cut short (no object body)."""

    def __init__(self, status: int, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(f"HTTP {status}: {message}" if message else f"HTTP {status}")
        self.status = status
        self.message = message
        self.retry_after = retry_after


class Gone(KubeApiError):
    """410 Gone: the resourceVersion (or continue token) we asked for is older than the
    server's history. Not a failure: it is how the server says "list again"."""


class NotFound(KubeApiError):
    """404: the path (e.g. an API group such as metrics.k8s.io) is not served."""


class Redirected(KubeApiError):
    """A 3xx answer. Kubernetes API servers do not redirect API calls; it is never followed."""

    def __init__(self, status: int) -> None:
        super().__init__(status, "redirect refused; FleetGraph never follows redirects")


class UnexpectedAnswer(KubeApiError):
    """An answer that is not what the Kubernetes API returns for this call (``message``
    describes the shape, never repeats the body)."""


class EmptyWatch(UnexpectedAnswer):
    """A watch stream that ended at once without a single event. Once is what a real API
    server does when it shuts down gracefully; again and again, it is not a watch at all."""


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
    try:
        response: aiohttp.ClientResponse = await api.call_api(
            path,
            "GET",
            query_params=list(query),
            header_params=dict(_ACCEPT),
            auth_settings=["BearerToken"],
            _preload_content=False,
            _request_timeout=request_timeout,
        )
    except RedirectRefused as exc:
        raise Redirected(exc.status) from None
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


# A list page of 500 pods is about 1.3 MB of JSON and 150,000 objects made in one call: see
# sync.collector for why the collector is paused meanwhile.
_PAUSE_COLLECTOR_BYTES = 64 * 1024


def loads(body: bytes) -> Any:
    """Parse a JSON answer; the NUL scrub runs only on the rare bodies that contain one."""
    with collector_paused(when=len(body) >= _PAUSE_COLLECTOR_BYTES):
        document = orjson.loads(body)
    return _strip_nul(document) if _ESCAPED_NUL in body else document


async def get_json(
    api: ApiClient, path: str, query: Sequence[tuple[str, str]] = ()
) -> dict[str, Any]:
    """One GET whose answer must be a JSON object."""
    response = await _request(api, path, query)
    try:
        body = await response.read()
    finally:
        response.release()
    try:
        document = loads(body)
    except orjson.JSONDecodeError:
        raise UnexpectedAnswer(response.status, f"{path} answered something that is not JSON"
                               ) from None
    if not isinstance(document, dict):
        raise UnexpectedAnswer(response.status, f"{path} answered JSON that is not an object")
    return document


async def get_version(api: ApiClient) -> str:
    """``gitVersion`` from ``/version``: the cheapest proof that this is a Kubernetes API."""
    document = await get_json(api, "/version")
    version = document.get("gitVersion")
    if not isinstance(version, str) or not version:
        raise UnexpectedAnswer(200, "/version has no gitVersion; not a Kubernetes API server")
    return version


def _list_metadata(
    document: dict[str, Any], path: str, *, require_resource_version: bool
) -> dict[str, Any]:
    """The list's ``metadata``, once the document is known to be a ``*List``."""
    kind, items, metadata = document.get("kind"), document.get("items"), document.get("metadata")
    if not isinstance(kind, str) or not kind.endswith("List"):
        raise UnexpectedAnswer(200, f"{path} did not answer a *List object")
    if not isinstance(items, list) or not isinstance(metadata, dict):
        raise UnexpectedAnswer(200, f"{path} answered a {kind[:60]} without items or metadata")
    version = metadata.get("resourceVersion")
    if require_resource_version and (not isinstance(version, str) or not version):
        raise UnexpectedAnswer(200, f"{path} answered a list without metadata.resourceVersion")
    token = metadata.get("continue")
    if token is not None and not isinstance(token, str):
        raise UnexpectedAnswer(200, f"{path} answered a list whose continue is not a string")
    return metadata


async def list_pages(
    api: ApiClient,
    path: str,
    *,
    limit: int,
    label_selector: str | None = None,
    require_resource_version: bool = True,
) -> AsyncIterator[Page]:
    """A consistent list in pages of ``limit`` (``continue`` tokens); the last page's
    ``resource_version`` is where a watch must start.

    ``require_resource_version=False`` is for ``metrics.k8s.io``, whose lists carry none. A
    continue token repeated, or more pages than any cluster has, is an
    :class:`UnexpectedAnswer` rather than an endless loop."""

    def query(token: str | None) -> list[tuple[str, str]]:
        pairs = [("limit", str(limit))]
        if label_selector:
            pairs.append(("labelSelector", label_selector))
        if token:
            pairs.append(("continue", token))
        return pairs

    token: str | None = None
    ahead: asyncio.Future[dict[str, Any]] | None = None
    try:
        for _ in range(_MAX_LIST_PAGES):
            if ahead is not None:
                document, ahead = await ahead, None
            else:
                document = await get_json(api, path, query(token))
            metadata = _list_metadata(
                document, path, require_resource_version=require_resource_version
            )
            items = [i for i in document["items"] if isinstance(i, dict)]
            previous, token = token, metadata.get("continue") or None
            if token and token != previous:
                # The next page is asked for before this one is decoded: the server prepares
                # it, and the socket buffers it, while this page is mapped.
                ahead = _ahead(get_json(api, path, query(token)))
                await asyncio.sleep(0)  # lets it send the request
            yield Page(items, metadata.get("resourceVersion") or None)
            if not token:
                return
            if token == previous:
                raise UnexpectedAnswer(200, f"{path} answered the same continue token twice")
        raise UnexpectedAnswer(200, f"{path} did not finish its list in {_MAX_LIST_PAGES} pages")
    finally:
        if ahead is not None:
            ahead.cancel()


def _ahead(request: Coroutine[Any, Any, dict[str, Any]]) -> asyncio.Future[dict[str, Any]]:
    """``request`` as a task whose failure, if nobody awaits it any more, is not reported."""
    task = asyncio.ensure_future(request)
    task.add_done_callback(lambda done: done.cancelled() or done.exception())
    return task


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
    on_open: Callable[[], None] | None = None,
) -> AsyncIterator[dict[str, Any]]:
    """Watch events (``{"type": ..., "object": ...}``) from ``resource_version``, with
    BOOKMARKs, until the server ends the stream after ``timeout_seconds``.

    An ``ERROR`` event carrying 410 is raised as :class:`Gone`, like an HTTP 410.
    ``on_open`` is called once the server has accepted the watch (its 200 arrived), which on a
    quiet cluster can be long before the first event: it is how a caller knows it watches.
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
    started = time.monotonic()
    response = await _request(api, path, query, request_timeout=timeout)
    delivered = 0
    try:
        if on_open is not None:
            on_open()
        async for line in _lines(response):
            event = _watch_event(line, path)
            if event["type"] == "ERROR":
                status = event["object"]
                code = _status_code(status)
                message = str(status.get("message", ""))[:200]
                raise Gone(code, message) if code == 410 else KubeApiError(code, message)
            delivered += 1
            yield event
    finally:
        response.release()
    if delivered == 0 and time.monotonic() - started < _EMPTY_WATCH_MIN_S:
        raise EmptyWatch(200, f"{path} ends its watches at once without any event; "
                         "not a Kubernetes watch")


def _watch_event(line: bytes, path: str) -> dict[str, Any]:
    """One line of a watch stream, which must be ``{"type": <event type>, "object": {...}}``."""
    try:
        event = loads(line)
    except orjson.JSONDecodeError:
        raise UnexpectedAnswer(200, f"{path} watch sent a line that is not JSON") from None
    if (
        not isinstance(event, dict)
        or event.get("type") not in _WATCH_EVENT_TYPES
        or not isinstance(event.get("object"), dict)
    ):
        raise UnexpectedAnswer(200, f"{path} watch sent something that is not a watch event")
    return event
