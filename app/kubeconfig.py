"""The hostile-kubeconfig sanitizer: the only door a user's kubeconfig comes through.

A kubeconfig is not data, it is a program: ``kubernetes_asyncio.config`` will run an ``exec``
plugin or an ``auth-provider`` command, read ``tokenFile`` and certificate *paths* from the
server's disk, and send traffic (with credentials) through a ``proxy-url``. A tenant who could
register such a kubeconfig would run commands on, or read files from, FleetGraph itself.

So nothing the user sends reaches the client library. This module parses the text with
PyYAML's safe loader (no object construction), walks only the chosen context's cluster and user,
accepts an allow-list of *inline* values, validates them (base64, PEM, key matches certificate,
URL shape, lengths, characters) and returns a :class:`SanitizedKubeconfig` holding only those
values. Everything else, including unrelated contexts, is dropped. It never executes, reads or
fetches anything.

Parsing is itself an attack surface: a megabyte of tiny YAML nodes takes the pure-Python
parser many seconds. The loader therefore stops at a node budget, a nesting depth and a
deadline, and :func:`sanitize_kubeconfig_off_loop` runs the whole check in a small dedicated
thread pool, so a hostile document never holds the event loop (nor the default executor
aiohttp resolves names in). YAML error messages keep only the position and a fixed description
of the problem: PyYAML's own messages quote anchors, tags and characters from the document,
and a document can put a password there.

Plain ``http://`` is accepted only for loopback servers (``localhost``, ``*.localhost``,
``127.0.0.0/8`` in any spelling, ``::1``): local development clusters (kind, k3d, kubesim).
Anywhere else a bearer token or password would cross the network in clear text. *Where* a
server may point at all is not decided here but by :mod:`app.network_guard`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import functools
import ipaddress
import re
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import SplitResult, urlsplit

import yaml
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

from app.network_guard import literal_address, server_host

__all__ = [
    "MAX_KUBECONFIG_BYTES",
    "MAX_KUBECONFIG_DEPTH",
    "MAX_KUBECONFIG_ENTRIES",
    "MAX_KUBECONFIG_NODES",
    "PARSE_TIME_LIMIT_S",
    "KubeconfigError",
    "SanitizedKubeconfig",
    "is_loopback_host",
    "sanitize_kubeconfig",
    "sanitize_kubeconfig_off_loop",
]

MAX_KUBECONFIG_BYTES: Final = 1024 * 1024
# A kubeconfig of 500 contexts (each with its cluster and user) is about 15,000 nodes; parsing
# 25,000 costs the pure-Python loader up to about a second of one worker thread.
MAX_KUBECONFIG_NODES: Final = 25_000
MAX_KUBECONFIG_DEPTH: Final = 64
MAX_KUBECONFIG_ENTRIES: Final = 1_000  # per clusters, users and contexts
PARSE_TIME_LIMIT_S: Final = 5.0
_MAX_NAME_CHARS: Final = 253
_MAX_SERVER_CHARS: Final = 2048
_MAX_TOKEN_CHARS: Final = 16 * 1024  # EKS and OIDC tokens run to a few KiB
_MAX_USERNAME_CHARS: Final = 256
_MAX_PASSWORD_CHARS: Final = 1024

_CLUSTER_ALLOWED: Final = frozenset(
    {"server", "certificate-authority-data", "insecure-skip-tls-verify", "tls-server-name"}
)
_USER_ALLOWED: Final = frozenset(
    {"client-certificate-data", "client-key-data", "token", "username", "password"}
)
_CONTEXT_ALLOWED: Final = frozenset({"cluster", "user", "namespace"})
# Tool metadata (minikube, kind) that no client acts on; accepted and dropped.
_IGNORED: Final = frozenset({"extensions"})

_LOCAL_FILE_HINT = "FleetGraph never reads files from its own disk; inline the content"
_REFUSED_USER: Final[Mapping[str, str]] = {
    "exec": "runs a local command to obtain credentials; only inline credentials "
    "(token, username/password, client-certificate-data/client-key-data) are accepted",
    "auth-provider": "runs a credential plugin (which can execute a command or contact an "
    "identity provider); only inline credentials are accepted",
    "tokenFile": f"reads a token from a local file; {_LOCAL_FILE_HINT} as `token`",
    "client-certificate": f"is a local file path; {_LOCAL_FILE_HINT} as "
    "`client-certificate-data`",
    "client-key": f"is a local file path; {_LOCAL_FILE_HINT} as `client-key-data`",
    "as": "impersonation is not supported",
    "as-uid": "impersonation is not supported",
    "as-groups": "impersonation is not supported",
    "as-user-extra": "impersonation is not supported",
}
_REFUSED_CLUSTER: Final[Mapping[str, str]] = {
    "certificate-authority": f"is a local file path; {_LOCAL_FILE_HINT} as "
    "`certificate-authority-data`",
    "proxy-url": "would route API traffic, credentials included, through a proxy; "
    "proxies are not supported",
}
_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$"
)
# Like _HOSTNAME, but underscores occur in real internal DNS names, and resolvers accept them.
_SERVER_HOST = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
    r"(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)*$"
)
# RFC 6750 b64token plus the characters real tokens use; no whitespace, no control characters.
_TOKEN = re.compile(r"^[\x21-\x7e]+$")
_PRINTABLE = re.compile(r"^[^\x00-\x1f\x7f]*$")
_NAME_IN_PATH_MAX = 64


class KubeconfigError(ValueError):
    """A kubeconfig was refused. ``field`` is a dotted path, ``reason`` says why.

    Neither ever contains a credential value, so both are safe to show to the user.
    """

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


@dataclass(frozen=True, repr=False, kw_only=True)
class SanitizedKubeconfig:
    """The accepted values of one context, and nothing else.

    PEM fields hold decoded PEM bytes. ``token``, ``password`` and ``client_key_data`` are
    secrets: ``repr`` redacts them, and callers store this object only via ``to_dict()``
    sealed in the vault.
    """

    context_name: str
    cluster_name: str
    user_name: str | None
    namespace: str | None
    server: str
    certificate_authority_data: bytes | None = None
    insecure_skip_tls_verify: bool = False
    tls_server_name: str | None = None
    client_certificate_data: bytes | None = None
    client_key_data: bytes | None = None
    token: str | None = None
    username: str | None = None
    password: str | None = None

    @property
    def server_url(self) -> str:
        """The API server URL (no trailing slash)."""
        return self.server

    @property
    def auth_method(self) -> str:
        """How the client authenticates: ``token``, ``basic``, ``client-certificate``,
        ``token+client-certificate`` or ``none``. Safe to display."""
        methods = []
        if self.token is not None:
            methods.append("token")
        if self.username is not None:
            methods.append("basic")
        if self.client_certificate_data is not None:
            methods.append("client-certificate")
        return "+".join(methods) or "none"

    def secret_values(self) -> tuple[str, ...]:
        """Every secret string this kubeconfig holds, for scrubbing messages."""
        values: list[str] = []
        for secret in (self.token, self.password):
            if secret:
                values.append(secret)
        if self.username is not None and self.password is not None:
            pair = f"{self.username}:{self.password}".encode()
            values.append(base64.b64encode(pair).decode("ascii"))
        if self.client_key_data:
            pem = self.client_key_data.decode("ascii", "replace")
            values.extend(line for line in pem.splitlines() if len(line) >= 16)
            values.append(base64.b64encode(self.client_key_data).decode("ascii"))
        return tuple(values)

    def to_dict(self) -> dict[str, Any]:
        """A minimal, clean kubeconfig of just this context (the form that gets sealed)."""
        cluster: dict[str, Any] = {"server": self.server}
        if self.certificate_authority_data is not None:
            cluster["certificate-authority-data"] = _b64(self.certificate_authority_data)
        if self.insecure_skip_tls_verify:
            cluster["insecure-skip-tls-verify"] = True
        if self.tls_server_name is not None:
            cluster["tls-server-name"] = self.tls_server_name
        context: dict[str, Any] = {"cluster": self.cluster_name}
        users: list[dict[str, Any]] = []
        if self.user_name is not None:
            context["user"] = self.user_name
            users.append({"name": self.user_name, "user": self._user_dict()})
        if self.namespace is not None:
            context["namespace"] = self.namespace
        return {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": self.cluster_name, "cluster": cluster}],
            "users": users,
            "contexts": [{"name": self.context_name, "context": context}],
            "current-context": self.context_name,
        }

    def to_yaml(self) -> str:
        """``to_dict()`` as YAML text, ready to encode and seal."""
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def _user_dict(self) -> dict[str, Any]:
        user: dict[str, Any] = {}
        if self.client_certificate_data is not None:
            user["client-certificate-data"] = _b64(self.client_certificate_data)
        if self.client_key_data is not None:
            user["client-key-data"] = _b64(self.client_key_data)
        if self.token is not None:
            user["token"] = self.token
        if self.username is not None:
            user["username"] = self.username
        if self.password is not None:
            user["password"] = self.password
        return user

    def __repr__(self) -> str:
        def shown(value: object) -> str:
            return "None" if value is None else "<redacted>"

        def size(value: bytes | None) -> str:
            return "None" if value is None else f"<{len(value)} bytes PEM>"

        return (
            f"SanitizedKubeconfig(context_name={self.context_name!r}, "
            f"cluster_name={self.cluster_name!r}, user_name={self.user_name!r}, "
            f"namespace={self.namespace!r}, server={self.server!r}, "
            f"certificate_authority_data={size(self.certificate_authority_data)}, "
            f"insecure_skip_tls_verify={self.insecure_skip_tls_verify!r}, "
            f"tls_server_name={self.tls_server_name!r}, "
            f"client_certificate_data={size(self.client_certificate_data)}, "
            f"client_key_data={shown(self.client_key_data)}, token={shown(self.token)}, "
            f"username={self.username!r}, password={shown(self.password)})"
        )

    __str__ = __repr__


# Two workers: hostile documents queue behind each other instead of taking every thread.
_PARSER_POOL = ThreadPoolExecutor(max_workers=2, thread_name_prefix="fleetgraph-kubeconfig")


async def sanitize_kubeconfig_off_loop(
    text: str, *, context: str | None = None
) -> SanitizedKubeconfig:
    """:func:`sanitize_kubeconfig` in a worker thread, for kubeconfigs straight from a user.

    The loader's own budget and deadline bound the work; waiting is bounded as well (a
    request queued behind others gives up rather than hang)."""
    loop = asyncio.get_running_loop()
    work = functools.partial(sanitize_kubeconfig, text, context=context)
    try:
        return await asyncio.wait_for(
            loop.run_in_executor(_PARSER_POOL, work), timeout=2 * PARSE_TIME_LIMIT_S
        )
    except TimeoutError:
        raise KubeconfigError(
            "kubeconfig", "could not be checked in time (the server is busy); try again"
        ) from None


def sanitize_kubeconfig(text: str, *, context: str | None = None) -> SanitizedKubeconfig:
    """Parse an untrusted kubeconfig and keep only the inline credentials of one context.

    ``context`` picks a context by name; otherwise ``current-context`` is used, or the only
    context if there is exactly one. Raises :class:`KubeconfigError` naming the field.
    CPU-bound up to :data:`PARSE_TIME_LIMIT_S`: on the event loop, use
    :func:`sanitize_kubeconfig_off_loop`.
    """
    if context is not None:
        _check_name(context, field="context")
    document = _parse(text)
    clusters = _named_list(document, "clusters")
    users = _named_list(document, "users")
    contexts = _named_list(document, "contexts")
    context_name, context_body = _choose_context(document, contexts, requested=context)
    context_path = f"contexts[{_shown(context_name)}].context"
    _reject_fields(context_body, path=context_path, allowed=_CONTEXT_ALLOWED, refused={})

    cluster_name = _required_name(context_body, "cluster", path=context_path)
    cluster = _lookup(clusters, cluster_name, kind="cluster", referrer=f"{context_path}.cluster")
    cluster_path = f"clusters[{_shown(cluster_name)}].cluster"
    _reject_fields(cluster, path=cluster_path, allowed=_CLUSTER_ALLOWED, refused=_REFUSED_CLUSTER)

    user_name = _optional_name(context_body, "user", path=context_path)
    user: Mapping[str, Any] = {}
    user_path = "users[].user"
    if user_name is not None:
        user = _lookup(users, user_name, kind="user", referrer=f"{context_path}.user")
        user_path = f"users[{_shown(user_name)}].user"
        _reject_fields(user, path=user_path, allowed=_USER_ALLOWED, refused=_REFUSED_USER)

    return SanitizedKubeconfig(
        context_name=context_name,
        cluster_name=cluster_name,
        user_name=user_name,
        namespace=_namespace(context_body, path=context_path),
        **_cluster_values(cluster, path=cluster_path),
        **_user_values(user, path=user_path),
    )


# --- parsing and structure -------------------------------------------------------------


class _TooLarge(Exception):
    """The document went over a parsing budget; the message is the user-facing reason."""


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader with a node budget, a depth limit and a deadline.

    ``compose_node`` runs once per node (an alias counts once and is not re-walked), so the
    budget bounds the whole parse, and construction after it. ``construct_object`` remembers
    where it is, so a value that fails to construct can be reported by position alone."""

    def __init__(self, text: str, *, deadline: float) -> None:
        super().__init__(text)
        self._deadline = deadline
        self._nodes = 0
        self._depth = 0
        self.current_mark: yaml.Mark | None = None

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        self._nodes += 1
        if self._nodes > MAX_KUBECONFIG_NODES:
            raise _TooLarge(
                f"has more than {MAX_KUBECONFIG_NODES} YAML nodes; a kubeconfig this large is "
                "refused (register one context at a time)"
            )
        if self._nodes % 256 == 0 and time.monotonic() > self._deadline:
            raise _TooLarge(f"took longer than {PARSE_TIME_LIMIT_S:g}s to parse")
        self._depth += 1
        try:
            if self._depth > MAX_KUBECONFIG_DEPTH:
                raise _TooLarge(f"is nested deeper than {MAX_KUBECONFIG_DEPTH} levels")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        self.current_mark = node.start_mark
        return super().construct_object(node, deep=deep)


