"""Kubernetes API clients built from a sanitized kubeconfig, and the connection probe.

``kubernetes_asyncio.config.load_kube_config*`` would re-open every door the sanitizer closed
(exec plugins, token files, proxies) and, without an explicit ``client_configuration``, would
replace the process-wide default configuration shared by every cluster. So we never call it:
:func:`build_configuration` fills a fresh ``Configuration`` field by field from a
:class:`~app.kubeconfig.SanitizedKubeconfig`, and ``Configuration.set_default`` is never used.

The one place the library insists on files is TLS: ``RESTClientObject.__init__`` builds its
``ssl.SSLContext`` from ``ssl_ca_cert``/``cert_file``/``key_file`` *paths*. We write those
into a private 0700 directory (RAM-backed ``/dev/shm`` when available, so a key never reaches
a disk), build the ``ApiClient`` (which loads them into the SSL context synchronously), and
delete them before anyone can use the client. No credential file outlives that constructor.

Every request made through :func:`open_api_client` gets the caller's connect/read timeouts
unless the call passes its own ``_request_timeout`` (watches should: their read timeout must
exceed the server-side ``timeoutSeconds``). Without this, the generated client would wait
forever on a silent server.

The library's own HTTP session is not used either, because it is built for a trusted
kubeconfig: it trusts the process environment (``HTTPS_PROXY``, ``~/.netrc`` credentials sent
as Basic auth), follows redirects to any origin, and connects wherever DNS points. Ours
(:class:`_TenantRESTClient`) trusts nothing from the environment, never follows a redirect
(a 3xx ends the request as :class:`RedirectRefused`), and resolves and connects only through the
:mod:`app.network_guard` policy the caller passes, so every connection is checked.

:func:`probe_connection` answers "can we reach this cluster?" for ``testClusterConnection``:
it never raises for network trouble, and its error text is scrubbed of every credential.
"""

from __future__ import annotations

import asyncio
import base64
import os
import re
import shutil
import ssl
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp.client_middlewares import ClientHandlerType
from kubernetes_asyncio.client import ApiClient, Configuration
from kubernetes_asyncio.client.exceptions import ApiException
from kubernetes_asyncio.client.rest import RESTClientObject

from app.kubeconfig import SanitizedKubeconfig
from app.network_guard import GuardedResolver, NetworkPolicy, guarded_socket_factory, refusal_in

__all__ = [
    "ConnectionProbe",
    "RedirectRefused",
    "TlsFiles",
    "build_configuration",
    "open_api_client",
    "probe_connection",
    "tls_credential_files",
]

_RAM_SCRATCH = "/dev/shm"
_ERROR_MAX_CHARS = 300
_REDACTED = "[redacted]"
_AUTH_SCHEME_VALUE = re.compile(r"(?i)\b(bearer|basic)\s+[^\s,;'\"]+")


@dataclass(frozen=True, kw_only=True)
class ConnectionProbe:
    """Outcome of one reachability check.

    ``reachable`` means an HTTP answer came back from the API server (even a 401);
    ``error`` is set whenever the check did not fully succeed. ``ok`` combines both.
    """

    reachable: bool
    server_version: str | None = None
    latency_ms: float | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.reachable and self.error is None


@dataclass(frozen=True, kw_only=True)
class TlsFiles:
    """Paths handed to the client library for the SSL context; ``None`` when not needed."""

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None


def build_configuration(kc: SanitizedKubeconfig) -> Configuration:
    """A fresh ``Configuration`` for one cluster: host, TLS policy and credentials.

    TLS file paths are left empty; :func:`open_api_client` supplies them only for the
    moment the SSL context is built.
    """
    configuration = Configuration(host=kc.server_url)
    configuration.verify_ssl = not kc.insecure_skip_tls_verify
    configuration.tls_server_name = kc.tls_server_name
    configuration.proxy = None
    authorization = _authorization_value(kc)
    if authorization is not None:
        # The generated client sends api_key["BearerToken"] verbatim as the Authorization
        # header; the scheme is part of the value, exactly as the library's own loader does.
        configuration.api_key["BearerToken"] = authorization
    return configuration


def _authorization_value(kc: SanitizedKubeconfig) -> str | None:
    if kc.token is not None:
        return f"Bearer {kc.token}"
    if kc.username is not None and kc.password is not None:
        pair = f"{kc.username}:{kc.password}".encode()
        return "Basic " + base64.b64encode(pair).decode("ascii")
    return None


