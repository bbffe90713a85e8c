"""A real Kubernetes control plane on loopback, for the tier that tests the sync against it.

kubesim is ours, written by the people who wrote the sync, so a misunderstanding of the
Kubernetes API shared by both passes every kubesim test. This module runs the real thing
instead: etcd, kube-apiserver, kube-controller-manager, kube-scheduler and KWOK (fake nodes
that take pods to Running without a kubelet), built from Go modules by ``make k8s-tier``.

The apiserver is started the way controller-runtime's envtest starts it (loopback only,
self-signed serving certificate, a service-account signing key, ``--authorization-mode=RBAC``)
with a static token file for its users:

* ``admin`` (``system:masters``): kubectl, KWOK;
* ``system:kube-controller-manager`` and ``system:kube-scheduler``: the bootstrap RBAC
  identities those components have in a real cluster (the controller manager runs each
  controller under its own service account, as kubeadm clusters do);
* ``nobody``: authenticated, bound to nothing (what a token without rights looks like).

The sync's own credential is not a static token: :meth:`grant_watched_cluster_rbac` applies
the repository's ``deploy/watched-cluster-rbac.yaml`` (and the optional Helm grant) with
kubectl, exactly as an operator would, and takes the ServiceAccount token the controller
manager's token controller writes into its Secret. So the tier also proves that the shipped
RBAC is enough for everything the sync does, judged by the real RBAC authorizer.

The watch cache of Deployments is switched off (``--watch-cache-sizes=deployments.apps#0``)
so a Deployment watch from a compacted resourceVersion reaches etcd and gets a real
``410 Gone``; every other kind keeps the cache, and with it the apiserver's bookmarks.

``ControlPlane.start(..., metrics_server=True)`` adds the aggregation layer (a front-proxy CA
and client certificate, the request-header flags), KWOK's simulated kubelet
``/metrics/resource`` and metrics-server as a local process under its own ServiceAccount,
registered as the APIService ``v1beta1.metrics.k8s.io``; without it, ``metrics.k8s.io`` is
absent, as on a cluster that never installed metrics-server.

Everything binds 127.0.0.1 on free ports and lives in one temporary folder; :meth:`stop`
terminates every process this module started (SIGTERM, then SIGKILL after a grace period).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ctypes
import datetime as dt
import ipaddress
import json
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

__all__ = [
    "BINARIES",
    "ControlPlane",
    "TcpGate",
    "binaries_dir",
    "tier_versions",
]

GOBUILD = Path(__file__).resolve().parent / "gobuild"
BINARIES = ("etcd", "etcdctl", "kube-apiserver", "kube-controller-manager", "kube-scheduler",
            "kubectl", "kwok", "metrics-server")
# Copied by build.sh from the modules the binaries come from, so they always match them:
KWOK_STAGES = "kwok-stages.yaml"  # KWOK's default stages
KWOK_METRICS = "kwok-metrics.yaml"  # KWOK's simulated /metrics/resource and usage annotations
METRICS_SERVER_MANIFESTS = "metrics-server-manifests.yaml"  # its RBAC, Service, APIService
EXTRAS = (KWOK_STAGES, KWOK_METRICS, METRICS_SERVER_MANIFESTS)
METRICS_SERVER_NAMESPACE = "kube-system"
METRICS_SERVER_SERVICE = "metrics-server"
FRONT_PROXY_CLIENT = "front-proxy-client"  # the aggregator's client certificate's name
STOP_GRACE_S = 10.0
START_TIMEOUT_S = 90.0

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
WATCHED_CLUSTER_RBAC = DEPLOY / "watched-cluster-rbac.yaml"
WATCHED_CLUSTER_HELM_RBAC = DEPLOY / "watched-cluster-helm-rbac.yaml"
READER_NAMESPACE = "fleetgraph-system"  # where those files put the fleetgraph-reader account


def tier_versions() -> dict[str, str]:
    """``versions.env`` as a dict: the versions ``make k8s-tier`` builds."""
    versions: dict[str, str] = {}
    for line in (GOBUILD / "versions.env").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            versions[key.strip()] = value.strip()
    return versions


def binaries_dir() -> Path:
    """Where ``make k8s-tier`` puts the binaries (the same rule as gobuild/build.sh)."""
    v = tier_versions()
    cache = os.environ.get("FLEETGRAPH_K8S_CACHE") or str(Path.home() / ".cache/fleetgraph/k8s")
    key = (f"{v['K8S_VERSION']}-etcd-{v['ETCD_VERSION']}-kwok-{v['KWOK_VERSION']}"
           f"-metrics-server-{v['METRICS_SERVER_VERSION']}")
    return Path(cache) / key / "bin"


def missing_binaries(bin_dir: Path) -> list[str]:
    """Binaries absent from ``bin_dir``; a folder without build.sh's stamp counts as empty
    (a build that was interrupted leaves only ``bin.partial``)."""
    if not (bin_dir / ".complete").is_file():
        return list(BINARIES)
    missing = [b for b in BINARIES if not os.access(bin_dir / b, os.X_OK)]
    return missing + [f for f in EXTRAS if not (bin_dir / f).is_file()]


# --- certificates ---------------------------------------------------------------------------


def _pem_key(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _pem_cert(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _new_ca(common_name: str, now: dt.datetime) -> tuple[ec.EllipticCurvePrivateKey,
                                                          x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True,
                                     crl_sign=True, content_commitment=False,
                                     key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, encipher_only=False,
                                     decipher_only=False), critical=True)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _issue(ca_key: ec.EllipticCurvePrivateKey, ca: x509.Certificate, common_name: str, *,
           now: dt.datetime, usage: x509.ObjectIdentifier, dns: Sequence[str] = (),
           ips: Sequence[str] = ()) -> tuple[bytes, bytes]:
    """A leaf certificate signed by ``ca`` for one usage (server or client auth); returns
    (certificate PEM, key PEM)."""
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    )
    names: list[x509.GeneralName] = [x509.DNSName(n) for n in dns]
    names += [x509.IPAddress(ipaddress.ip_address(a)) for a in ips]
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return _pem_cert(builder.sign(ca_key, hashes.SHA256())), _pem_key(key)


@dataclass(frozen=True)
class Pki:
    """A throwaway CA, the apiserver's serving certificate and the service-account key."""

    ca_pem: bytes
    serving_cert_pem: bytes
    serving_key_pem: bytes
    sa_private_pem: bytes
    sa_public_pem: bytes
    ca_key: ec.EllipticCurvePrivateKey = field(repr=False)
    ca: x509.Certificate = field(repr=False)

    @classmethod
    def generate(cls) -> Pki:
        now = dt.datetime.now(dt.UTC)
        ca_key, ca = _new_ca("fleetgraph-realk8s-ca", now)
        serving_cert, serving_key = _issue(
            ca_key, ca, "kube-apiserver", now=now,
            usage=x509.oid.ExtendedKeyUsageOID.SERVER_AUTH,
            dns=("localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
                 "kubernetes.default.svc.cluster.local"),
            ips=("127.0.0.1", "10.0.0.1"))
        sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        return cls(
            ca_pem=_pem_cert(ca),
            serving_cert_pem=serving_cert,
            serving_key_pem=serving_key,
            sa_private_pem=_pem_key(sa_key),
            sa_public_pem=sa_key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo),
            ca_key=ca_key,
            ca=ca,
        )