# PyYAML problem texts quote the document (anchors, tags, characters). Only these fixed
# descriptions are ever shown; the table is matched on the problem's constant prefix.
_YAML_PROBLEMS: Final[tuple[tuple[str, str], ...]] = (
    ("found undefined alias", "an alias (*name) refers to an anchor that is not defined"),
    ("found duplicate anchor", "an anchor (&name) is defined twice"),
    ("could not determine a constructor", "a tag that is not accepted (no custom tags)"),
    ("found undefined tag handle", "a tag handle that is not defined"),
    ("found unhashable key", "a mapping key that is not a plain value"),
    ("found character that cannot start any token", "a character that cannot start a token"),
    ("mapping values are not allowed here", "a mapping value where none is allowed"),
    ("found unknown escape character", "an unknown escape sequence in a quoted string"),
    ("found a tab character", "a tab character where indentation was expected"),
)
_YAML_ERROR_KINDS: Final[tuple[tuple[type[yaml.YAMLError], str], ...]] = (
    (yaml.scanner.ScannerError, "a syntax error"),
    (yaml.parser.ParserError, "a structure error"),
    (yaml.composer.ComposerError, "an anchor or alias error"),
    (yaml.constructor.ConstructorError, "a value that cannot be read"),
)


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """A description of a YAML error by its class and position only."""
    if isinstance(exc, yaml.reader.ReaderError):
        return f"a character YAML does not allow, at position {exc.position}"
    problem = getattr(exc, "problem", None) or ""
    description = next(
        (text for prefix, text in _YAML_PROBLEMS if problem.startswith(prefix)), None
    )
    if description is None:
        description = next(
            (text for kind, text in _YAML_ERROR_KINDS if isinstance(exc, kind)), "an error"
        )
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    return description + _position(mark)