@contextmanager
def tls_credential_files(
    kc: SanitizedKubeconfig, *, root: str | os.PathLike[str] | None = None
) -> Iterator[TlsFiles]:
    """Write the CA, client certificate and key into a private directory, for one moment.

    The directory is created 0700 (``tempfile.mkdtemp``) under ``root`` (default: ``/dev/shm``
    if writable, else the system temp dir), files are created 0600 with ``O_EXCL`` and
    ``O_NOFOLLOW``, and the whole directory is removed when the block exits.
    """
    needs_files = kc.server_url.lower().startswith("https://") and (
        kc.certificate_authority_data is not None or kc.client_certificate_data is not None
    )
    if not needs_files:
        yield TlsFiles()
        return
    directory = tempfile.mkdtemp(prefix="fleetgraph-tls-", dir=root or _scratch_root())
    try:
        yield TlsFiles(
            ca_file=_write_private(directory, "ca.crt", kc.certificate_authority_data),
            cert_file=_write_private(directory, "client.crt", kc.client_certificate_data),
            key_file=_write_private(directory, "client.key", kc.client_key_data),
        )
    finally:
        shutil.rmtree(directory)


def _scratch_root() -> str | None:
    if os.path.isdir(_RAM_SCRATCH) and os.access(_RAM_SCRATCH, os.W_OK | os.X_OK):
        return _RAM_SCRATCH
    return None


def _write_private(directory: str, name: str, data: bytes | None) -> str | None:
    if data is None:
        return None
    path = os.path.join(directory, name)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(path, flags, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)
    return path


# Watch events with large objects exceed aiohttp's default read buffer (the library's value).
_READ_BUFFER_BYTES = 2**21


def _ssl_context(configuration: Configuration) -> ssl.SSLContext:
    """The TLS policy of one cluster: its CA (else the system's), its client certificate,
    and verification off only when the kubeconfig said ``insecure-skip-tls-verify``."""
    context = ssl.create_default_context(cafile=configuration.ssl_ca_cert)
    if configuration.cert_file:
        context.load_cert_chain(configuration.cert_file, keyfile=configuration.key_file)
    if not configuration.verify_ssl:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


class RedirectRefused(aiohttp.ClientError):
    """The API server answered a redirect. It is never followed: a registered server must not
    be able to send FleetGraph (and the cluster's credentials) to another origin, and where it
    pointed is not repeated (it may name an internal address)."""

    def __init__(self, status: int) -> None:
        super().__init__(f"the API server answered with a redirect (HTTP {status}), which "
                         "FleetGraph never follows")
        self.status = status


async def _refuse_redirects(
    request: aiohttp.ClientRequest, handler: ClientHandlerType
) -> aiohttp.ClientResponse:
    """Session middleware: every response passes here before aiohttp's redirect loop, so a
    3xx ends the request whatever ``allow_redirects`` the caller passed."""
    response = await handler(request)
    if 300 <= response.status < 400:
        response.release()
        raise RedirectRefused(response.status)
    return response


class _TenantRESTClient(RESTClientObject):
    """The library's REST client (its request building is kept) over a session we build.

    ``RESTClientObject.__init__`` is deliberately not called: the session it builds trusts
    the environment, follows redirects and connects anywhere. ``request`` needs only the
    attributes set here."""

    def __init__(self, configuration: Configuration, *, network: NetworkPolicy) -> None:
        # ``request`` passes these on only when truthy: no SNI override unless configured, and
        # never a proxy.
        self.server_hostname = configuration.tls_server_name or ""
        self.proxy = ""
        self.proxy_headers = {}
        connector = aiohttp.TCPConnector(
            limit=configuration.connection_pool_maxsize,
            ssl=_ssl_context(configuration),
            resolver=GuardedResolver(network),
            socket_factory=guarded_socket_factory(network),
        )
        self.pool_manager = aiohttp.ClientSession(
            connector=connector,
            trust_env=False,  # no HTTP(S)_PROXY, no ~/.netrc credentials
            read_bufsize=_READ_BUFFER_BYTES,
            middlewares=(_refuse_redirects,),
        )


class _TenantApiClient(ApiClient):
    """An ``ApiClient`` on :class:`_TenantRESTClient` whose requests default to the caller's
    connect/read timeouts."""

    def __init__(
        self,
        configuration: Configuration,
        *,
        timeout: aiohttp.ClientTimeout,
        network: NetworkPolicy,
    ) -> None:
        super().__init__(configuration=configuration)
        # The constructor above built the library's session; it never sends a request.
        self._unused_rest_client = self.rest_client
        self.rest_client = _TenantRESTClient(configuration, network=network)
        self._default_request_timeout = timeout

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        if kwargs.get("_request_timeout") is None:
            kwargs["_request_timeout"] = self._default_request_timeout
        return super().request(method, url, *args, **kwargs)

    async def close(self) -> None:
        try:
            await self._unused_rest_client.close()
        finally:
            await super().close()


