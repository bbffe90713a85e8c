"""The sanitizer accepts inline credentials only, and nothing in a kubeconfig runs or is read."""

from __future__ import annotations

import asyncio
import base64
import datetime
import ipaddress
import itertools
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from kubernetes_asyncio.client import Configuration
from kubernetes_asyncio.config import load_kube_config_from_dict

from app.kubeconfig import (
    MAX_KUBECONFIG_BYTES,
    MAX_KUBECONFIG_DEPTH,
    MAX_KUBECONFIG_ENTRIES,
    MAX_KUBECONFIG_NODES,
    PARSE_TIME_LIMIT_S,
    KubeconfigError,
    SanitizedKubeconfig,
    is_loopback_host,
    sanitize_kubeconfig,
    sanitize_kubeconfig_off_loop,
)

TOKEN = "fg-test-token-5f1d2c3b4a"
PASSWORD = "correct horse battery staple"


# --- a throwaway PKI, generated per test run with `cryptography` ------------------------


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: ec.EllipticCurvePrivateKey, password: bytes | None = None) -> bytes:
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password)
        if password
        else serialization.NoEncryption()
    )
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )


@dataclass(frozen=True)
class Issued:
    cert_pem: bytes
    key_pem: bytes
    key: ec.EllipticCurvePrivateKey


class TestPki:
    """A CA that issues server and client certificates (not a test class: no test_ methods)."""

    __test__ = False

    def __init__(self, common_name: str = "fleetgraph-test-ca") -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        self.cert = (
            self._builder(name, name, self.key.public_key())
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True, content_commitment=False, key_encipherment=False,
                    data_encipherment=False, key_agreement=False, key_cert_sign=True,
                    crl_sign=True, encipher_only=False, decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()), critical=False
            )
            .sign(self.key, hashes.SHA256())
        )
        self.ca_pem = _pem(self.cert)

    def _builder(
        self, subject: x509.Name, issuer: x509.Name, public_key: ec.EllipticCurvePublicKey
    ) -> x509.CertificateBuilder:
        now = datetime.datetime.now(datetime.UTC)
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
        )

    def issue(self, common_name: str, *, hosts: tuple[str, ...] = (), client: bool) -> Issued:
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        usage = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
        builder = (
            self._builder(subject, self.cert.subject, key.public_key())
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                critical=False,
            )
        )
        if hosts:
            names: list[x509.GeneralName] = []
            for host in hosts:
                try:
                    names.append(x509.IPAddress(ipaddress.ip_address(host)))
                except ValueError:
                    names.append(x509.DNSName(host))
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        cert = builder.sign(self.key, hashes.SHA256())
        return Issued(cert_pem=_pem(cert), key_pem=_key_pem(key), key=key)


@pytest.fixture(scope="module")
def pki() -> TestPki:
    return TestPki()


# --- kubeconfig builders ----------------------------------------------------------------


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def kubeconfig(
    *,
    cluster: dict[str, Any] | None = None,
    user: dict[str, Any] | None = None,
    context: dict[str, Any] | None = None,
    server: str = "https://127.0.0.1:6443",
) -> dict[str, Any]:
    """A one-context kubeconfig dict; ``cluster``/``user``/``context`` add or override fields."""
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "prod", "cluster": {"server": server, **(cluster or {})}}],
        "users": [{"name": "admin", "user": {"token": TOKEN} if user is None else user}],
        "contexts": [
            {"name": "prod", "context": {"cluster": "prod", "user": "admin", **(context or {})}}
        ],
        "current-context": "prod",
    }


def cert_user(issued: Issued) -> dict[str, str]:
    return {
        "client-certificate-data": b64(issued.cert_pem),
        "client-key-data": b64(issued.key_pem),
    }


def dump(document: Any) -> str:
    return yaml.safe_dump(document, sort_keys=False)


def refused(text: str, **kwargs: Any) -> KubeconfigError:
    with pytest.raises(KubeconfigError) as caught:
        sanitize_kubeconfig(text, **kwargs)
    return caught.value


def exec_marker_kubeconfig(marker: Path) -> dict[str, Any]:
    """An ``exec`` credential plugin that would create ``marker`` and hand out a token."""
    script = (
        "import json, pathlib, sys; "
        f"pathlib.Path({str(marker)!r}).write_text('executed'); "
        "json.dump({'apiVersion': 'client.authentication.k8s.io/v1', "
        "'kind': 'ExecCredential', 'status': {'token': 'from-exec'}}, sys.stdout)"
    )
    return kubeconfig(
        user={
            "exec": {
                "apiVersion": "client.authentication.k8s.io/v1",
                "command": sys.executable,
                "args": ["-c", script],
                "interactiveMode": "Never",
            }
        }
    )