def _position(mark: yaml.Mark | None) -> str:
    return f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""


def _parse(text: str) -> Mapping[str, Any]:
    if not isinstance(text, str):
        raise KubeconfigError("kubeconfig", "must be YAML text")
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_KUBECONFIG_BYTES:
        raise KubeconfigError(
            "kubeconfig", f"is {size} bytes; the limit is {MAX_KUBECONFIG_BYTES} bytes (1 MiB)"
        )
    loader: _BoundedLoader | None = None
    try:
        # The reader checks every character as it is built, so building is inside the try.
        loader = _BoundedLoader(text, deadline=time.monotonic() + PARSE_TIME_LIMIT_S)
        document = loader.get_single_data()
    except _TooLarge as exc:
        raise KubeconfigError("kubeconfig", str(exc)) from None
    except yaml.YAMLError as exc:
        raise KubeconfigError("kubeconfig", f"is not valid YAML: {_yaml_problem(exc)}") from None
    except RecursionError:
        raise KubeconfigError("kubeconfig", "is nested too deeply to be a kubeconfig") from None
    except Exception:  # a constructor's own error (a bad !!int or date) quotes the value
        where = _position(loader.current_mark if loader is not None else None)
        raise KubeconfigError(
            "kubeconfig", f"is not valid YAML: a value that cannot be read{where}"
        ) from None
    finally:
        if loader is not None:
            loader.dispose()
    if not isinstance(document, dict):
        raise KubeconfigError("kubeconfig", "must be a YAML mapping with clusters, users, contexts")
    return document


