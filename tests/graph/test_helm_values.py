"""Helm values are opened from the vault and redacted at every depth; only admins may see
them unredacted; a ciphertext moved to another release does not open."""

from __future__ import annotations

from typing import Any

import orjson

from app.credentials import helm_values_aad
from app.vault import Vault
from resolvers.redaction import is_sensitive_key, redact
from tests.api import Tenant
from tests.graph import rows

VALUES = {
    "replicas": 2,
    "image": {"repository": "ghcr.io/acme/api", "tag": "1.4.2"},
    "keyboardLayout": "us",
    "postgresql": {"auth": {"username": "api", "password": "hunter2", "database": "api"}},
    "existingSecret": "api-secrets",
    "ingress": {"tls": [{"hosts": ["api.example.com"], "key": "-----BEGIN KEY-----"}]},
    "env": [{"name": "LOG_LEVEL", "value": "info"}, {"name": "X", "apiToken": "t0k"}],
    "aws": {"accessKeyId": "AKIA", "credentials": {"nested": "deep"}},
}
REDACTED = {
    "replicas": 2,
    "image": {"repository": "ghcr.io/acme/api", "tag": "1.4.2"},
    "keyboardLayout": "us",
    "postgresql": {"auth": {"username": "api", "password": "***", "database": "api"}},
    "existingSecret": "***",
    "ingress": {"tls": [{"hosts": ["api.example.com"], "key": "***"}]},
    "env": [{"name": "LOG_LEVEL", "value": "info"}, {"name": "X", "apiToken": "***"}],
    "aws": {"accessKeyId": "***", "credentials": "***"},
}


def test_redaction_reaches_nested_dicts_and_lists() -> None:
    assert redact(VALUES) == REDACTED


def test_sensitive_key_words() -> None:
    for key in ("password", "dbPassword", "DB_PASSWD", "client-secret", "bearerToken",
                "tls.key", "privateKey", "api_key", "credentials", "sshKeys", "sentryDsn"):
        assert is_sensitive_key(key), key
    for key in ("keyboard", "monkey", "hosts", "replicas", "turkey"):
        assert not is_sensitive_key(key), key


QUERY = """query($redact: Boolean!) { clusters { edges { node {
    helmReleases { edges { node { name chartName values(redact: $redact) } } } } } } }"""


async def _seed(api: Any, tenant: Tenant) -> None:
    vault = Vault.from_env(api.settings.encryption_keys)
    async with api.pool.acquire() as conn:
        cid = await rows.cluster(conn, tenant.org_id, "helm")
        sealed = vault.encrypt(orjson.dumps(VALUES), aad=helm_values_aad(cid, "apps", "api"))
        for name in ("api", "moved"):  # "moved" holds api's ciphertext: bound to api's row
            await rows.insert(conn, "k8s_helm_releases", cluster_id=cid, namespace="apps",
                              name=name, revision=3, chart_name="api",
                              values_encrypted=sealed.ciphertext, values_key_id=sealed.key_id)


async def _values(api: Any, tenant: Tenant, role: str, redact: bool) -> dict[str, Any]:
    answer: dict[str, Any] = await api.gql(QUERY, {"redact": redact}, token=tenant.tokens[role])
    return answer


async def test_values_over_http(api: Any, tenant: Tenant) -> None:
    await _seed(api, tenant)
    viewer = await _values(api, tenant, "viewer", True)
    releases = viewer["data"]["clusters"]["edges"][0]["node"]["helmReleases"]["edges"]
    assert releases[0]["node"] == {"name": "api", "chartName": "api", "values": REDACTED}
    # The copied ciphertext is refused for the other release, without leaking anything.
    assert releases[1]["node"]["values"] is None
    assert [e["extensions"]["code"] for e in viewer["errors"]] == ["VALUES_UNAVAILABLE"]
    assert "hunter2" not in orjson.dumps(viewer).decode()

    refused = await _values(api, tenant, "operator", False)
    assert {e["extensions"]["code"] for e in refused["errors"]} == {"FORBIDDEN"}
    assert "hunter2" not in orjson.dumps(refused).decode()

    admin = await _values(api, tenant, "admin", False)
    raw = admin["data"]["clusters"]["edges"][0]["node"]["helmReleases"]["edges"][0]
    assert raw["node"]["values"] == VALUES