# --- good kubeconfigs ---------------------------------------------------------------------


def test_token_kubeconfig_is_accepted_and_repr_redacts_the_token() -> None:
    kc = sanitize_kubeconfig(dump(kubeconfig(context={"namespace": "apps"})))
    assert kc.server_url == "https://127.0.0.1:6443"
    assert kc.token == TOKEN
    assert kc.auth_method == "token"
    assert (kc.context_name, kc.cluster_name, kc.user_name, kc.namespace) == (
        "prod", "prod", "admin", "apps"
    )
    assert TOKEN not in repr(kc) and TOKEN not in str(kc)
    assert "token=<redacted>" in repr(kc)


def test_basic_auth_kubeconfig_is_accepted_and_password_redacted() -> None:
    kc = sanitize_kubeconfig(dump(kubeconfig(user={"username": "ops", "password": PASSWORD})))
    assert (kc.username, kc.password, kc.token) == ("ops", PASSWORD, None)
    assert kc.auth_method == "basic"
    assert PASSWORD not in repr(kc)


def test_client_certificate_kubeconfig_with_generated_ca_is_accepted(pki: TestPki) -> None:
    client = pki.issue("admin", client=True)
    document = kubeconfig(
        cluster={"certificate-authority-data": b64(pki.ca_pem), "tls-server-name": "kube.local"},
        user=cert_user(client),
    )
    kc = sanitize_kubeconfig(dump(document))
    assert kc.certificate_authority_data == pki.ca_pem
    assert kc.client_certificate_data == client.cert_pem
    assert kc.client_key_data == client.key_pem
    assert kc.tls_server_name == "kube.local"
    assert kc.auth_method == "client-certificate"
    key_body = client.key_pem.decode().splitlines()[1]
    assert key_body not in repr(kc) and b64(client.key_pem) not in repr(kc)


def test_to_dict_is_a_minimal_kubeconfig_that_sanitizes_to_the_same_value(pki: TestPki) -> None:
    client = pki.issue("admin", client=True)
    document = kubeconfig(
        cluster={"certificate-authority-data": b64(pki.ca_pem), "extensions": [{"name": "x"}]},
        user=cert_user(client),
        context={"namespace": "kube-system"},
    )
    document["preferences"] = {"colors": True}
    document["clusters"].append({"name": "other", "cluster": {"server": "https://10.0.0.1"}})
    kc = sanitize_kubeconfig(dump(document))
    clean = kc.to_dict()
    assert [c["name"] for c in clean["clusters"]] == ["prod"]
    assert "extensions" not in clean["clusters"][0]["cluster"]
    assert "preferences" not in clean
    assert sanitize_kubeconfig(kc.to_yaml()) == kc
    assert sanitize_kubeconfig(dump(clean)) == kc


def test_anonymous_context_without_user_is_accepted() -> None:
    document = kubeconfig()
    del document["contexts"][0]["context"]["user"]
    kc = sanitize_kubeconfig(dump(document))
    assert kc.user_name is None and kc.auth_method == "none"
    assert sanitize_kubeconfig(kc.to_yaml()) == kc


def test_insecure_skip_tls_verify_alone_is_accepted() -> None:
    kc = sanitize_kubeconfig(dump(kubeconfig(cluster={"insecure-skip-tls-verify": True})))
    assert kc.insecure_skip_tls_verify is True


# --- hostile kubeconfigs --------------------------------------------------------------------

HOSTILE_USER_FIELDS = {
    "exec": ({"command": "/bin/sh", "apiVersion": "client.authentication.k8s.io/v1"},
             "runs a local command"),
    "auth-provider": ({"name": "gcp", "config": {"cmd-path": "/bin/sh"}},
                      "runs a credential plugin"),
    "tokenFile": ("/var/run/secrets/kubernetes.io/serviceaccount/token", "reads a token"),
    "client-certificate": ("/etc/kubernetes/pki/admin.crt", "local file path"),
    "client-key": ("/etc/kubernetes/pki/admin.key", "local file path"),
    "as": ("system:admin", "impersonation"),
    "as-groups": (["system:masters"], "impersonation"),
    "made-up": ("x", "is not an accepted field"),
}