def _named_list(document: Mapping[str, Any], key: str) -> list[tuple[str, Any]]:
    """``(name, body)`` pairs of a top-level list such as ``clusters``."""
    entries = document.get(key)
    if entries is None:
        entries = []
    if not isinstance(entries, list):
        raise KubeconfigError(key, "must be a list")
    if len(entries) > MAX_KUBECONFIG_ENTRIES:
        raise KubeconfigError(
            key, f"has {len(entries)} entries; the limit is {MAX_KUBECONFIG_ENTRIES}"
        )
    body_key = key[:-1]
    pairs: list[tuple[str, Any]] = []
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise KubeconfigError(f"{key}[{index}]", "must be a mapping with name and "
                                  f"{body_key}")
        name = entry.get("name")
        if not isinstance(name, str) or not name:
            raise KubeconfigError(f"{key}[{index}].name", "must be a non-empty string")
        _check_name(name, field=f"{key}[{index}].name")
        pairs.append((name, entry.get(body_key)))
    return pairs


def _check_name(name: str, *, field: str) -> None:
    """Names end up in the database, in error paths and on screens: bounded and printable."""
    if len(name) > _MAX_NAME_CHARS:
        raise KubeconfigError(field, f"must be at most {_MAX_NAME_CHARS} characters")
    if not _PRINTABLE.fullmatch(name):
        raise KubeconfigError(field, "must not contain control characters")


