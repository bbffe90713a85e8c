"""Clients built from sanitized kubeconfigs, exercised over real HTTP(S) to local servers."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ipaddress
import json
import os
import socket
import ssl
import stat
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from kubernetes_asyncio.client import ApiClient, Configuration, VersionApi
from kubernetes_asyncio.config import load_kube_config_from_dict

from app.kube_client import (
    RedirectRefused,
    build_configuration,
    open_api_client,
    probe_connection,
    tls_credential_files,
)
from app.kubeconfig import KubeconfigError, SanitizedKubeconfig, sanitize_kubeconfig
from app.network_guard import NetworkPolicy
from tests.app.test_kubeconfig import (
    PASSWORD,
    TOKEN,
    Issued,
    TestPki,
    b64,
    cert_user,
    dump,
    kubeconfig,
)

VERSION_INFO = {
    "major": "1",
    "minor": "31",
    "gitVersion": "v1.31.2",
    "gitCommit": "5864a4677267e6adeae276ad85882a8714d69d9d",
    "gitTreeState": "clean",
    "buildDate": "2024-10-22T20:28:14Z",
    "goVersion": "go1.22.8",
    "compiler": "gc",
    "platform": "linux/amd64",
}
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# The servers here listen on loopback, which only a policy allowing local clusters reaches.
LOCAL = NetworkPolicy(allow_local=True)


@pytest.fixture(scope="module")
def pki() -> TestPki:
    return TestPki()


# --- local servers ----------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def serve(
    handler: Handler, *, ssl_context: ssl.SSLContext | None = None
) -> AsyncIterator[int]:
    """Serve ``handler`` for every path on 127.0.0.1:<free port>; yields the port."""
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    site = web.SockSite(runner, sock, ssl_context=ssl_context)
    await site.start()
    try:
        yield port
    finally:
        await runner.cleanup()


class VersionServer:
    """A tiny API server: /version behind an Authorization check, recording every header."""

    def __init__(self, *, expected_authorization: str | None) -> None:
        self.expected = expected_authorization
        self.authorizations: list[str | None] = []
        self.peer_subjects: list[Any] = []

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.authorizations.append(request.headers.get("Authorization"))
        if request.transport is not None:
            self.peer_subjects.append(request.transport.get_extra_info("peercert"))
        if self.expected is not None and request.headers.get("Authorization") != self.expected:
            return web.json_response({"kind": "Status", "code": 401}, status=401)
        if request.path.rstrip("/") != "/version":
            return web.json_response({"kind": "Status", "code": 404}, status=404)
        return web.json_response(VERSION_INFO)


@contextlib.asynccontextmanager
async def hanging_server() -> AsyncIterator[int]:
    """Accepts TCP connections and never answers."""
    writers: list[asyncio.StreamWriter] = []

    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        await reader.read()

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        for writer in writers:
            writer.close()
        server.close()
        await server.wait_closed()


def closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_tls_context(
    pki: TestPki, issued: Issued, tmp_path: Path, *, require_client_cert: bool = False
) -> ssl.SSLContext:
    """The test server's own context (its files live in pytest's tmp_path, not ours)."""
    cert, key = tmp_path / "server.crt", tmp_path / "server.key"
    cert.write_bytes(issued.cert_pem)
    key.write_bytes(issued.key_pem)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    if require_client_cert:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(cadata=pki.ca_pem.decode())
    return context


def process_default() -> object:
    """The library's process-wide default Configuration (``None`` until someone sets one)."""
    return vars(Configuration).get("_default")


def sanitized(port: int, *, scheme: str = "http", **kwargs: Any) -> SanitizedKubeconfig:
    return sanitize_kubeconfig(dump(kubeconfig(server=f"{scheme}://127.0.0.1:{port}", **kwargs)))


def assert_no_secret(text: str | None, *secrets: str) -> None:
    assert text is not None
    for secret in (TOKEN, PASSWORD, *secrets):
        assert secret not in text


# --- configuration ------------------------------------------------------------------------------


def test_configuration_is_built_explicitly_and_default_is_untouched() -> None:
    default_before = process_default()
    kc = sanitize_kubeconfig(
        dump(kubeconfig(cluster={"insecure-skip-tls-verify": True, "tls-server-name": "kube.x"}))
    )
    configuration = build_configuration(kc)
    assert configuration.host == "https://127.0.0.1:6443"
    assert configuration.api_key == {"BearerToken": f"Bearer {TOKEN}"}
    assert configuration.verify_ssl is False
    assert configuration.tls_server_name == "kube.x"
    assert configuration.proxy is None
    assert (configuration.ssl_ca_cert, configuration.cert_file, configuration.key_file) == (
        None, None, None
    )
    assert process_default() is default_before