@pytest.mark.parametrize("field", list(HOSTILE_USER_FIELDS))
def test_hostile_user_field_is_refused_naming_field_and_reason(field: str) -> None:
    value, reason = HOSTILE_USER_FIELDS[field]
    error = refused(dump(kubeconfig(user={"token": TOKEN, field: value})))
    assert error.field == f"users[admin].user.{field}"
    assert reason in error.reason
    assert str(error).startswith(f"users[admin].user.{field}: ")
    assert TOKEN not in str(error)


HOSTILE_CLUSTER_FIELDS = {
    "certificate-authority": ("/etc/kubernetes/pki/ca.crt", "local file path"),
    "proxy-url": ("http://attacker.example:3128", "through a proxy"),
    "disable-compression": (True, "is not an accepted field"),
}


@pytest.mark.parametrize("field", list(HOSTILE_CLUSTER_FIELDS))
def test_hostile_cluster_field_is_refused_naming_field_and_reason(field: str) -> None:
    value, reason = HOSTILE_CLUSTER_FIELDS[field]
    error = refused(dump(kubeconfig(cluster={field: value})))
    assert error.field == f"clusters[prod].cluster.{field}"
    assert reason in error.reason


def test_unknown_context_field_is_refused_but_namespace_is_fine() -> None:
    error = refused(dump(kubeconfig(context={"namespace": "apps", "proxy": "x"})))
    assert error.field == "contexts[prod].context.proxy"
    assert "is not an accepted field" in error.reason


def test_invalid_namespace_is_refused() -> None:
    error = refused(dump(kubeconfig(context={"namespace": "../etc"})))
    assert error.field == "contexts[prod].context.namespace"


async def test_exec_plugin_never_runs_though_the_library_loader_would(tmp_path: Path) -> None:
    document = exec_marker_kubeconfig(tmp_path / "marker")

    error = refused(dump(document))
    assert error.field == "users[admin].user.exec"
    assert not (tmp_path / "marker").exists()

    # The control: kubernetes_asyncio's own loader does run the command. This is what the
    # sanitizer stands between. (An explicit Configuration keeps the process default intact.)
    control_marker = tmp_path / "control-marker"
    await load_kube_config_from_dict(
        exec_marker_kubeconfig(control_marker), client_configuration=Configuration()
    )
    assert control_marker.read_text() == "executed"


def test_python_yaml_tags_are_not_constructed(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    text = (
        "clusters: !!python/object/apply:pathlib.Path.touch\n"
        f"  - !!python/object/apply:pathlib.Path [{str(marker)!r}]\n"
    )
    error = refused(text)
    assert error.field == "kubeconfig"
    assert "not valid YAML" in error.reason
    assert not marker.exists()


def test_unchosen_contexts_are_dropped_not_followed(tmp_path: Path) -> None:
    document = kubeconfig()
    evil_user = exec_marker_kubeconfig(tmp_path / "marker")["users"][0]
    document["users"].append(evil_user | {"name": "evil"})
    document["contexts"].append({"name": "evil", "context": {"cluster": "prod", "user": "evil"}})
    kc = sanitize_kubeconfig(dump(document))
    assert kc.user_name == "admin"
    assert "exec" not in kc.to_yaml() and "evil" not in kc.to_yaml()
    assert refused(dump(document), context="evil").field == "users[evil].user.exec"
    assert not (tmp_path / "marker").exists()


# --- server URL -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "server",
    ["http://127.0.0.1:8080", "http://127.9.8.7", "http://[::1]:6443", "http://localhost:8001",
     "http://kind.localhost"],
)
def test_plain_http_is_allowed_for_loopback_hosts(server: str) -> None:
    assert sanitize_kubeconfig(dump(kubeconfig(server=server))).server_url == server


@pytest.mark.parametrize(
    ("server", "reason"),
    [
        ("http://10.0.0.5:6443", "plain http to a non-local host"),
        ("http://localhost.attacker.example", "plain http to a non-local host"),
        ("http://128.0.0.1", "plain http to a non-local host"),
        ("file:///etc/passwd", "must be an https:// URL"),
        ("ftp://example.com", "must be an https:// URL"),
        ("https://admin:hunter2@example.com", "must not carry credentials"),
        ("https://example.com/?x=1", "query string"),
        ("https://", "has no host"),
        ("https://example.com:99999", "not a valid URL"),
        ("https://exa mple.com", "spaces"),
    ],
)
def test_unsafe_server_urls_are_refused(server: str, reason: str) -> None:
    error = refused(dump(kubeconfig(server=server)))
    assert error.field == "clusters[prod].cluster.server"
    assert reason in error.reason
    assert "hunter2" not in str(error)