def _choose_context(
    document: Mapping[str, Any], contexts: list[tuple[str, Any]], *, requested: str | None
) -> tuple[str, Mapping[str, Any]]:
    names = [name for name, _ in contexts]
    available = _listing(names)
    if requested is not None:
        wanted, field = requested, "context"
    else:
        current = document.get("current-context")
        if current not in (None, "") and not isinstance(current, str):
            raise KubeconfigError("current-context", "must be a string")
        if current:
            wanted, field = current, "current-context"
        elif len(contexts) == 1:
            wanted, field = names[0], "contexts"
        elif not contexts:
            raise KubeconfigError("contexts", "the kubeconfig has no contexts")
        else:
            raise KubeconfigError(
                "current-context",
                f"is not set and the kubeconfig has {len(contexts)} contexts ({available}); "
                "choose one",
            )
    matches = [body for name, body in contexts if name == wanted]
    if not matches:
        raise KubeconfigError(
            field, f"names context {_shown(wanted)!r}, which is not in contexts ({available})"
        )
    if len(matches) > 1:
        raise KubeconfigError(
            f"contexts[{_shown(wanted)}]", "is ambiguous: more than one context has this name"
        )
    body = matches[0]
    if not isinstance(body, dict):
        raise KubeconfigError(f"contexts[{_shown(wanted)}].context", "must be a mapping")
    return wanted, body