def test_basic_auth_becomes_a_basic_authorization_value() -> None:
    kc = sanitize_kubeconfig(dump(kubeconfig(user={"username": "ops", "password": PASSWORD})))
    expected = base64.b64encode(f"ops:{PASSWORD}".encode()).decode()
    assert build_configuration(kc).api_key == {"BearerToken": f"Basic {expected}"}


def test_tls_files_are_private_and_removed(pki: TestPki, tmp_path: Path) -> None:
    client = pki.issue("admin", client=True)
    ca = {"certificate-authority-data": b64(pki.ca_pem)}
    kc = sanitize_kubeconfig(dump(kubeconfig(cluster=ca, user=cert_user(client))))
    with tls_credential_files(kc, root=tmp_path) as files:
        assert files.ca_file and files.cert_file and files.key_file
        directory = Path(files.key_file).parent
        assert directory.parent == tmp_path
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700
        for path, content in (
            (files.ca_file, pki.ca_pem), (files.cert_file, client.cert_pem),
            (files.key_file, client.key_pem),
        ):
            assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
            assert Path(path).read_bytes() == content
    assert list(tmp_path.iterdir()) == []


def test_no_tls_files_for_plain_http_or_system_trust(tmp_path: Path) -> None:
    with tls_credential_files(sanitized(8080), root=tmp_path) as files:
        assert (files.ca_file, files.cert_file, files.key_file) == (None, None, None)
        assert list(tmp_path.iterdir()) == []


# --- probe over plain HTTP --------------------------------------------------------------------


async def test_probe_reports_reachable_version_and_latency() -> None:
    server = VersionServer(expected_authorization=f"Bearer {TOKEN}")
    async with serve(server.handle) as port:
        probe = await probe_connection(sanitized(port), timeout=5, network=LOCAL)
    assert probe.ok and probe.reachable
    assert probe.server_version == "v1.31.2"
    assert probe.latency_ms is not None and 0 < probe.latency_ms < 5000
    assert probe.error is None
    assert server.authorizations == [f"Bearer {TOKEN}"]


async def test_probe_with_basic_auth() -> None:
    expected = "Basic " + base64.b64encode(f"ops:{PASSWORD}".encode()).decode()
    server = VersionServer(expected_authorization=expected)
    async with serve(server.handle) as port:
        kc = sanitized(port, user={"username": "ops", "password": PASSWORD})
        probe = await probe_connection(kc, timeout=5, network=LOCAL)
    assert probe.ok and probe.server_version == "v1.31.2"


async def test_rejected_credentials_are_reachable_with_a_clean_error() -> None:
    server = VersionServer(expected_authorization="Bearer someone-else")
    async with serve(server.handle) as port:
        probe = await probe_connection(sanitized(port), timeout=5, network=LOCAL)
    assert probe.reachable and not probe.ok
    assert probe.server_version is None
    assert probe.latency_ms is not None
    assert probe.error is not None and "rejected the credentials" in probe.error
    assert "401" in probe.error
    assert_no_secret(probe.error)


async def test_closed_port_is_unreachable_with_a_clean_error() -> None:
    port = closed_port()
    probe = await probe_connection(sanitized(port), timeout=5, network=LOCAL)
    assert not probe.reachable
    assert (probe.server_version, probe.latency_ms) == (None, None)
    assert probe.error is not None and probe.error.startswith("cannot connect")
    assert str(port) in probe.error
    assert_no_secret(probe.error)


async def test_hanging_server_times_out() -> None:
    async with hanging_server() as port:
        started = time.monotonic()
        probe = await probe_connection(sanitized(port), timeout=0.5, network=LOCAL)
        elapsed = time.monotonic() - started
    assert not probe.reachable
    assert probe.error is not None and "timed out after 0.5s" in probe.error
    assert elapsed < 3
    assert_no_secret(probe.error)


async def test_every_request_gets_the_default_read_timeout() -> None:
    async with hanging_server() as port, open_api_client(
        sanitized(port), connect_timeout=1, read_timeout=0.3, network=LOCAL
    ) as api:
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            await VersionApi(api).get_code()
        assert time.monotonic() - started < 3