@asynccontextmanager
async def open_api_client(
    kc: SanitizedKubeconfig,
    *,
    connect_timeout: float,
    read_timeout: float,
    network: NetworkPolicy,
    scratch_root: str | os.PathLike[str] | None = None,
) -> AsyncIterator[ApiClient]:
    """An ``ApiClient`` for one cluster, closed on exit; no credential file exists while
    it is open. Every connection it makes is checked against ``network`` (no default: each
    caller states its policy). ``scratch_root`` is where the private TLS directory goes."""
    if connect_timeout <= 0 or read_timeout <= 0:
        raise ValueError("connect_timeout and read_timeout must be positive")
    configuration = build_configuration(kc)
    timeout = aiohttp.ClientTimeout(
        total=None, connect=connect_timeout, sock_connect=connect_timeout, sock_read=read_timeout
    )
    async with AsyncExitStack() as stack:
        with tls_credential_files(kc, root=scratch_root) as files:
            configuration.ssl_ca_cert = files.ca_file
            configuration.cert_file = files.cert_file
            configuration.key_file = files.key_file
            client = _TenantApiClient(configuration, timeout=timeout, network=network)
            stack.push_async_callback(client.close)
        # The SSL context now holds the certificates in memory; forget the deleted paths.
        configuration.ssl_ca_cert = configuration.cert_file = configuration.key_file = None
        yield client


# The timeout is part of the probe's contract (the GraphQL layer reports it), not a knob
# callers could replace with their own asyncio.timeout, hence the noqa.
async def probe_connection(
    kc: SanitizedKubeconfig, *, timeout: float, network: NetworkPolicy  # noqa: ASYNC109
) -> ConnectionProbe:
    """GET ``/version`` with the cluster's credentials within ``timeout`` seconds.

    Never raises for network, TLS or HTTP failures; they come back as ``error`` text that
    names the cause and never contains a token, password or key.
    """
    started: float | None = None
    try:
        async with (
            asyncio.timeout(timeout),
            open_api_client(
                kc, connect_timeout=timeout, read_timeout=timeout, network=network
            ) as api,
        ):
            started = time.monotonic()
            version = await _fetch_version(api)
            latency_ms = _elapsed_ms(started)
    except TimeoutError:
        return ConnectionProbe(
            reachable=False,
            error=f"timed out after {timeout:g}s waiting for {_scrub(kc.server_url, kc)}",
        )
    except ApiException as exc:
        return ConnectionProbe(
            reachable=True,
            latency_ms=_elapsed_ms(started),
            error=_describe_http_error(exc, kc),
        )
    except RedirectRefused as exc:
        return ConnectionProbe(reachable=True, latency_ms=_elapsed_ms(started), error=str(exc))
    except Exception as exc:  # network, TLS and protocol errors all become a clean message
        return ConnectionProbe(reachable=False, error=_describe_exception(exc, kc))
    if version is None:
        return ConnectionProbe(
            reachable=True,
            latency_ms=latency_ms,
            error="the server's /version answer has no gitVersion; is this a Kubernetes API "
            "server?",
        )
    return ConnectionProbe(reachable=True, server_version=version, latency_ms=latency_ms)


async def _fetch_version(api: ApiClient) -> str | None:
    """``gitVersion`` from ``/version``, read leniently (not every server fills VersionInfo)."""
    body = await api.call_api(
        "/version",
        "GET",
        header_params={"Accept": "application/json"},
        auth_settings=["BearerToken"],
        response_types_map={200: "object"},
        _return_http_data_only=True,
    )
    version = body.get("gitVersion") if isinstance(body, dict) else None
    return version if isinstance(version, str) and version else None


def _elapsed_ms(started: float | None) -> float | None:
    if started is None:
        return None
    return round((time.monotonic() - started) * 1000, 3)


def _describe_http_error(exc: ApiException, kc: SanitizedKubeconfig) -> str:
    status = exc.status
    reason = _clean(str(exc.reason or ""), kc)[:80]
    meaning = {
        401: "the API server rejected the credentials",
        403: "the credentials are not allowed to read /version",
    }.get(status, "the API server answered with an error")
    return _truncate(f"{meaning} (HTTP {status} {reason})".replace(" )", ")"))


def _describe_exception(exc: BaseException, kc: SanitizedKubeconfig) -> str:
    refused = refusal_in(exc)
    if refused is not None:
        return _truncate(f"connection refused by FleetGraph: {_clean(str(refused.strerror), kc)}")
    if isinstance(exc, aiohttp.ClientConnectorCertificateError | aiohttp.ClientSSLError):
        prefix = "TLS handshake failed"
    elif isinstance(exc, aiohttp.ClientConnectorError | ConnectionError):
        prefix = "cannot connect"
    else:
        prefix = "request failed"
    return _truncate(f"{prefix}: {type(exc).__name__}: {_clean(str(exc), kc)}")


def _clean(text: str, kc: SanitizedKubeconfig) -> str:
    return re.sub(r"[\x00-\x1f\x7f]+", " ", _scrub(text, kc)).strip()


def _scrub(text: str, kc: SanitizedKubeconfig) -> str:
    """Remove every credential of ``kc`` (and any Authorization value) from ``text``."""
    for secret in sorted(kc.secret_values(), key=len, reverse=True):
        text = text.replace(secret, _REDACTED)
    return _AUTH_SCHEME_VALUE.sub(lambda match: f"{match.group(1)} {_REDACTED}", text)


def _truncate(text: str) -> str:
    if len(text) <= _ERROR_MAX_CHARS:
        return text
    return text[: _ERROR_MAX_CHARS - 1] + "…"