def _lookup(
    entries: list[tuple[str, Any]], name: str, *, kind: str, referrer: str
) -> Mapping[str, Any]:
    matches = [body for entry_name, body in entries if entry_name == name]
    if not matches:
        raise KubeconfigError(referrer, f"names {kind} {_shown(name)!r}, which does not exist")
    if len(matches) > 1:
        raise KubeconfigError(
            f"{kind}s[{_shown(name)}]", f"is ambiguous: more than one {kind} has this name"
        )
    body = matches[0]
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise KubeconfigError(f"{kind}s[{_shown(name)}].{kind}", "must be a mapping")
    return body


def _reject_fields(
    body: Mapping[str, Any], *, path: str, allowed: frozenset[str], refused: Mapping[str, str]
) -> None:
    for key in body:
        if key in allowed or key in _IGNORED:
            continue
        if isinstance(key, str) and key in refused:
            raise KubeconfigError(f"{path}.{key}", refused[key])
        shown = _shown(key) if isinstance(key, str) else f"<{type(key).__name__} key>"
        raise KubeconfigError(
            f"{path}.{shown}",
            f"is not an accepted field; only {', '.join(sorted(allowed))} are accepted here",
        )


def _required_name(body: Mapping[str, Any], key: str, *, path: str) -> str:
    name = _optional_name(body, key, path=path)
    if name is None:
        raise KubeconfigError(f"{path}.{key}", "is required")
    return name


def _optional_name(body: Mapping[str, Any], key: str, *, path: str) -> str | None:
    value = body.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise KubeconfigError(f"{path}.{key}", "must be a string")
    _check_name(value, field=f"{path}.{key}")
    return value


def _namespace(body: Mapping[str, Any], *, path: str) -> str | None:
    namespace = _optional_name(body, "namespace", path=path)
    if namespace is not None and not re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", namespace):
        raise KubeconfigError(f"{path}.namespace", "is not a valid namespace name")
    return namespace


# --- cluster ---------------------------------------------------------------------------


def _cluster_values(cluster: Mapping[str, Any], *, path: str) -> dict[str, Any]:
    server = _server(cluster.get("server"), path=f"{path}.server")
    ca = _pem_certificates(cluster, "certificate-authority-data", path=path)
    insecure = cluster.get("insecure-skip-tls-verify", False)
    if not isinstance(insecure, bool):
        raise KubeconfigError(f"{path}.insecure-skip-tls-verify", "must be true or false")
    if insecure and ca is not None:
        raise KubeconfigError(
            f"{path}.insecure-skip-tls-verify",
            "cannot be combined with certificate-authority-data (as kubectl also refuses)",
        )
    tls_server_name = cluster.get("tls-server-name")
    if tls_server_name is not None and (
        not isinstance(tls_server_name, str) or not _HOSTNAME.fullmatch(tls_server_name)
    ):
        raise KubeconfigError(f"{path}.tls-server-name", "must be a DNS host name")
    return {
        "server": server,
        "certificate_authority_data": ca,
        "insecure_skip_tls_verify": insecure,
        "tls_server_name": tls_server_name,
    }


