"""Authorization as a cluster with RBAC shows it to a user bound to nothing.

kubesim has one all-powerful token, but a client must also cope with a token that
authenticates and may do nothing: kube-apiserver answers it ``403 Forbidden`` with a Status
that names the user, the verb, the resource and the scope, while discovery (``/api``,
``/apis``, ``/version``, ``/openapi``) stays open to every authenticated user through the
``system:discovery`` and ``system:public-info-viewer`` bindings.
"""

from __future__ import annotations

from kubesim.errors import ApiError

_OPEN_TO_AUTHENTICATED = ("/version", "/healthz", "/livez", "/readyz", "/openapi")


def is_discovery(path: str, *, served_group_version: bool) -> bool:
    """Whether ``path`` is readable by any authenticated user."""
    if path in ("/api", "/apis") or path.startswith(_OPEN_TO_AUTHENTICATED):
        return True
    return served_group_version


def verb(method: str, *, named: bool, watch: bool) -> str:
    """The RBAC verb of a request, as the apiserver's RequestInfoFactory derives it."""
    if method == "GET":
        if watch:
            return "watch"
        return "get" if named else "list"
    if method == "DELETE":
        return "delete" if named else "deletecollection"
    return {"POST": "create", "PUT": "update", "PATCH": "patch"}.get(method, method.lower())


def forbidden(
    user: str,
    *,
    verb: str,
    plural: str,
    group: str,
    namespace: str | None,
    name: str | None,
    subresource: str | None = None,
) -> ApiError:
    """The 403 the RBAC authorizer's denial becomes (``errors.NewForbidden``)."""
    qualified = f"{plural}.{group}" if group else plural
    resource = f"{plural}/{subresource}" if subresource else plural
    scope = f'in the namespace "{namespace}"' if namespace else "at the cluster scope"
    subject = f'{qualified} "{name}"' if name else qualified
    details: dict[str, str] = {}
    if name:
        details["name"] = name
    if group:
        details["group"] = group
    details["kind"] = plural
    return ApiError(
        403,
        "Forbidden",
        f'{subject} is forbidden: User "{user}" cannot {verb} resource "{resource}" '
        f'in API group "{group}" {scope}',
        details=details,
    )
