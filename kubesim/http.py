"""The REST surface: kube-apiserver's URL layout, verbs, watch streams and errors over aiohttp.

Routing is done by hand from the URL (``/api/v1/namespaces/{ns}/pods/{name}/status``...)
because the same handful of verbs apply to every resource in :mod:`kubesim.resources`.
Watches are chunked responses of newline-delimited ``{"type": ..., "object": ...}`` events,
exactly what client-go and kubernetes-asyncio parse. Every error is a ``Status`` object.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from kubesim import (
    authz,
    deletion,
    discovery,
    errors,
    managed_fields,
    openapi,
    protobuf,
    resources,
    tables,
)
from kubesim.errors import ApiError
from kubesim.faults import Faults
from kubesim.metrics import MetricsSource
from kubesim.patch import PATCH_TYPES
from kubesim.resources import Resource
from kubesim.selectors import Selector
from kubesim.store import Entry, Store, Subscription, WatchEvent, copy_object

log = logging.getLogger("kubesim.http")

JSON = "application/json"
_ANONYMOUS_PATHS = frozenset({"/version", "/healthz", "/livez", "/readyz"})
_PATCH_NAMES = {
    "application/merge-patch+json": "merge",
    "application/strategic-merge-patch+json": "strategic",
    "application/json-patch+json": "json",
}
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class ApiState:
    """What the HTTP layer needs from the running simulator."""

    store: Store
    faults: Faults
    metrics: MetricsSource
    token: str | None
    bookmark_interval: float = 5.0
    default_watch_timeout: float = 1800.0
    server_address: str = "127.0.0.1:0"
    watches: set[asyncio.Task[Any]] = field(default_factory=set)
    # Run after every write through the API to a kind controllers act on: Deployment ->
    # ReplicaSet -> Pods, a deleted Pod replaced, quota usage counted (kube-controller-manager).
    after_controlled_write: Callable[[str | None], None] | None = None
    # Tokens that authenticate but are bound to no role (token -> user name): 403 for all
    # but discovery, as RBAC answers them.
    users_without_rights: dict[str, str] = field(default_factory=dict)


_CONTROLLED_KINDS = frozenset({"Deployment", "ReplicaSet", "Pod", "ResourceQuota"})
_WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


STATE_KEY = web.AppKey("kubesim_state", ApiState)


def json_response(
    body: Any, *, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type=JSON, headers=headers)


def status_response(error: ApiError) -> web.Response:
    if error.plain_text is not None:
        return web.Response(
            text=error.plain_text, status=error.code, headers=error.headers, charset="utf-8"
        )
    return json_response(error.status(), status=error.code, headers=error.headers)


@web.middleware
async def _errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as error:
        return status_response(error)


@web.middleware
async def _faults_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    state = request.app[STATE_KEY]
    delay = state.faults.added_latency()
    if delay > 0:
        await asyncio.sleep(delay)
    rule = state.faults.take_error(request.method, request.path)
    if rule is not None:
        error = (
            errors.too_many_requests(rule.retry_after or 1)
            if rule.status == 429
            else ApiError(
                rule.status, _reason_for(rule.status), f"injected fault: HTTP {rule.status}"
            )
        )
        if rule.retry_after is not None:
            error.headers["Retry-After"] = str(rule.retry_after)
        return status_response(error)
    return await handler(request)


def _reason_for(code: int) -> str:
    return {
        500: "InternalError",
        503: "ServiceUnavailable",
        504: "Timeout",
        502: "InternalError",
    }.get(code, "InternalError")


@web.middleware
async def _auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    state = request.app[STATE_KEY]
    if state.token is not None:
        header = request.headers.get("Authorization", "")
        if header:
            scheme, _, presented = header.partition(" ")
            presented = presented.strip()
            if scheme.lower() == "bearer" and presented in state.users_without_rights:
                denial = _denial(request, state, state.users_without_rights[presented])
                if denial is not None:
                    return status_response(denial)
            elif scheme.lower() != "bearer" or presented != state.token:
                return status_response(errors.unauthorized())
        elif request.path not in _ANONYMOUS_PATHS:
            return status_response(errors.unauthorized())
    return await handler(request)


def _denial(request: web.Request, state: ApiState, user: str) -> ApiError | None:
    """The 403 for a user without rights, or None where every authenticated user may read."""
    path = request.path.rstrip("/") or "/"
    served = request.method == "GET" and _discovery(state, path) is not None
    if authz.is_discovery(path, served_group_version=served):
        return None
    target = _parse_target(path)
    if target is None:
        return ApiError(
            403,
            "Forbidden",
            f'forbidden: User "{user}" cannot {request.method.lower()} path "{path}"',
        )
    return authz.forbidden(
        user,
        verb=authz.verb(
            request.method,
            named=target.name is not None,
            watch=_flag(request.query.get("watch")),
        ),
        plural=target.resource.plural,
        group=target.resource.group,
        namespace=target.namespace,
        name=target.name,
        subresource=target.subresource,
    )


def build_app(state: ApiState) -> web.Application:
    """The aiohttp application; ``state`` is shared with the Python API."""
    app = web.Application(
        middlewares=[_errors_middleware, _auth_middleware, _faults_middleware],
        client_max_size=64 * 2**20,
    )
    app[STATE_KEY] = state
    app.router.add_route("*", "/{tail:.*}", _dispatch)
    return app


# --------------------------------------------------------------------------- routing
@dataclass(slots=True)
class Target:
    resource: Resource
    namespace: str | None
    name: str | None
    subresource: str | None


def _parse_target(path: str) -> Target | None:
    parts = [p for p in path.split("/") if p]
    if parts[:2] == ["api", "v1"]:
        group, version, rest = "", "v1", parts[2:]
    elif len(parts) >= 3 and parts[0] == "apis":
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return None
    if not rest:
        return None
    namespace = None
    if rest[0] == "namespaces" and len(rest) >= 3 and resources.by_path(group, version, rest[2]):
        namespace, rest = rest[1], rest[2:]
    resource = resources.by_path(group, version, rest[0])
    if resource is None or len(rest) > 3:
        return None
    if resource.namespaced is False and namespace is not None:
        return None
    name = rest[1] if len(rest) > 1 else None
    sub = rest[2] if len(rest) > 2 else None
    if sub is not None and sub not in resource.subresources:
        return None
    return Target(resource, namespace, name, sub)


async def _dispatch(request: web.Request) -> web.StreamResponse:
    response = await _route(request)
    state = request.app[STATE_KEY]
    if (
        request.method in _WRITE_METHODS
        and state.after_controlled_write is not None
        and response.status < 300
    ):
        target = _parse_target(request.path.rstrip("/"))
        if target is not None and target.resource.kind in _CONTROLLED_KINDS:
            state.after_controlled_write(target.namespace)
    return response


async def _route(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE_KEY]
    path = request.path.rstrip("/") or "/"
    if path in ("/healthz", "/livez", "/readyz"):
        return web.Response(text="ok")
    if request.method == "GET":
        static = _discovery(state, path)
        if static is not None:
            return json_response(static)
    target = _parse_target(path)
    if target is None:
        raise errors.page_not_found(path)
    if target.resource.group == "metrics.k8s.io":
        if not state.faults.metrics_available:
            raise errors.page_not_found(path)
        return await _metrics(request, state, target)
    method = request.method
    if target.name is None:
        if method == "GET":
            if _flag(request.query.get("watch")):
                return await _watch(request, state, target)
            return _list(request, state, target)
        if method == "POST":
            return await _create(request, state, target)
        if method == "DELETE":
            return _delete_collection(request, state, target)
    elif target.subresource == "scale":
        return await _scale(request, state, target)
    else:
        if method == "GET":
            entry = state.store.entry(target.resource, target.name, namespace=target.namespace)
            return _respond_objects(request, state, target.resource, [entry.obj], single=True)
        if method == "PUT":
            return await _update(request, state, target)
        if method == "PATCH":
            return await _patch(request, state, target)
        if method == "DELETE":
            return await _delete(request, state, target)
    raise errors.method_not_allowed()


def _discovery(state: ApiState, path: str) -> dict[str, Any] | None:
    metrics = state.faults.metrics_available
    if path == "/version":
        return discovery.version_info()
    if path.startswith("/openapi/v3"):
        if path.startswith("/openapi/v3/apis/metrics.k8s.io") and not metrics:
            return None
        return openapi.document_for_path(path)
    if path in ("/healthz", "/livez", "/readyz"):
        return None
    if path == "/api":
        return discovery.api_versions(state.server_address)
    if path == "/apis":
        return discovery.api_group_list(metrics=metrics)
    if path == "/api/v1":
        return discovery.api_resource_list("v1")
    parts = path.strip("/").split("/")
    if parts[0] == "apis" and len(parts) == 2:
        return discovery.api_group(parts[1], metrics=metrics)
    if parts[0] == "apis" and len(parts) == 3:
        if parts[1] == "metrics.k8s.io" and not metrics:
            return None
        return discovery.api_resource_list(f"{parts[1]}/{parts[2]}")
    return None


# --------------------------------------------------------------------------- helpers
def _manager(request: web.Request) -> str:
    return managed_fields.manager_name(
        request.query.get("fieldManager"), request.headers.get("User-Agent")
    )


def _media_type(request: web.Request) -> str:
    return request.headers.get("Content-Type", "").split(";")[0].strip().lower()


def _flag(value: str | None) -> bool:
    return value is not None and value.lower() in ("true", "1")


def _wants_table(request: web.Request) -> bool:
    accept = request.headers.get("Accept", "")
    first = accept.split(",")[0]
    return "as=Table" in first


def _selector(request: web.Request) -> Selector:
    return Selector.parse(
        label_selector=request.query.get("labelSelector"),
        field_selector=request.query.get("fieldSelector"),
    )


def _int_param(request: web.Request, name: str) -> int | None:
    raw = request.query.get(name)
    if raw in (None, ""):
        return None
    try:
        return int(raw)
    except ValueError as exc:
        raise errors.bad_request(f"{name}: invalid integer {raw!r}") from exc


def _resource_version_param(request: web.Request) -> int | None:
    raw = request.query.get("resourceVersion")
    if raw in (None, ""):
        return None
    try:
        return int(raw)
    except ValueError as exc:
        raise errors.bad_request(f"invalid resource version: {raw!r}") from exc


async def _read_json(request: web.Request) -> Any:
    body = await request.read()
    if not body:
        raise errors.bad_request("the request body is empty")
    if _media_type(request) == protobuf.MEDIA_TYPE:
        # kubectl's typed creates (create ns, create deployment, run...) arrive as protobuf.
        return protobuf.decode_object(body)
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise errors.bad_request(f"the body of the request is not valid JSON: {exc}") from exc


def _reject_dry_run(request: web.Request) -> None:
    if request.query.get("dryRun"):
        raise errors.bad_request("kubesim does not support dryRun")


def _respond_objects(
    request: web.Request,
    state: ApiState,
    resource: Resource,
    objects: list[dict[str, Any]],
    *,
    single: bool,
) -> web.Response:
    if _wants_table(request):
        return json_response(
            tables.table(
                resource,
                objects,
                now=state.store.clock.now(),
                resource_version=str(state.store.resource_version),
                include_object=request.query.get("includeObject", "Metadata"),
            )
        )
    return json_response(objects[0] if single else objects)


# --------------------------------------------------------------------------- list & watch
def _list(request: web.Request, state: ApiState, target: Target) -> web.Response:
    store = state.store
    continue_token = request.query.get("continue") or None
    rv = _resource_version_param(request)
    if (continue_token or (rv not in (None, 0))) and state.faults.take_forced_410():
        raise errors.expired_continue() if continue_token else errors.gone()
    if rv is not None and rv > store.resource_version:
        raise ApiError(
            504,
            "Timeout",
            f"Too large resource version: {rv}, current: {store.resource_version}",
            details={
                "causes": [
                    {"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}
                ],
                "retryAfterSeconds": 1,
            },
        )
    if (
        rv
        and request.query.get("resourceVersionMatch") == "Exact"
        and rv < store.compacted_resource_version
    ):
        raise errors.gone()
    page = store.list_page(
        target.resource,
        namespace=target.namespace,
        selector=_selector(request),
        limit=_int_param(request, "limit"),
        continue_token=continue_token,
    )
    if _wants_table(request):
        return json_response(
            tables.table(
                target.resource,
                [e.obj for e in page.entries],
                now=store.clock.now(),
                resource_version=str(page.resource_version),
                continue_token=page.continue_token,
                include_object=request.query.get("includeObject", "Metadata"),
            )
        )
    res = target.resource
    metadata: dict[str, Any] = {"resourceVersion": str(page.resource_version)}
    if page.continue_token:
        metadata["continue"] = page.continue_token
        if page.remaining is not None:
            metadata["remainingItemCount"] = page.remaining
    head = orjson.dumps(
        {"kind": res.list_kind, "apiVersion": res.api_version, "metadata": metadata}
    )
    body = head[:-1] + b',"items":[' + b",".join(e.raw for e in page.entries) + b"]}"
    return web.Response(body=body, content_type=JSON)


class _StreamCut(Exception):
    """The faults asked for this watch stream to die mid-event."""


class _WatchWriter:
    def __init__(
        self,
        request: web.Request,
        response: web.StreamResponse,
        state: ApiState,
        resource: Resource,
        table: bool,
    ) -> None:
        self.request = request
        self.response = response
        self.state = state
        self.resource = resource
        self.table = table

    async def send(self, kind: str, obj_raw: bytes, obj: dict[str, Any] | None = None) -> None:
        if self.table and obj is not None and kind in ("ADDED", "MODIFIED", "DELETED"):
            obj_raw = orjson.dumps(
                tables.table(
                    self.resource,
                    [obj],
                    now=self.state.store.clock.now(),
                    resource_version=obj["metadata"].get("resourceVersion", ""),
                )
            )
        line = b'{"type":"' + kind.encode() + b'","object":' + obj_raw + b"}\n"
        if kind != "ERROR" and self.state.faults.take_watch_cut():
            await self.response.write(line[: max(1, len(line) // 2)])
            transport = self.request.transport
            if transport is not None:
                transport.abort()
            raise _StreamCut
        await self.response.write(line)

    async def bookmark(self, rv: int, *, initial_events_end: bool = False) -> None:
        meta: dict[str, Any] = {"resourceVersion": str(rv)}
        if initial_events_end:
            meta["annotations"] = {"k8s.io/initial-events-end": "true"}
        await self.send(
            "BOOKMARK",
            orjson.dumps(
                {
                    "kind": self.resource.kind,
                    "apiVersion": self.resource.api_version,
                    "metadata": meta,
                }
            ),
        )


def _event_for(
    event: WatchEvent, namespace: str | None, selector: Selector
) -> tuple[str, Entry] | None:
    """Translate a store event for a filtered watch, as the apiserver's watch cache does:
    an object leaving the selection is DELETED, one entering it is ADDED."""
    obj = event.entry.obj
    if namespace and obj["metadata"].get("namespace") != namespace:
        return None
    if selector.empty:
        return event.type, event.entry
    now_matches = selector.matches(obj)
    before = event.prev.obj if event.prev is not None else None
    was_matching = before is not None and selector.matches(before)
    if event.type == "MODIFIED":
        if now_matches and was_matching:
            return "MODIFIED", event.entry
        if now_matches:
            return "ADDED", event.entry
        if was_matching:
            assert before is not None
            gone = copy_object(before)
            gone["metadata"]["resourceVersion"] = str(event.rv)
            return "DELETED", Entry(gone)
        return None
    return (event.type, event.entry) if now_matches else None


async def _watch(request: web.Request, state: ApiState, target: Target) -> web.StreamResponse:
    store = state.store
    selector = _selector(request)
    rv = _resource_version_param(request)
    timeout = _int_param(request, "timeoutSeconds")
    deadline = asyncio.get_running_loop().time() + (
        timeout if timeout and timeout > 0 else state.default_watch_timeout
    )
    bookmarks = _flag(request.query.get("allowWatchBookmarks"))
    send_initial = _flag(request.query.get("sendInitialEvents"))
    subscription = store.subscribe(target.resource)
    task = asyncio.current_task()
    if task is not None:
        state.watches.add(task)
    response = web.StreamResponse(headers={"Content-Type": JSON})
    response.enable_chunked_encoding()
    try:
        backlog: list[tuple[str, Entry]] = []
        gone: ApiError | None = None
        if state.faults.take_forced_410():
            gone = errors.gone(f"too old resource version: {rv or 0} ({store.resource_version})")
        elif rv in (None, 0) or send_initial:
            backlog = [
                ("ADDED", e)
                for e in store.iter_entries(
                    target.resource, namespace=target.namespace, selector=selector
                )
            ]
        else:
            assert rv is not None
            try:
                for event in store.events_since(target.resource, rv):
                    translated = _event_for(event, target.namespace, selector)
                    if translated:
                        backlog.append(translated)
            except ApiError as error:
                gone = error
        start_rv = store.resource_version
        await response.prepare(request)
        writer = _WatchWriter(request, response, state, target.resource, _wants_table(request))
        if gone is not None:
            # A watch that cannot start from its version still answers 200 and sends one
            # ERROR event carrying a 410 Status: that is how clients learn to relist.
            await writer.send("ERROR", orjson.dumps(gone.status()))
            return response
        for kind, entry in backlog:
            await writer.send(kind, entry.raw, entry.obj)
        if send_initial and bookmarks:
            await writer.bookmark(start_rv, initial_events_end=True)
        await _follow(
            writer, subscription, state, target, selector, deadline=deadline, bookmarks=bookmarks
        )
    except (_StreamCut, ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        store.unsubscribe(subscription)
        if task is not None:
            state.watches.discard(task)
    return response


_PRE_TIMEOUT_BOOKMARK_S = 2.0


def _next_bookmark(now: float, interval: float, deadline: float) -> float:
    """When the next BOOKMARK is due: every ``interval``, and also 2 s before the watch's
    deadline, as kube-apiserver's watch cache does (``cacheWatcher.nextBookmarkTime``), so a
    watch that times out hands its client a resourceVersion close to now. (The real interval
    is a minute; kubesim's is ``bookmark_interval``, short in tests.)"""
    due = now + interval
    pre_timeout = deadline - _PRE_TIMEOUT_BOOKMARK_S
    if now < pre_timeout < due:
        due = pre_timeout
    return due


async def _follow(
    writer: _WatchWriter,
    subscription: Subscription,
    state: ApiState,
    target: Target,
    selector: Selector,
    *,
    deadline: float,
    bookmarks: bool,
) -> None:
    loop = asyncio.get_running_loop()
    next_bookmark = _next_bookmark(loop.time(), state.bookmark_interval, deadline)
    while True:
        now = loop.time()
        if now >= deadline:
            return
        wait = deadline - now
        if bookmarks:
            wait = min(wait, max(0.0, next_bookmark - now))
        try:
            event = await asyncio.wait_for(subscription.queue.get(), timeout=wait)
        except TimeoutError:
            if bookmarks and loop.time() >= next_bookmark:
                # Every event up to the store's version has been drained from the queue, so
                # the current version is a safe place for the client to resume from.
                await writer.bookmark(state.store.resource_version)
                next_bookmark = _next_bookmark(loop.time(), state.bookmark_interval, deadline)
            continue
        if event is None:
            return
        translated = _event_for(event, target.namespace, selector)
        if translated:
            kind, entry = translated
            await writer.send(kind, entry.raw, entry.obj)


# --------------------------------------------------------------------------- writes
async def _create(request: web.Request, state: ApiState, target: Target) -> web.Response:
    _reject_dry_run(request)
    body = await _read_json(request)
    if not isinstance(body, dict):
        raise errors.bad_request("the request body must be an object")
    created = state.store.create(
        target.resource, body, namespace=target.namespace, manager=_manager(request)
    )
    return json_response(created, status=201)


async def _update(request: web.Request, state: ApiState, target: Target) -> web.Response:
    _reject_dry_run(request)
    assert target.name is not None
    body = await _read_json(request)
    if not isinstance(body, dict):
        raise errors.bad_request("the request body must be an object")
    if body.get("metadata", {}).get("name", target.name) != target.name:
        raise errors.bad_request("the name of the object does not match the name on the URL")
    body.setdefault("metadata", {})["name"] = target.name
    store = state.store
    if target.subresource == "status":
        current = store.get(target.resource, target.name, namespace=target.namespace)
        wanted_rv = body["metadata"].get("resourceVersion")
        if wanted_rv and wanted_rv != current["metadata"]["resourceVersion"]:
            raise errors.conflict(target.resource.plural, target.name, group=target.resource.group)
        current["status"] = body.get("status")
        body = current
    updated = store.update(
        target.resource, body, namespace=target.namespace, manager=_manager(request)
    )
    return json_response(updated)


async def _patch(request: web.Request, state: ApiState, target: Target) -> web.Response:
    _reject_dry_run(request)
    assert target.name is not None
    content_type = request.headers.get("Content-Type", "").split(";")[0].strip()
    if content_type not in PATCH_TYPES:
        raise errors.unsupported_media_type(content_type)
    patch = await _read_json(request)
    if target.subresource == "status" and isinstance(patch, dict):
        patch = {"status": patch.get("status")} if "status" in patch else {}
    updated = state.store.patch(
        target.resource,
        target.name,
        patch,
        namespace=target.namespace,
        patch_type=_PATCH_NAMES[content_type],
        manager=_manager(request),
    )
    return json_response(updated)


async def _delete(request: web.Request, state: ApiState, target: Target) -> web.Response:
    _reject_dry_run(request)
    assert target.name is not None
    options = await _read_json(request) if request.can_read_body else None
    store = state.store
    current = store.entry(target.resource, target.name, namespace=target.namespace).obj
    grace = deletion.grace_period(
        target.resource, current, request.query.get("gracePeriodSeconds"), options
    )
    deleted = store.delete(
        target.resource, target.name, namespace=target.namespace, grace_period_seconds=grace
    )
    return json_response(deletion.response_body(target.resource, deleted))


def _delete_collection(request: web.Request, state: ApiState, target: Target) -> web.Response:
    _reject_dry_run(request)
    store = state.store
    names = [
        (e.obj["metadata"].get("namespace"), e.obj["metadata"]["name"])
        for e in store.iter_entries(
            target.resource, namespace=target.namespace, selector=_selector(request)
        )
    ]
    deleted = [store.delete(target.resource, name, namespace=ns) for ns, name in names]
    res = target.resource
    return json_response(
        {
            "kind": res.list_kind,
            "apiVersion": res.api_version,
            "metadata": {"resourceVersion": str(store.resource_version)},
            "items": deleted,
        }
    )


def _scale_of(obj: dict[str, Any]) -> dict[str, Any]:
    meta = obj["metadata"]
    spec = obj.get("spec") or {}
    match_labels = (spec.get("selector") or {}).get("matchLabels") or {}
    return {
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            k: meta[k]
            for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
            if k in meta
        },
        "spec": {"replicas": int(spec.get("replicas", 1))},
        "status": {
            "replicas": int((obj.get("status") or {}).get("replicas", 0)),
            "selector": ",".join(f"{k}={v}" for k, v in sorted(match_labels.items())),
        },
    }