def _server(value: object, *, path: str) -> str:
    if not isinstance(value, str) or not value:
        raise KubeconfigError(path, "is required and must be a URL string")
    if len(value) > _MAX_SERVER_CHARS:
        raise KubeconfigError(path, f"must be at most {_MAX_SERVER_CHARS} characters")
    if not _PRINTABLE.fullmatch(value) or " " in value:
        raise KubeconfigError(path, "must not contain spaces or control characters")
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        raise KubeconfigError(path, "is not a valid URL") from None
    _check_server_parts(parts, port=port, path=path)
    host = server_host(value)
    if host is None or not _is_server_host(host):
        raise KubeconfigError(path, "has a host that is not a DNS name or an IP address")
    return value.rstrip("/")


def _is_server_host(host: str) -> bool:
    """The host as the HTTP client will use it (IDNA-folded) is an IP literal or a DNS name of
    letters, digits, ``-`` and ``_``: no percent-escapes, NULs or empty labels that would mean
    something else to another parser."""
    if literal_address(host) is not None:
        return True
    return ":" not in host and _SERVER_HOST.fullmatch(host) is not None


def _check_server_parts(parts: SplitResult, *, port: int | None, path: str) -> None:
    scheme = parts.scheme.lower()
    if scheme not in ("https", "http"):
        raise KubeconfigError(path, "must be an https:// URL")
    if not parts.hostname:
        raise KubeconfigError(path, "has no host")
    if parts.username is not None or parts.password is not None:
        raise KubeconfigError(path, "must not carry credentials in the URL")
    if parts.query or parts.fragment:
        raise KubeconfigError(path, "must not have a query string or fragment")
    if port == 0:
        raise KubeconfigError(path, "has an invalid port")
    if scheme == "http" and not is_loopback_host(server_host(parts.geturl()) or ""):
        raise KubeconfigError(
            path,
            "uses plain http to a non-local host, which would send credentials in clear text; "
            "http is allowed only for localhost, 127.0.0.0/8 and ::1",
        )


def is_loopback_host(host: str) -> bool:
    """True for hosts that never leave this machine: ``localhost``, ``*.localhost``,
    ``127.0.0.0/8`` (in any ``inet_aton`` spelling, or IPv4-mapped) and ``::1``. These are
    the only hosts plain http may reach."""
    host = host.strip("[]").rstrip(".").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    address = literal_address(host)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address is not None and address.is_loopback


# --- user ------------------------------------------------------------------------------


def _user_values(user: Mapping[str, Any], *, path: str) -> dict[str, Any]:
    values: dict[str, Any] = {"token": _token(user, path=path)}
    values.update(_basic_auth(user, path=path))
    if values["token"] is not None and values["username"] is not None:
        raise KubeconfigError(
            f"{path}.token", "cannot be combined with username/password; choose one"
        )
    values.update(_client_certificate(user, path=path))
    return values


def _token(user: Mapping[str, Any], *, path: str) -> str | None:
    token = user.get("token")
    if token is None:
        return None
    if not isinstance(token, str) or not token:
        raise KubeconfigError(f"{path}.token", "must be a non-empty string")
    if not _TOKEN.fullmatch(token):
        raise KubeconfigError(
            f"{path}.token", "must be printable ASCII without spaces or line breaks"
        )
    if len(token) > _MAX_TOKEN_CHARS:
        raise KubeconfigError(f"{path}.token", f"must be at most {_MAX_TOKEN_CHARS} characters")
    return token