@dataclass(frozen=True)
class AggregatorPki:
    """What the aggregation layer needs, as kubeadm lays it out: a front-proxy CA of its own
    (never the client CA, or any client certificate could assert request headers), the
    client certificate the apiserver proxies with (``front-proxy-client``), and
    metrics-server's serving certificate, signed by the cluster CA for the name the
    aggregator checks (``<service>.<namespace>.svc``) so the APIService carries a real
    ``caBundle`` instead of ``insecureSkipTLSVerify``."""

    front_proxy_ca_pem: bytes
    proxy_client_cert_pem: bytes
    proxy_client_key_pem: bytes
    metrics_server_cert_pem: bytes
    metrics_server_key_pem: bytes

    @classmethod
    def generate(cls, pki: Pki) -> AggregatorPki:
        now = dt.datetime.now(dt.UTC)
        fp_key, fp_ca = _new_ca("fleetgraph-realk8s-front-proxy-ca", now)
        client_cert, client_key = _issue(fp_key, fp_ca, FRONT_PROXY_CLIENT, now=now,
                                         usage=x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH)
        service = f"{METRICS_SERVER_SERVICE}.{METRICS_SERVER_NAMESPACE}.svc"
        ms_cert, ms_key = _issue(pki.ca_key, pki.ca, METRICS_SERVER_SERVICE, now=now,
                                 usage=x509.oid.ExtendedKeyUsageOID.SERVER_AUTH,
                                 dns=(service, "localhost"), ips=("127.0.0.1",))
        return cls(front_proxy_ca_pem=_pem_cert(fp_ca), proxy_client_cert_pem=client_cert,
                   proxy_client_key_pem=client_key, metrics_server_cert_pem=ms_cert,
                   metrics_server_key_pem=ms_key)