async def test_server_echoing_credentials_cannot_leak_them_into_the_error() -> None:
    async def echo(request: web.Request) -> web.StreamResponse:
        authorization = request.headers.get("Authorization", "")
        return web.Response(status=500, reason=f"oops {authorization}", text=authorization)

    async with serve(echo) as port:
        probe = await probe_connection(sanitized(port), timeout=5, network=LOCAL)
        basic = await probe_connection(
            sanitized(port, user={"username": "ops", "password": PASSWORD}), timeout=5,
            network=LOCAL,
        )
    for result in (probe, basic):
        assert result.reachable and result.error is not None and "HTTP 500" in result.error
        assert_no_secret(result.error, base64.b64encode(f"ops:{PASSWORD}".encode()).decode())


async def test_non_kubernetes_answer_is_reported_not_raised() -> None:
    async def html(request: web.Request) -> web.StreamResponse:
        return web.Response(text="<html>login</html>", content_type="text/html")

    async with serve(html) as port:
        probe = await probe_connection(sanitized(port), timeout=5, network=LOCAL)
    assert probe.reachable and not probe.ok
    assert probe.error is not None and "gitVersion" in probe.error


async def test_process_wide_default_configuration_is_never_touched() -> None:
    default_before = process_default()
    server = VersionServer(expected_authorization=None)
    async with serve(server.handle) as port:
        async with open_api_client(
            sanitized(port), connect_timeout=2, read_timeout=2, network=LOCAL
        ) as api:
            assert api.configuration is not process_default()
        await probe_connection(sanitized(port), timeout=2, network=LOCAL)
    assert process_default() is default_before


# --- TLS ------------------------------------------------------------------------------------------


async def test_client_certificate_works_and_no_credential_file_exists_while_open(
    pki: TestPki, tmp_path: Path
) -> None:
    server_dir, scratch = tmp_path / "server", tmp_path / "scratch"
    server_dir.mkdir()
    scratch.mkdir()
    server_cert = pki.issue("apiserver", hosts=("127.0.0.1",), client=False)
    client = pki.issue("fleetgraph-admin", client=True)
    server = VersionServer(expected_authorization=None)
    context = server_tls_context(pki, server_cert, server_dir, require_client_cert=True)
    async with serve(server.handle, ssl_context=context) as port:
        kc = sanitized(
            port,
            scheme="https",
            cluster={"certificate-authority-data": b64(pki.ca_pem)},
            user=cert_user(client),
        )
        async with open_api_client(
            kc, connect_timeout=5, read_timeout=5, network=LOCAL, scratch_root=scratch
        ) as api:
            assert list(scratch.iterdir()) == []
            assert (api.configuration.cert_file, api.configuration.key_file) == (None, None)
            version = await VersionApi(api).get_code()
            assert list(scratch.iterdir()) == []
        assert list(scratch.iterdir()) == []
    assert version.git_version == "v1.31.2"
    # The server saw our client certificate, so the key was loaded before its file vanished.
    subject = dict(item[0] for item in server.peer_subjects[0]["subject"])
    assert subject["commonName"] == "fleetgraph-admin"


async def test_tls_server_name_is_used_for_verification(pki: TestPki, tmp_path: Path) -> None:
    server_cert = pki.issue("apiserver", hosts=("kube.internal",), client=False)
    server = VersionServer(expected_authorization=f"Bearer {TOKEN}")
    ca = {"certificate-authority-data": b64(pki.ca_pem)}
    async with serve(
        server.handle, ssl_context=server_tls_context(pki, server_cert, tmp_path)
    ) as port:
        named = sanitized(port, scheme="https", cluster=ca | {"tls-server-name": "kube.internal"})
        by_ip = sanitized(port, scheme="https", cluster=ca)
        ok = await probe_connection(named, timeout=5, network=LOCAL)
        mismatch = await probe_connection(by_ip, timeout=5, network=LOCAL)
    assert ok.ok and ok.server_version == "v1.31.2"
    assert not mismatch.reachable
    assert mismatch.error is not None and mismatch.error.startswith("TLS handshake failed")
    assert_no_secret(mismatch.error)


