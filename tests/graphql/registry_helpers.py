"""Kubeconfigs and GraphQL documents shared by the registry tests."""

from __future__ import annotations

from typing import Any

import yaml

REGISTER = """
mutation($input: RegisterClusterInput!) {
  registerCluster(input: $input) {
    __typename
    ... on Cluster { id name status provider apiServerUrl labels }
    ... on InvalidInput { message fieldErrors { field message } }
  }
}"""


def kubeconfig(*, server: str = "http://127.0.0.1:6443", token: str = "tok-abc",
               user_extra: dict[str, Any] | None = None,
               cluster_extra: dict[str, Any] | None = None) -> str:
    user: dict[str, Any] = {"token": token, **(user_extra or {})}
    cluster: dict[str, Any] = {"server": server, **(cluster_extra or {})}
    return yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "ctx",
        "clusters": [{"name": "c", "cluster": cluster}],
        "users": [{"name": "u", "user": user}],
        "contexts": [{"name": "ctx", "context": {"cluster": "c", "user": "u"}}],
    })


def cluster_input(name: str, **overrides: Any) -> dict[str, Any]:
    return {"name": name, "provider": "K3S", "kubeconfig": kubeconfig(), **overrides}


def error_codes(body: dict[str, Any]) -> list[str]:
    return [e.get("extensions", {}).get("code") for e in body.get("errors") or []]