async def _scale(request: web.Request, state: ApiState, target: Target) -> web.Response:
    """``deployments/scale``: what ``kubectl scale`` and autoscalers read and write."""
    assert target.name is not None
    store = state.store
    current = store.get(target.resource, target.name, namespace=target.namespace)
    if request.method == "GET":
        return json_response(_scale_of(current))
    _reject_dry_run(request)
    body = await _read_json(request)
    if request.method == "PUT":
        scale = body
    elif request.method == "PATCH":
        content_type = request.headers.get("Content-Type", "").split(";")[0].strip()
        if content_type not in PATCH_TYPES:
            raise errors.unsupported_media_type(content_type)
        scale = PATCH_TYPES[content_type](_scale_of(current), body)
    else:
        raise errors.method_not_allowed()
    if not isinstance(scale, dict):
        raise errors.bad_request("scale must be an object")
    wanted_rv = (scale.get("metadata") or {}).get("resourceVersion")
    if wanted_rv and wanted_rv != current["metadata"]["resourceVersion"]:
        raise errors.conflict(target.resource.plural, target.name, group=target.resource.group)
    replicas = (scale.get("spec") or {}).get("replicas")
    if not isinstance(replicas, int) or replicas < 0:
        raise errors.invalid(
            "Scale", target.name, "spec.replicas: Invalid value: must be a non-negative integer"
        )
    current.setdefault("spec", {})["replicas"] = replicas
    updated = store.update(target.resource, current, namespace=target.namespace)
    return json_response(_scale_of(updated))


# --------------------------------------------------------------------------- metrics
async def _metrics(request: web.Request, state: ApiState, target: Target) -> web.Response:
    if request.method != "GET" or _flag(request.query.get("watch")):
        raise errors.method_not_allowed()
    selector = _selector(request)
    if target.resource.kind == "NodeMetrics":
        items = state.metrics.node_metrics(selector=selector)
    else:
        items = state.metrics.pod_metrics(namespace=target.namespace, selector=selector)
    res = target.resource
    if target.name is not None:
        for item in items:
            if item["metadata"]["name"] == target.name:
                return json_response(item)
        raise errors.not_found(res.plural, target.name, group=res.group)
    # As metrics-server answers (and every list of the real API): the items of a list carry
    # no kind or apiVersion of their own, only a single GET does.
    bare = [{k: v for k, v in item.items() if k not in ("kind", "apiVersion")} for item in items]
    return json_response(
        {"kind": res.list_kind, "apiVersion": res.api_version, "metadata": {}, "items": bare}
    )


async def close_watches(state: ApiState) -> None:
    """End every watch stream now (shutdown, or the server 'going down')."""
    state.store.close_subscriptions()
    pending = list(state.watches)
    if pending:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait(pending, timeout=1.0)