# --- processes ------------------------------------------------------------------------------


def free_ports(count: int) -> list[int]:
    """``count`` distinct free loopback ports (all sockets held open until every one is
    chosen, so the kernel cannot hand out the same one twice)."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child, before exec: have the kernel SIGKILL it when the test process dies, so
    even a pytest killed outright (timeout, kill -9) leaves no apiserver behind."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


@dataclass
class Process:
    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    log_file: IO[bytes]

    def log_tail(self, lines: int = 40) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return "(no log)"


class StartError(RuntimeError):
    """A component did not start; the message carries the tail of its log."""


@dataclass(frozen=True)
class User:
    name: str
    token: str
    groups: tuple[str, ...] = ()


@dataclass
class ControlPlane:
    """One running control plane; build with :meth:`start`, end with :meth:`stop`."""

    bin_dir: Path
    root: Path
    pki: Pki = field(default_factory=Pki.generate)
    processes: list[Process] = field(default_factory=list)
    users: dict[str, User] = field(default_factory=dict)
    etcd_url: str = ""
    apiserver_port: int = 0
    kwok_port: int = 0
    with_metrics_server: bool = False
    metrics_server_port: int = 0

    # --- life ------------------------------------------------------------------------------

    @classmethod
    def start(cls, bin_dir: Path, *, metrics_server: bool = False) -> ControlPlane:
        """Start the control plane; with ``metrics_server``, also the aggregation layer's
        set-up, KWOK's simulated kubelet metrics and metrics-server behind the APIService
        ``v1beta1.metrics.k8s.io`` (see :meth:`_start_metrics_server`)."""
        root = Path(tempfile.mkdtemp(prefix="fleetgraph-realk8s-"))
        plane = cls(bin_dir=bin_dir, root=root, with_metrics_server=metrics_server)
        try:
            plane._start_all()
        except BaseException:
            plane.stop()
            raise
        return plane

    def stop(self) -> None:
        """Terminate every process started here, newest first and one at a time (so the
        apiserver still has its etcd while it shuts down); kill whatever outlives the grace
        period. Safe to call twice."""
        for process in reversed(self.processes):
            if process.popen.poll() is None:
                process.popen.terminate()
                try:
                    process.popen.wait(timeout=STOP_GRACE_S)
                except subprocess.TimeoutExpired:
                    process.popen.kill()
                    process.popen.wait(timeout=STOP_GRACE_S)
            process.log_file.close()
        self.processes.clear()
        if os.environ.get("FLEETGRAPH_REALK8S_KEEP") != "1":
            shutil.rmtree(self.root, ignore_errors=True)

    def _spawn(self, name: str, args: Sequence[str]) -> Process:
        log_path = self.root / f"{name}.log"
        log_file = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
        popen = subprocess.Popen(
            [str(self.bin_dir / args[0]), *args[1:]],
            stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
            cwd=self.root, start_new_session=True,
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )
        process = Process(name, popen, log_path, log_file)
        self.processes.append(process)
        return process

    def _wait(self, process: Process, what: str, ready: Callable[[], bool],
              timeout: float = START_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.popen.poll() is not None:
                raise StartError(f"{process.name} exited ({process.popen.returncode}) before "
                                 f"{what}; its log ends:\n{process.log_tail()}")
            with contextlib.suppress(OSError, urllib.error.URLError, ValueError):
                if ready():
                    return
            time.sleep(0.2)
        raise StartError(f"{process.name}: no {what} within {timeout:.0f}s; its log ends:\n"
                         f"{process.log_tail()}")

    def _write(self, name: str, data: bytes | str, mode: int = 0o600) -> Path:
        path = self.root / name
        path.write_bytes(data.encode() if isinstance(data, str) else data)
        path.chmod(mode)
        return path

    def _start_all(self) -> None:
        etcd_client, etcd_peer, api, kwok, metrics = free_ports(5)
        self.etcd_url = f"http://127.0.0.1:{etcd_client}"
        self.apiserver_port = api
        self.kwok_port = kwok
        if self.with_metrics_server:
            self.metrics_server_port = metrics
        pki = self.pki
        ca = self._write("ca.crt", pki.ca_pem)
        cert = self._write("apiserver.crt", pki.serving_cert_pem)
        key = self._write("apiserver.key", pki.serving_key_pem)
        sa_key = self._write("sa.key", pki.sa_private_pem)
        sa_pub = self._write("sa.pub", pki.sa_public_pem)
        for user in (
            User("admin", secrets.token_urlsafe(24), ("system:masters",)),
            User("system:kube-controller-manager", secrets.token_urlsafe(24)),
            User("system:kube-scheduler", secrets.token_urlsafe(24)),
            User("nobody", secrets.token_urlsafe(24)),
        ):
            self.users[user.name] = user
        tokens = "".join(
            f'{u.token},{u.name},uid-{i},"{",".join(u.groups)}"\n'
            for i, u in enumerate(self.users.values())
        )
        token_file = self._write("tokens.csv", tokens)

        etcd = self._spawn("etcd", [
            "etcd",
            "--name=realk8s",
            f"--data-dir={self.root / 'etcd-data'}",
            f"--listen-client-urls={self.etcd_url}",
            f"--advertise-client-urls={self.etcd_url}",
            f"--listen-peer-urls=http://127.0.0.1:{etcd_peer}",
            f"--initial-advertise-peer-urls=http://127.0.0.1:{etcd_peer}",
            f"--initial-cluster=realk8s=http://127.0.0.1:{etcd_peer}",
            "--unsafe-no-fsync=true",  # a test's data is thrown away: no fsync on 2 cores
            # As Kubernetes' own hack/lib/etcd.sh: progress notifications let the watch cache
            # (and so the bookmarks it sends) move on while a kind sees no change.
            "--watch-progress-notify-interval=5s",
            "--log-level=warn",
        ])
        self._wait(etcd, "healthy etcd", lambda: json.loads(
            urllib.request.urlopen(f"{self.etcd_url}/health", timeout=2).read()
        ).get("health") == "true")

        apiserver = self._spawn("kube-apiserver", [
            "kube-apiserver",
            f"--etcd-servers={self.etcd_url}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={api}",
            f"--cert-dir={self.root / 'apiserver-certs'}",
            f"--tls-cert-file={cert}",
            f"--tls-private-key-file={key}",
            f"--client-ca-file={ca}",
            f"--token-auth-file={token_file}",
            "--authorization-mode=RBAC",
            f"--service-account-issuer=https://127.0.0.1:{api}",
            f"--service-account-key-file={sa_pub}",
            f"--service-account-signing-key-file={sa_key}",
            "--service-cluster-ip-range=10.0.0.0/24",
            "--allow-privileged=true",
            # See the module docstring: real 410s for Deployments, bookmarks for the rest.
            "--watch-cache-sizes=deployments.apps#0",
            "--profiling=false",
            "--v=1",
            *self._aggregator_flags(),
        ])
        self._wait(apiserver, "ready kube-apiserver",
                   lambda: self.get("/readyz", user="admin", raw=True) == b"ok")

        kcm_config = self.write_kubeconfig("system:kube-controller-manager")
        kcm = self._spawn("kube-controller-manager", [
            "kube-controller-manager",
            f"--kubeconfig={kcm_config}",
            f"--authentication-kubeconfig={kcm_config}",
            f"--authorization-kubeconfig={kcm_config}",
            "--secure-port=0",
            "--leader-elect=false",
            "--use-service-account-credentials=true",
            f"--service-account-private-key-file={sa_key}",
            f"--root-ca-file={ca}",
            "--cluster-name=realk8s",
            # Pods with no kubelet must not be evicted while KWOK renews their node's lease.
            "--node-monitor-grace-period=60s",
            "--v=1",
        ])
        sched_config = self.write_kubeconfig("system:kube-scheduler")
        scheduler = self._spawn("kube-scheduler", [
            "kube-scheduler",
            f"--kubeconfig={sched_config}",
            f"--authentication-kubeconfig={sched_config}",
            f"--authorization-kubeconfig={sched_config}",
            "--secure-port=0",
            "--leader-elect=false",
            "--v=1",
        ])
        kwok_proc = self._spawn("kwok", [
            "kwok",
            f"--kubeconfig={self.write_kubeconfig('admin')}",
            f"--config={self.bin_dir / KWOK_STAGES}",
            # The Metric serves /metrics/nodes/{nodeName}/metrics/resource for every node it
            # manages, on --server-address (HTTP and, with a throwaway certificate, HTTPS).
            *([f"--config={self.bin_dir / KWOK_METRICS}"] if self.with_metrics_server else []),
            "--manage-all-nodes=false",
            "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
            "--cidr=10.244.0.0/16",
            "--node-ip=10.240.0.1",
            "--node-lease-duration-seconds=40",
            f"--server-address=127.0.0.1:{kwok}",
        ])
        # The controller manager is working once the service-account controller has made the
        # default namespace's ServiceAccount (pods cannot be admitted before that).
        self._wait(kcm, "default ServiceAccount from kube-controller-manager",
                   lambda: self.get("/api/v1/namespaces/default/serviceaccounts/default",
                                    user="admin") is not None)
        for process in (scheduler, kwok_proc):
            if process.popen.poll() is not None:
                raise StartError(f"{process.name} exited ({process.popen.returncode}); its log "
                                 f"ends:\n{process.log_tail()}")
        if self.with_metrics_server:
            self._start_metrics_server()

    # --- the aggregation layer and metrics-server ---------------------------------------------

    def _aggregator_flags(self) -> list[str]:
        """kube-apiserver's side of the aggregation layer, as kubeadm sets it (the front-proxy
        CA and client certificate, the request headers an aggregated server may trust)."""
        if not self.with_metrics_server:
            return []
        agg = AggregatorPki.generate(self.pki)
        self._write("metrics-server.crt", agg.metrics_server_cert_pem)
        self._write("metrics-server.key", agg.metrics_server_key_pem)
        front_proxy_ca = self._write("front-proxy-ca.crt", agg.front_proxy_ca_pem)
        proxy_cert = self._write("front-proxy-client.crt", agg.proxy_client_cert_pem)
        proxy_key = self._write("front-proxy-client.key", agg.proxy_client_key_pem)
        return [
            f"--requestheader-client-ca-file={front_proxy_ca}",
            f"--requestheader-allowed-names={FRONT_PROXY_CLIENT}",
            "--requestheader-extra-headers-prefix=X-Remote-Extra-",
            "--requestheader-group-headers=X-Remote-Group",
            "--requestheader-username-headers=X-Remote-User",
            f"--proxy-client-cert-file={proxy_cert}",
            f"--proxy-client-key-file={proxy_key}",
            # Not endpoint routing: it only takes ClusterIP/NodePort/LoadBalancer Services
            # and dials their EndpointSlice's address, and EndpointSlice validation refuses
            # 127.0.0.0/8. Service routing resolves an ExternalName Service to
            # <externalName>:<APIService port> with no kube-proxy involved, which is how
            # kwokctl runs a local metrics-server too.
            "--enable-aggregator-routing=false",
        ]

    def _start_metrics_server(self) -> None:
        """metrics-server as a local process, under its own ServiceAccount with the RBAC its
        module ships, scraping KWOK's simulated kubelets, and registered as the APIService
        ``v1beta1.metrics.k8s.io`` (its manifests' Service turned into an ExternalName for
        127.0.0.1, the APIService given its port and our CA instead of skipping TLS checks).

        Nodes must say where their kubelet metrics are, as KWOK's own e2e tests do: an
        InternalIP of 127.0.0.1 and the annotation ``metrics.k8s.io/resource-metrics-path``
        (see :func:`tests.realk8s.conftest.fake_node`)."""
        documents = [d for d in yaml.safe_load_all(
            (self.bin_dir / METRICS_SERVER_MANIFESTS).read_text()) if d]
        registration = [d for d in documents if d["kind"] in ("Service", "APIService")]
        self.apply(*(d for d in documents if d not in registration))
        token = self.kubectl_sync("create", "token", METRICS_SERVER_SERVICE, "-n",
                                  METRICS_SERVER_NAMESPACE, "--duration=2h").strip()
        self.users[METRICS_SERVER_SERVICE] = User(METRICS_SERVER_SERVICE, token)
        config = self.write_kubeconfig(METRICS_SERVER_SERVICE)
        port = self.metrics_server_port
        process = self._spawn("metrics-server", [
            "metrics-server",
            "--bind-address=127.0.0.1",
            f"--secure-port={port}",
            f"--tls-cert-file={self.root / 'metrics-server.crt'}",
            f"--tls-private-key-file={self.root / 'metrics-server.key'}",
            f"--kubeconfig={config}",
            f"--authentication-kubeconfig={config}",
            f"--authorization-kubeconfig={config}",
            # KWOK's kubelet endpoint serves a throwaway self-signed certificate.
            "--kubelet-insecure-tls",
            "--kubelet-preferred-address-types=InternalIP",
            f"--kubelet-port={self.kwok_port}",
            "--metric-resolution=10s",  # its minimum; the request timeout must stay below 9s
            "--kubelet-request-timeout=5s",
            "--v=1",
        ])
        self._wait(process, "live metrics-server", lambda: urllib.request.urlopen(
            f"https://127.0.0.1:{port}/livez", context=self.ssl_context(), timeout=2
        ).status == 200)
        for doc in registration:
            if doc["kind"] == "Service":
                doc["spec"] = {"type": "ExternalName", "externalName": "127.0.0.1"}
            else:
                doc["spec"].pop("insecureSkipTLSVerify", None)
                doc["spec"]["service"]["port"] = port
                doc["spec"]["caBundle"] = base64.b64encode(self.pki.ca_pem).decode()
        self.apply(*registration)

        def available() -> bool:
            service = self.get("/apis/apiregistration.k8s.io/v1/apiservices/"
                               "v1beta1.metrics.k8s.io")
            conditions = (service or {}).get("status", {}).get("conditions", [])
            return any(c["type"] == "Available" and c["status"] == "True" for c in conditions)

        self._wait(process, "Available APIService v1beta1.metrics.k8s.io", available)

    def grant_watched_cluster_rbac(self, *, helm: bool = True) -> str:
        """``kubectl apply`` the repository's watched-cluster RBAC, wait for the token
        controller to fill the ServiceAccount token Secret, and register that token as the
        user ``fleetgraph``; returns it."""
        files = [WATCHED_CLUSTER_RBAC, *([WATCHED_CLUSTER_HELM_RBAC] if helm else [])]
        for path in files:
            self.kubectl_sync("apply", "-f", str(path))
        self.kubectl_sync("wait", "--for=jsonpath={.data.token}",
                          "secret/fleetgraph-reader-token", "-n", READER_NAMESPACE,
                          "--timeout=60s")
        encoded = self.kubectl_sync("get", "secret/fleetgraph-reader-token", "-n",
                                    READER_NAMESPACE, "-o", "jsonpath={.data.token}")
        token = base64.b64decode(encoded).decode()
        self.users["fleetgraph"] = User("fleetgraph", token)
        return token

    async def service_account_token(self, name: str, *, cluster_role: str) -> str:
        """A ServiceAccount of its own bound to one ClusterRole, and a token for it from
        ``kubectl create token`` (the TokenRequest API)."""
        await self.apply_async(
            {"apiVersion": "v1", "kind": "ServiceAccount",
             "metadata": {"name": name, "namespace": READER_NAMESPACE}},
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
             "metadata": {"name": name},
             "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                         "name": cluster_role},
             "subjects": [{"kind": "ServiceAccount", "name": name,
                           "namespace": READER_NAMESPACE}]},
        )
        token = (await self.kubectl("create", "token", name, "-n", READER_NAMESPACE,
                                    "--duration=1h")).strip()
        self.users[name] = User(name, token)
        return token

    # --- access ------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.apiserver_port}"

    def token(self, user: str) -> str:
        return self.users[user].token

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cadata=self.pki.ca_pem.decode())

    def get(self, path: str, *, user: str = "admin", raw: bool = False) -> Any:
        """One blocking GET (start-up checks only; tests use :meth:`kubectl`). ``None`` for
        a 404; other HTTP errors raise."""
        request = urllib.request.Request(
            self.url + path, headers={"Authorization": f"Bearer {self.token(user)}",
                                      "Accept": "application/json"})
        try:
            with urllib.request.urlopen(request, context=self.ssl_context(), timeout=5) as r:
                body = r.read()
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return None
            raise
        return body if raw else json.loads(body)

    def kubeconfig(self, user: str, *, server: str | None = None) -> dict[str, Any]:
        """A kubeconfig with only inline data, the form FleetGraph accepts."""
        return {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "realk8s", "cluster": {
                "server": server or self.url,
                "certificate-authority-data": base64.b64encode(self.pki.ca_pem).decode(),
            }}],
            "users": [{"name": user, "user": {"token": self.token(user)}}],
            "contexts": [{"name": "realk8s", "context": {"cluster": "realk8s", "user": user}}],
            "current-context": "realk8s",
        }

    def write_kubeconfig(self, user: str) -> Path:
        name = user.replace(":", "-")
        return self._write(f"{name}.kubeconfig", json.dumps(self.kubeconfig(user)))

    # --- kubectl and etcdctl -----------------------------------------------------------------

    def _kubectl_args(self, args: Sequence[str], user: str) -> list[str]:
        config = self.root / f"{user.replace(':', '-')}.kubeconfig"
        if not config.exists():
            self.write_kubeconfig(user)
        return [str(self.bin_dir / "kubectl"), f"--kubeconfig={config}", *args]

    def kubectl_sync(self, *args: str, stdin: str | None = None, user: str = "admin",
                     timeout: float = 150.0) -> str:
        """kubectl, blocking: for fixture set-up, when no sync runs on the event loop."""
        done = subprocess.run(self._kubectl_args(args, user), input=stdin, text=True,
                              capture_output=True, timeout=timeout, check=False)
        if done.returncode != 0:
            raise KubectlError(args, done.returncode, done.stderr)
        return done.stdout

    async def kubectl(self, *args: str, stdin: str | None = None, user: str = "admin",
                      limit_s: float = 150.0) -> str:
        """kubectl without blocking the event loop the sync under test runs on."""
        proc = await asyncio.create_subprocess_exec(
            *self._kubectl_args(args, user),
            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        try:
            out, err = await asyncio.wait_for(
                proc.communicate(stdin.encode() if stdin is not None else None), limit_s)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise
        if proc.returncode != 0:
            raise KubectlError(args, proc.returncode or 0, err.decode(errors="replace"))
        return out.decode()

    async def kubectl_json(self, *args: str, user: str = "admin") -> Any:
        return json.loads(await self.kubectl(*args, "-o", "json", user=user))

    def apply(self, *objects: dict[str, Any]) -> str:
        """``kubectl apply`` of objects, blocking (set-up only)."""
        return self.kubectl_sync("apply", "-f", "-", stdin=json.dumps(as_list(objects)))

    async def apply_async(self, *objects: dict[str, Any]) -> str:
        return await self.kubectl("apply", "-f", "-", stdin=json.dumps(as_list(objects)))

    async def etcdctl(self, *args: str) -> str:
        proc = await asyncio.create_subprocess_exec(
            str(self.bin_dir / "etcdctl"), f"--endpoints={self.etcd_url}", *args,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        if proc.returncode != 0:
            raise RuntimeError(f"etcdctl {' '.join(args)} failed: {err.decode()[-500:]}")
        return out.decode()

    async def compact_etcd(self) -> int:
        """Compact etcd's whole history up to its current revision, as the apiserver's own
        compactor does every five minutes; returns that revision."""
        status = json.loads(await self.etcdctl("endpoint", "status", "-w", "json"))
        revision = int(status[0]["Status"]["header"]["revision"])
        await self.etcdctl("compact", str(revision), "--physical")
        return revision

    def logs(self) -> Iterator[tuple[str, str]]:
        for process in self.processes:
            yield process.name, process.log_tail(200)


class KubectlError(RuntimeError):
    def __init__(self, args: Sequence[str], code: int, stderr: str) -> None:
        super().__init__(f"kubectl {' '.join(args)} exited {code}: {stderr.strip()[-800:]}")
        self.stderr = stderr


def as_list(objects: Sequence[dict[str, Any]]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "List", "items": list(objects)}


# --- a gate between the sync and the apiserver ----------------------------------------------


class TcpGate:
    """A TCP pass-through on loopback in front of the apiserver that a test can close.

    ``close()`` cuts every connection through it and refuses new ones, which is what a
    network partition looks like to the sync (its watches end, its heartbeats fail);
    ``open()`` lets it back in. TLS passes through untouched (the certificate's 127.0.0.1
    SAN matches the gate's address too), so what the sync talks to is still the apiserver.
    """

    def __init__(self, target_port: int) -> None:
        self._target = target_port
        self.port = 0
        self._server: asyncio.Server | None = None
        self._streams: set[asyncio.StreamWriter] = set()
        self.connections = 0

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    async def open(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in list(self._streams):
            writer.transport.abort()
        self._streams.clear()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self._target)
        except OSError:
            writer.transport.abort()
            return
        self._streams |= {writer, up_writer}

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (OSError, asyncio.IncompleteReadError):
                pass
            finally:
                # One side ended: end the other too (HTTP/TLS needs no half-close here).
                dst.close()

        try:
            await asyncio.gather(pump(reader, up_writer), pump(up_reader, writer))
        finally:
            self._streams -= {writer, up_writer}