def test_server_trailing_slash_is_normalized_and_path_kept() -> None:
    kc = sanitize_kubeconfig(dump(kubeconfig(server="https://rancher.example/k8s/clusters/c-1/")))
    assert kc.server_url == "https://rancher.example/k8s/clusters/c-1"


def test_loopback_rule() -> None:
    assert is_loopback_host("127.0.0.1") and is_loopback_host("::1")
    assert is_loopback_host("LOCALHOST") and is_loopback_host("a.localhost.")
    assert not is_loopback_host("10.0.0.1") and not is_loopback_host("localhost.example")


# --- inline data validation ----------------------------------------------------------------


def test_invalid_base64_is_refused() -> None:
    error = refused(dump(kubeconfig(cluster={"certificate-authority-data": "@@not base64@@"})))
    assert error.field == "clusters[prod].cluster.certificate-authority-data"
    assert "not valid base64" in error.reason


def test_base64_that_is_not_pem_is_refused() -> None:
    error = refused(dump(kubeconfig(cluster={"certificate-authority-data": b64(b"hello")})))
    assert "not a PEM X.509 certificate" in error.reason


def test_client_key_must_match_certificate(pki: TestPki) -> None:
    first, second = pki.issue("a", client=True), pki.issue("b", client=True)
    user = {"client-certificate-data": b64(first.cert_pem), "client-key-data": b64(second.key_pem)}
    error = refused(dump(kubeconfig(user=user)))
    assert error.field == "users[admin].user.client-key-data"
    assert "does not match" in error.reason