async def test_unknown_ca_is_refused_unless_verification_is_skipped(
    pki: TestPki, tmp_path: Path
) -> None:
    server_cert = pki.issue("apiserver", hosts=("127.0.0.1",), client=False)
    other_ca = TestPki("someone-else")
    server = VersionServer(expected_authorization=None)
    async with serve(
        server.handle, ssl_context=server_tls_context(pki, server_cert, tmp_path)
    ) as port:
        wrong_ca = sanitized(
            port, scheme="https", cluster={"certificate-authority-data": b64(other_ca.ca_pem)}
        )
        skip = sanitized(port, scheme="https", cluster={"insecure-skip-tls-verify": True})
        refused = await probe_connection(wrong_ca, timeout=5, network=LOCAL)
        accepted = await probe_connection(skip, timeout=5, network=LOCAL)
    assert not refused.reachable and refused.error is not None
    assert "certificate verify failed" in refused.error
    assert accepted.ok


# --- tokenFile: the library would read and send it; we never do -------------------------------


async def test_token_file_contents_are_never_sent(tmp_path: Path) -> None:
    file_secret = "file-token-0d9e8f7a6b5c"
    token_file = tmp_path / "token"
    token_file.write_text(file_secret)
    server = VersionServer(expected_authorization=None)
    async with serve(server.handle) as port:
        hostile = kubeconfig(server=f"http://127.0.0.1:{port}", user={"tokenFile": str(token_file)})

        # Control: kubernetes_asyncio's own loader reads the file and sends it.
        configuration = Configuration()
        await load_kube_config_from_dict(hostile, client_configuration=configuration)
        async with ApiClient(configuration) as api:
            await VersionApi(api).get_code()
        assert server.authorizations == [f"Bearer {file_secret}"]
        server.authorizations.clear()

        # Our path: the sanitizer refuses before anything is read or sent.
        with pytest.raises(KubeconfigError) as refused:
            kc = sanitize_kubeconfig(dump(hostile))
            await probe_connection(kc, timeout=5, network=LOCAL)
        assert refused.value.field == "users[admin].user.tokenFile"
        assert file_secret not in str(refused.value)

        # And a token sitting next to the tokenFile is no way around it.
        both = kubeconfig(
            server=f"http://127.0.0.1:{port}", user={"token": TOKEN, "tokenFile": str(token_file)}
        )
        with pytest.raises(KubeconfigError):
            sanitize_kubeconfig(dump(both))
        anonymous = sanitize_kubeconfig(
            dump(kubeconfig(server=f"http://127.0.0.1:{port}", user={}))
        )
        assert (await probe_connection(anonymous, timeout=5, network=LOCAL)).ok
    assert all(file_secret not in (header or "") for header in server.authorizations)
    assert server.authorizations == [None]
    assert json.dumps(anonymous.to_dict()).find(file_secret) == -1


# --- redirects, the process environment and the network policy --------------------------------