def _basic_auth(user: Mapping[str, Any], *, path: str) -> dict[str, str | None]:
    username, password = user.get("username"), user.get("password")
    if username is None and password is None:
        return {"username": None, "password": None}
    if username is None or password is None:
        missing = "username" if username is None else "password"
        raise KubeconfigError(f"{path}.{missing}", "is required when the other is set")
    for key, value in (("username", username), ("password", password)):
        if not isinstance(value, str) or not value:
            raise KubeconfigError(
                f"{path}.{key}", "must be a non-empty string (quote it in YAML)"
            )
        if not _PRINTABLE.fullmatch(value):
            raise KubeconfigError(f"{path}.{key}", "must not contain control characters")
    for key, value, limit in (("username", username, _MAX_USERNAME_CHARS),
                              ("password", password, _MAX_PASSWORD_CHARS)):
        if len(value) > limit:
            raise KubeconfigError(f"{path}.{key}", f"must be at most {limit} characters")
    if ":" in username:
        raise KubeconfigError(f"{path}.username", "must not contain ':' (HTTP basic auth)")
    return {"username": username, "password": password}


def _client_certificate(user: Mapping[str, Any], *, path: str) -> dict[str, bytes | None]:
    certificate = _pem_certificates(user, "client-certificate-data", path=path)
    key_present = user.get("client-key-data") is not None
    if certificate is None and not key_present:
        return {"client_certificate_data": None, "client_key_data": None}
    if certificate is None:
        raise KubeconfigError(
            f"{path}.client-certificate-data", "is required when client-key-data is set"
        )
    if not key_present:
        raise KubeconfigError(
            f"{path}.client-key-data", "is required when client-certificate-data is set"
        )
    key_pem = _base64_field(user, "client-key-data", path=path)
    field = f"{path}.client-key-data"
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except TypeError:
        raise KubeconfigError(field, "is an encrypted private key; supply it unencrypted") from None
    except (ValueError, UnsupportedAlgorithm):
        raise KubeconfigError(field, "is not a PEM private key") from None
    leaf = x509.load_pem_x509_certificates(certificate)[0]
    try:
        matches = _public_der(leaf.public_key()) == _public_der(key.public_key())
    except (ValueError, UnsupportedAlgorithm):
        matches = False
    if not matches:
        raise KubeconfigError(field, "does not match the public key of client-certificate-data")
    return {"client_certificate_data": certificate, "client_key_data": key_pem}


# --- encodings -------------------------------------------------------------------------


def _base64_field(body: Mapping[str, Any], key: str, *, path: str) -> bytes:
    value = body.get(key)
    field = f"{path}.{key}"
    if not isinstance(value, str) or not value.strip():
        raise KubeconfigError(field, "must be a non-empty base64 string")
    compact = re.sub(r"\s+", "", value)
    try:
        return base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        raise KubeconfigError(field, "is not valid base64") from None


def _pem_certificates(body: Mapping[str, Any], key: str, *, path: str) -> bytes | None:
    if body.get(key) is None:
        return None
    pem = _base64_field(body, key, path=path)
    try:
        x509.load_pem_x509_certificates(pem)
    except ValueError:
        raise KubeconfigError(f"{path}.{key}", "is not a PEM X.509 certificate") from None
    return pem


def _public_der(public_key: Any) -> bytes:
    der: bytes = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return der


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _shown(name: str) -> str:
    """A user-supplied name made safe and short for an error path."""
    cleaned = re.sub(r"[\x00-\x1f\x7f]", "?", name)
    if len(cleaned) > _NAME_IN_PATH_MAX:
        return cleaned[: _NAME_IN_PATH_MAX - 1] + "…"
    return cleaned


def _listing(names: list[str]) -> str:
    shown = [_shown(name) for name in names[:10]]
    more = f", and {len(names) - 10} more" if len(names) > 10 else ""
    return (", ".join(shown) + more) or "none"