def test_encrypted_or_garbage_client_key_is_refused(pki: TestPki) -> None:
    client = pki.issue("a", client=True)
    encrypted = _key_pem(client.key, password=b"pw")
    user = {"client-certificate-data": b64(client.cert_pem), "client-key-data": b64(encrypted)}
    assert "encrypted private key" in refused(dump(kubeconfig(user=user))).reason
    user["client-key-data"] = b64(b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
    assert "not a PEM private key" in refused(dump(kubeconfig(user=user))).reason


def test_certificate_and_key_come_as_a_pair(pki: TestPki) -> None:
    client = pki.issue("a", client=True)
    error = refused(dump(kubeconfig(user={"client-certificate-data": b64(client.cert_pem)})))
    assert error.field == "users[admin].user.client-key-data"
    error = refused(dump(kubeconfig(user={"client-key-data": b64(client.key_pem)})))
    assert error.field == "users[admin].user.client-certificate-data"


def test_insecure_skip_verify_with_a_ca_is_refused(pki: TestPki) -> None:
    cluster = {"certificate-authority-data": b64(pki.ca_pem), "insecure-skip-tls-verify": True}
    error = refused(dump(kubeconfig(cluster=cluster)))
    assert error.field == "clusters[prod].cluster.insecure-skip-tls-verify"
    cluster = {"insecure-skip-tls-verify": "yes please"}
    assert "true or false" in refused(dump(kubeconfig(cluster=cluster))).reason


def test_token_with_line_break_is_refused_without_echoing_it() -> None:
    error = refused(dump(kubeconfig(user={"token": f"{TOKEN}\r\nX-Injected: 1"})))
    assert error.field == "users[admin].user.token"
    assert TOKEN not in str(error)


def test_token_and_basic_auth_together_are_refused() -> None:
    user = {"token": TOKEN, "username": "ops", "password": PASSWORD}
    assert refused(dump(kubeconfig(user=user))).field == "users[admin].user.token"


def test_username_without_password_and_unquoted_numbers_are_refused() -> None:
    assert refused(dump(kubeconfig(user={"username": "ops"}))).field == "users[admin].user.password"
    text = dump(kubeconfig(user={"username": "ops", "password": "PLACEHOLDER"}))
    error = refused(text.replace("PLACEHOLDER", "123456"))
    assert error.field == "users[admin].user.password"
    assert "quote it" in error.reason


# --- document shape, size and context selection ------------------------------------------


def test_yaml_syntax_error_does_not_quote_the_document() -> None:
    text = f"users:\n- name: admin\n  user:\n    token: {TOKEN}\n  \t: [\n"
    error = refused(text)
    assert error.field == "kubeconfig"
    assert "not valid YAML" in error.reason and "line" in error.reason
    assert TOKEN not in str(error)


def test_deeply_nested_yaml_is_refused() -> None:
    error = refused("clusters: " + "[" * 100_000 + "]" * 100_000)
    assert error.field == "kubeconfig"


@pytest.mark.parametrize("text", ["- a\n- b\n", "just a string", "42", ""])
def test_document_must_be_a_mapping(text: str) -> None:
    assert refused(text).field == "kubeconfig"


def test_sections_must_be_lists_of_named_entries() -> None:
    assert refused(dump({"clusters": {"prod": {}}})).field == "clusters"
    assert refused(dump({"clusters": [{"cluster": {}}]})).field == "clusters[0].name"


def test_size_limit_is_counted_in_bytes() -> None:
    base = dump(kubeconfig())
    padding = MAX_KUBECONFIG_BYTES - len(base.encode()) - 3
    at_limit = base + "# " + "x" * padding + "\n"
    assert len(at_limit.encode()) == MAX_KUBECONFIG_BYTES
    assert sanitize_kubeconfig(at_limit).token == TOKEN

    # Fewer than 1 MiB characters, but more than 1 MiB of UTF-8: refused.
    wide = base + "# " + "é" * (MAX_KUBECONFIG_BYTES // 2) + "\n"
    assert len(wide) < MAX_KUBECONFIG_BYTES < len(wide.encode())
    error = refused(wide)
    assert error.field == "kubeconfig" and "1 MiB" in error.reason


def _two_contexts(current: str | None) -> dict[str, Any]:
    document = kubeconfig()
    document["clusters"].append({"name": "dev", "cluster": {"server": "https://10.1.0.1"}})
    document["contexts"].append({"name": "dev", "context": {"cluster": "dev", "user": "admin"}})
    if current is None:
        del document["current-context"]
    else:
        document["current-context"] = current
    return document


def test_requested_context_wins_over_current_context() -> None:
    kc = sanitize_kubeconfig(dump(_two_contexts("prod")), context="dev")
    assert (kc.context_name, kc.server_url) == ("dev", "https://10.1.0.1")
    assert sanitize_kubeconfig(dump(_two_contexts("prod"))).context_name == "prod"


def test_missing_requested_context_lists_the_available_ones() -> None:
    error = refused(dump(_two_contexts("prod")), context="staging")
    assert error.field == "context"
    assert "'staging'" in error.reason and "prod, dev" in error.reason


def test_current_context_naming_nothing_is_refused() -> None:
    error = refused(dump(_two_contexts("gone")))
    assert error.field == "current-context" and "'gone'" in error.reason


def test_no_current_context_with_several_contexts_is_ambiguous() -> None:
    error = refused(dump(_two_contexts(None)))
    assert error.field == "current-context" and "choose one" in error.reason


def test_no_current_context_with_a_single_context_picks_it() -> None:
    document = kubeconfig()
    del document["current-context"]
    assert sanitize_kubeconfig(dump(document)).context_name == "prod"


def test_duplicate_names_are_ambiguous() -> None:
    document = kubeconfig()
    document["contexts"].append(document["contexts"][0])
    assert "ambiguous" in refused(dump(document)).reason
    document = kubeconfig()
    document["users"].append({"name": "admin", "user": {"token": "other"}})
    error = refused(dump(document))
    assert error.field == "users[admin]" and "ambiguous" in error.reason


def test_context_pointing_at_missing_cluster_or_user_is_refused() -> None:
    document = kubeconfig(context={"cluster": "nowhere"})
    assert refused(dump(document)).field == "contexts[prod].context.cluster"
    document = kubeconfig(context={"user": "nobody"})
    assert refused(dump(document)).field == "contexts[prod].context.user"


def test_hostile_names_are_shortened_in_error_paths() -> None:
    name = "n" * 500 + "\n"
    document = kubeconfig()
    document["contexts"][0]["name"] = name
    document["current-context"] = name
    document["contexts"][0]["context"]["evil"] = 1
    error = refused(dump(document))
    assert len(error.field) < 120 and "\n" not in error.field


def test_sanitized_kubeconfig_is_frozen() -> None:
    kc = sanitize_kubeconfig(dump(kubeconfig()))
    with pytest.raises(AttributeError):
        kc.token = "other"  # type: ignore[misc]
    assert isinstance(kc, SanitizedKubeconfig)


# --- YAML errors say where and what kind, never what ---------------------------------------------

CANARY = "Secr3tCanary"


@pytest.mark.parametrize("text", [
    f"users:\n- name: u\n  user:\n    password: *{CANARY}\n",
    f"users:\n- name: u\n  user:\n    password: !{CANARY} x\n",
    f"users:\n- name: u\n  user:\n    password: !{CANARY}!x y\n",
    f"%TAG !e! tag:{CANARY}:\n---\nusers: !e!x []\n",
    f"a: &{CANARY} 1\nb: &{CANARY} 2\n",
    f'users:\n- name: u\n  user:\n    password: "\\q{CANARY}"\n',
    f"users:\n- name: u\n  user:\n    password: !!int {CANARY}\n",
    "users:\n- name: u\n  user:\n    password: !!timestamp 2024-13-45\n",
    f"? [{CANARY}]\n: 1\n",
    f"users:\n- name: u\n  user:\n    token: {CANARY}\n  \t: [\n",
    f"a: 1\n\x07{CANARY}\n",
    f"a: !<tag:yaml.org,2002:python/object:{CANARY}> x\n",
])
def test_yaml_errors_carry_position_and_problem_class_only(text: str) -> None:
    error = refused(text)
    assert error.field == "kubeconfig"
    assert error.reason.startswith("is not valid YAML: ")
    assert " at line " in error.reason or " at position " in error.reason
    assert CANARY not in str(error) and "2024-13-45" not in str(error)
    assert "'" not in error.reason  # PyYAML's own messages quote what they found


def test_undefined_alias_names_the_problem_without_the_alias() -> None:
    error = refused(f"users:\n- name: u\n  user:\n    password: *{CANARY}\n")
    assert error.reason == (
        "is not valid YAML: an alias (*name) refers to an anchor that is not defined "
        "at line 4, column 15")


# --- parsing budgets ---------------------------------------------------------------------------


def _many_contexts(count: int) -> str:
    return dump({
        "clusters": [{"name": "c", "cluster": {"server": "https://10.0.0.1"}}],
        "contexts": [{"name": f"ctx-{i}", "context": {"cluster": "c"}} for i in range(count)],
        "current-context": "ctx-0",
    })


def test_a_megabyte_of_tiny_nodes_is_refused_quickly() -> None:
    text = "a: [" + ",".join(["1"] * 470_000) + "]\n"
    assert len(text.encode()) < MAX_KUBECONFIG_BYTES
    started = time.monotonic()
    error = refused(text)
    assert error.field == "kubeconfig"
    assert f"more than {MAX_KUBECONFIG_NODES} YAML nodes" in error.reason
    assert time.monotonic() - started < PARSE_TIME_LIMIT_S


def test_too_many_contexts_are_refused_naming_the_section() -> None:
    error = refused(_many_contexts(MAX_KUBECONFIG_ENTRIES + 1))
    assert error.field == "contexts"
    assert f"the limit is {MAX_KUBECONFIG_ENTRIES}" in error.reason
    assert sanitize_kubeconfig(_many_contexts(MAX_KUBECONFIG_ENTRIES)).context_name == "ctx-0"


def test_nesting_beyond_the_depth_limit_is_refused_before_recursing() -> None:
    deep = "a: " + "[" * (MAX_KUBECONFIG_DEPTH + 1) + "]" * (MAX_KUBECONFIG_DEPTH + 1)
    assert f"nested deeper than {MAX_KUBECONFIG_DEPTH}" in refused(deep).reason


def test_aliases_count_once_so_a_billion_laughs_stays_small() -> None:
    laughs = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    for level in "bcdefghi":
        previous = chr(ord(level) - 1)
        laughs.append(f"{level}: &{level} [" + ", ".join([f"*{previous}"] * 10) + "]")
    text = dump(kubeconfig()) + "\n".join(f"x{line}" for line in laughs) + "\n"
    started = time.monotonic()
    # Ten billion leaves if expanded; accepted (unknown top-level keys are dropped) in no time.
    assert sanitize_kubeconfig(text).token == TOKEN
    assert time.monotonic() - started < 1.0


def test_the_parse_deadline_stops_the_loader_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    import app.kubeconfig as module

    monkeypatch.setattr(module, "PARSE_TIME_LIMIT_S", 0.0)
    error = refused("a: [" + ",".join(["1"] * 5_000) + "]\n")
    assert "took longer than 0s to parse" in error.reason


async def test_off_loop_sanitizing_keeps_the_event_loop_free() -> None:
    # Just under the node budget: the largest parse a hostile document can cause.
    text = "a: [" + ",".join(["1"] * (MAX_KUBECONFIG_NODES - 100)) + "]\n" + dump(kubeconfig())
    ticks: list[float] = []

    async def heartbeat() -> None:
        while True:
            ticks.append(time.monotonic())
            await asyncio.sleep(0.01)

    beating = asyncio.create_task(heartbeat())
    try:
        started = time.monotonic()
        kc = await sanitize_kubeconfig_off_loop(text)
        elapsed = time.monotonic() - started
    finally:
        beating.cancel()
    assert kc.token == TOKEN
    gaps = [later - earlier for earlier, later in itertools.pairwise(ticks)]
    # The parse took a while, and the loop kept running all along (on the loop, one gap
    # would be the whole parse).
    assert len(ticks) > 5
    assert max(gaps) < elapsed / 3, (max(gaps), elapsed)


async def test_off_loop_errors_are_the_same_kubeconfig_errors() -> None:
    with pytest.raises(KubeconfigError) as caught:
        await sanitize_kubeconfig_off_loop(dump(kubeconfig()), context="missing")
    assert caught.value.field == "context"


# --- lengths and characters of the kubeconfig's own strings -----------------------------------


@pytest.mark.parametrize(("document", "field", "fragment"), [
    (kubeconfig(server="https://k.example/" + "p" * 2100),
     "clusters[prod].cluster.server", "at most 2048"),
    (kubeconfig(user={"token": "t" * (16 * 1024 + 1)}), "users[admin].user.token", "at most"),
    (kubeconfig(user={"username": "u" * 257, "password": "p"}),
     "users[admin].user.username", "at most 256"),
    (kubeconfig(user={"username": "u", "password": "p" * 1025}),
     "users[admin].user.password", "at most 1024"),
    ({**kubeconfig(), "contexts": [{"name": "p\x1bwn", "context": {"cluster": "prod"}}]},
     "contexts[0].name", "control characters"),
    ({**kubeconfig(), "clusters": [{"name": "c" * 254, "cluster": {"server": "https://a"}}]},
     "clusters[0].name", "at most 253"),
])
def test_kubeconfig_strings_have_length_and_character_rules(
    document: dict[str, Any], field: str, fragment: str
) -> None:
    error = refused(dump(document))
    assert error.field == field and fragment in error.reason


def test_requested_context_name_has_the_same_rules() -> None:
    assert refused(dump(kubeconfig()), context="x" * 300).field == "context"
    assert refused(dump(kubeconfig()), context="a\nb").field == "context"


def test_plain_http_is_allowed_for_every_loopback_spelling_but_not_lookalikes() -> None:
    for server in ("http://0x7f000001:8080", "http://[::ffff:127.0.0.1]:80", "http://ⓛocalhost"):
        assert sanitize_kubeconfig(dump(kubeconfig(server=server))).server_url == server
    error = refused(dump(kubeconfig(server="http://localhost.attacker.example")))
    assert "plain http" in error.reason


@pytest.mark.parametrize("server", [
    "https://%31%32%37.0.0.1", "https://127.0.0.1%00", "https://xn--", "https://a..b",
    "https://-a-.com", "https://" + "a" * 300, "https://[v1.fe80::a]", "https://\u2488.0.0.1",
])
def test_server_hosts_must_be_dns_names_or_ip_literals_once_folded(server: str) -> None:
    error = refused(dump(kubeconfig(server=server)))
    assert error.field == "clusters[prod].cluster.server"
    assert "not a DNS name or an IP address" in error.reason


@pytest.mark.parametrize("server", [
    "https://my_cluster.internal", "https://kube.example.com.", "https://10.0.0.1:6443",
    "https://[fd00::1]:443", "https://xn--bcher-kva.example",
])
def test_ordinary_server_hosts_are_accepted(server: str) -> None:
    assert sanitize_kubeconfig(dump(kubeconfig(server=server))).server_url == server