class RecordingServer:
    """Answers every request like an API server's /version and remembers what it received."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str | None]] = []

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append((request.path_qs, request.headers.get("Authorization")))
        return web.json_response(VERSION_INFO)


@contextlib.asynccontextmanager
async def counting_listener() -> AsyncIterator[list[int]]:
    """A TCP listener on loopback that records each connection and closes it at once: a
    proxy (or any other place) that must never be contacted. Yields ``[port, connections]``."""
    state = [0, 0]

    async def close_at_once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        state[1] += 1
        writer.close()

    server = await asyncio.start_server(close_at_once, "127.0.0.1", 0)
    state[0] = server.sockets[0].getsockname()[1]
    try:
        yield state
    finally:
        server.close()
        await server.wait_closed()


@contextlib.asynccontextmanager
async def redirecting(status: int, location: str) -> AsyncIterator[int]:
    async def redirect(request: web.Request) -> web.StreamResponse:
        return web.Response(status=status, headers={"Location": location},
                            text="<a href='elsewhere'>moved</a>")

    async with serve(redirect) as port:
        yield port


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
async def test_redirects_are_never_followed_nor_their_target_shown(status: int) -> None:
    target = RecordingServer()
    async with serve(target.handle) as target_port:
        location = f"http://127.0.0.1:{target_port}/internal/secret"
        async with redirecting(status, location) as port:
            # Control: the library's own client follows the redirect to the other origin.
            async with ApiClient(Configuration(host=f"http://127.0.0.1:{port}")) as library:
                await VersionApi(library).get_code()
            assert [path for path, _ in target.requests] == ["/internal/secret"]
            target.requests.clear()

            probe = await probe_connection(sanitized(port), timeout=5, network=LOCAL)
            async with open_api_client(
                sanitized(port), connect_timeout=2, read_timeout=2, network=LOCAL
            ) as api:
                with pytest.raises(RedirectRefused):
                    await VersionApi(api).get_code()
    assert target.requests == []
    assert probe.reachable and not probe.ok and probe.server_version is None
    assert probe.error is not None and f"redirect (HTTP {status})" in probe.error
    assert str(target_port) not in probe.error and "secret" not in probe.error


async def test_netrc_credentials_from_the_environment_are_never_sent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login thief password netrc-secret-7a1\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    server = RecordingServer()
    async with serve(server.handle) as port:
        # Control: the library's session trusts the environment and sends them as Basic auth.
        async with ApiClient(Configuration(host=f"http://127.0.0.1:{port}")) as library:
            await VersionApi(library).get_code()
        [(_, sent)] = server.requests
        assert sent == "Basic " + base64.b64encode(b"thief:netrc-secret-7a1").decode()
        server.requests.clear()

        probe = await probe_connection(sanitized(port, user={}), timeout=5, network=LOCAL)
    assert probe.ok
    assert server.requests == [("/version", None)]


async def test_proxies_from_the_environment_are_never_used(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server = RecordingServer()
    async with counting_listener() as proxy, serve(server.handle) as port:
        for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
            monkeypatch.setenv(name, f"http://127.0.0.1:{proxy[0]}")
        for name in ("NO_PROXY", "no_proxy"):
            monkeypatch.delenv(name, raising=False)
        # Control: the library's session sends the request to the proxy.
        async with ApiClient(Configuration(host=f"http://127.0.0.1:{port}")) as library:
            with contextlib.suppress(Exception):
                await VersionApi(library).get_code()
        assert proxy[1] >= 1 and server.requests == []
        proxy[1] = 0

        probe = await probe_connection(sanitized(port), timeout=5, network=LOCAL)
    assert probe.ok
    assert proxy[1] == 0 and len(server.requests) == 1


def _resolves_to_loopback(name: str) -> bool:
    try:
        answers = socket.getaddrinfo(name, 443, socket.AF_INET, socket.SOCK_STREAM)
    except OSError:
        return False
    return bool(answers) and all(str(answer[4][0]).startswith("127.") for answer in answers)


# Literals aiohttp connects to without asking any resolver, and names (this host's own among
# them) that DNS or /etc/hosts turns into loopback here. aiohttp refuses non-canonical IPv4
# such as 127.1 by itself, so those are covered by the registration check and the unit tests.
LOOPBACK_SPELLINGS = ["127.0.0.1", "[::ffff:127.0.0.1]"] + [
    name for name in ("localhost", "localhost.", socket.gethostname(), "ip6-localhost")
    if _resolves_to_loopback(name)
]


@pytest.mark.parametrize("host", LOOPBACK_SPELLINGS)
async def test_the_connection_itself_refuses_loopback_whatever_the_spelling(
    host: str, pki: TestPki, tmp_path: Path
) -> None:
    """No registration check in between: the client alone must refuse, and nothing arrives."""
    server = RecordingServer()
    issued = pki.issue("apiserver", hosts=("127.0.0.1",), client=False)
    async with serve(server.handle, ssl_context=server_tls_context(pki, issued, tmp_path)) as port:
        kc = sanitize_kubeconfig(dump(kubeconfig(
            server=f"https://{host}:{port}", cluster={"insecure-skip-tls-verify": True})))
        refused = await probe_connection(kc, timeout=5, network=NetworkPolicy())
        assert server.requests == []
        # Control: the same kubeconfig reaches the server once local clusters are allowed.
        allowed = await probe_connection(kc, timeout=5, network=LOCAL)
    assert not refused.reachable and refused.error is not None
    assert refused.error.startswith("connection refused by FleetGraph"), refused.error
    assert "loopback" in refused.error
    assert allowed.ok, allowed.error
    assert len(server.requests) == 1


async def test_operator_deny_list_applies_to_every_connection() -> None:
    server = RecordingServer()
    deny = NetworkPolicy(allow_local=True, deny=(ipaddress.ip_network("127.0.0.0/8"),))
    async with serve(server.handle) as port:
        probe = await probe_connection(sanitized(port), timeout=5, network=deny)
    assert not probe.reachable and probe.error is not None
    assert "FLEETGRAPH_CLUSTER_NETWORKS_DENY" in probe.error
    assert server.requests == []
