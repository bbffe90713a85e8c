"""API errors as real Kubernetes ``Status`` objects.

Clients branch on ``code`` and ``reason`` (``NotFound``, ``AlreadyExists``, ``Conflict``,
``Expired``, ``Gone``...), so every failure the emulator produces is raised as an
:class:`ApiError` and rendered as the same ``Status`` document kube-apiserver would send.
"""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """A failure that becomes a ``Status`` response (or a watch ``ERROR`` event)."""

    def __init__(
        self,
        code: int,
        reason: str,
        message: str,
        *,
        details: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        plain_text: str | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details
        self.headers = headers or {}
        # Some answers are not Status objects at all: a path no API group serves gets Go's
        # plain-text "404 page not found" from the apiserver's mux.
        self.plain_text = plain_text

    def status(self) -> dict[str, Any]:
        """The ``meta.k8s.io/v1`` Status body for this error."""
        body: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details:
            body["details"] = self.details
        return body


def _details(kind: str, name: str, group: str) -> dict[str, Any]:
    details: dict[str, Any] = {"name": name, "kind": kind}
    if group:
        details["group"] = group
    return details


def _qualified(plural: str, group: str) -> str:
    return f"{plural}.{group}" if group else plural


def not_found(plural: str, name: str, *, group: str = "") -> ApiError:
    return ApiError(
        404,
        "NotFound",
        f'{_qualified(plural, group)} "{name}" not found',
        details=_details(plural, name, group),
    )


def already_exists(plural: str, name: str, *, group: str = "") -> ApiError:
    return ApiError(
        409,
        "AlreadyExists",
        f'{_qualified(plural, group)} "{name}" already exists',
        details=_details(plural, name, group),
    )


def conflict(plural: str, name: str, *, group: str = "") -> ApiError:
    return ApiError(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {_qualified(plural, group)} "{name}": '
        "the object has been modified; please apply your changes to the latest version "
        "and try again",
        details=_details(plural, name, group),
    )


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def invalid(kind: str, name: str, message: str) -> ApiError:
    return ApiError(
        422,
        "Invalid",
        f'{kind} "{name}" is invalid: {message}',
        details={"name": name, "kind": kind},
    )


def gone(message: str = "The resourceVersion for the provided list is too old.") -> ApiError:
    """410: the requested resourceVersion has been compacted away.

    kube-apiserver gives reason ``Expired`` (``errors.NewResourceExpired``) for every form of
    it: a list or watch from a compacted etcd revision, and a watch older than the watch cache
    (message ``too old resource version: RV (OLDEST)``).
    """
    return ApiError(410, "Expired", message)


WATCH_TOO_OLD = "The resourceVersion for the provided watch is too old."


def expired_continue(message: str | None = None) -> ApiError:
    """410 for a continue token whose snapshot fell out of the history window."""
    return ApiError(
        410,
        "Expired",
        message
        or "The provided continue parameter is too old to display a consistent list result. "
        "You can start a new list without the continue parameter, or use the continue token "
        "in this response to retrieve the remainder of the results.",
    )


def unauthorized() -> ApiError:
    return ApiError(401, "Unauthorized", "Unauthorized")


def method_not_allowed(
    message: str = "the server does not allow this method on the requested resource",
) -> ApiError:
    return ApiError(405, "MethodNotAllowed", message)


def unsupported_media_type(
    content_type: str,
    accepted: tuple[str, ...] = (
        "application/json-patch+json",
        "application/merge-patch+json",
        "application/strategic-merge-patch+json",
    ),
) -> ApiError:
    return ApiError(
        415,
        "UnsupportedMediaType",
        "the body of the request was in an unknown format - accepted media types include: "
        f"{', '.join(accepted)}; got {content_type!r}",
    )


def page_not_found(path: str) -> ApiError:
    """A path no API group serves (e.g. metrics.k8s.io without metrics-server): the
    apiserver's mux answers ``text/plain`` "404 page not found", not a Status."""
    return ApiError(
        404,
        "NotFound",
        f"404 page not found: {path}",
        plain_text="404 page not found\n",
    )


def internal_error(message: str = "Internal error occurred: injected fault") -> ApiError:
    return ApiError(500, "InternalError", message)


def too_many_requests(retry_after: int) -> ApiError:
    return ApiError(
        429,
        "TooManyRequests",
        "The server has received too many requests and has asked us to try again later",
        details={"retryAfterSeconds": retry_after},
        headers={"Retry-After": str(retry_after)},
    )
