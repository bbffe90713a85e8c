"""kubesim reads the Kubernetes protobuf envelope kubectl 1.35 sends for its typed creates.

The bodies are built here by a small encoder of the wire format (independent of the decoder
under test) with the field numbers of k8s.io/api's generated.proto; the end-to-end check with
the real kubectl is tests/realk8s/test_conformance.py::test_kubectl_create_get_apply_delete.
"""

from __future__ import annotations

import base64

import aiohttp
import pytest

from kubesim import KubeSim
from kubesim.errors import ApiError
from kubesim.protobuf import MEDIA_TYPE, decode_object


def varint(value: int) -> bytes:
    value &= (1 << 64) - 1
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def field(number: int, value: bytes | str | int) -> bytes:
    if isinstance(value, int):
        return varint(number << 3) + varint(value)
    data = value.encode() if isinstance(value, str) else value
    return varint(number << 3 | 2) + varint(len(data)) + data


def entry(key: str, value: bytes | str) -> bytes:
    return field(1, key) + field(2, value)


def envelope(api_version: str, kind: str, raw: bytes) -> bytes:
    type_meta = field(1, api_version) + field(2, kind)
    # Go writes every non-pointer field: the empty contentEncoding and contentType too.
    return b"k8s\x00" + field(1, type_meta) + field(2, raw) + field(3, "") + field(4, "")


def object_meta(name: str, **labels: str) -> bytes:
    meta = field(1, name) + field(2, "") + field(3, "") + field(4, "") + field(7, 0)
    meta += field(8, b"")  # a zero metav1.Time
    for key, value in labels.items():
        meta += field(11, entry(key, value))
    return meta


def test_a_namespace_as_kubectl_create_ns_sends_it() -> None:
    body = envelope("v1", "Namespace", field(1, object_meta("shop")) + field(2, b"") +
                    field(3, b""))
    assert decode_object(body) == {"apiVersion": "v1", "kind": "Namespace",
                                   "metadata": {"name": "shop"}}


def test_a_deployment_with_quantities_ints_and_maps() -> None:
    quantity = field(1, "0.5")
    container = (field(1, "web") + field(2, "nginx:1.27") +
                 field(8, field(2, entry("cpu", quantity))) +
                 field(6, field(3, 8080) + field(4, "TCP")))
    template = field(1, object_meta("", app="web")) + field(2, field(2, container))
    rolling = field(1, field(1, 0) + field(2, 2)) + field(2, field(1, 1) + field(3, "25%"))
    spec = (field(1, 0) + field(2, field(1, entry("app", "web"))) + field(3, template) +
            field(4, field(1, "RollingUpdate") + field(2, rolling)) + field(5, -1))
    body = envelope("apps/v1", "Deployment", field(1, object_meta("web", app="web")) +
                    field(2, spec) + field(3, b""))
    assert decode_object(body) == {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "labels": {"app": "web"}},
        "spec": {
            "replicas": 0,  # a pointer field: zero is a value
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{
                    "name": "web", "image": "nginx:1.27",
                    "resources": {"requests": {"cpu": "0.5"}},
                    "ports": [{"containerPort": 8080, "protocol": "TCP"}]}]},
            },
            "strategy": {"type": "RollingUpdate",
                         "rollingUpdate": {"maxUnavailable": 2, "maxSurge": "25%"}},
            "minReadySeconds": -1,  # int32 varints carry negatives as 64-bit two's complement
        },
    }


def test_secret_bytes_become_base64() -> None:
    body = envelope("v1", "Secret", field(1, object_meta("s")) +
                    field(2, entry("token", b"\x00\xffraw")) + field(3, "Opaque"))
    assert decode_object(body)["data"] == {"token": base64.b64encode(b"\x00\xffraw").decode()}


def test_what_kubesim_cannot_decode_is_an_error_not_a_loss() -> None:
    unknown_field = envelope("v1", "Namespace", field(1, object_meta("x")) + field(9, "v"))
    with pytest.raises(ApiError) as error:
        decode_object(unknown_field)
    assert error.value.code == 400 and "field 9 of a protobuf Namespace" in error.value.message
    with pytest.raises(ApiError) as error:
        decode_object(envelope("v1", "ConfigMap", b""))
    assert error.value.code == 415
    with pytest.raises(ApiError) as error:
        decode_object(b'{"kind": "Namespace"}')
    assert error.value.code == 400
    with pytest.raises(ApiError) as error:
        decode_object(envelope("v1", "Namespace", field(1, object_meta("x"))[:-2]))
    assert error.value.code == 400 and "truncated" in error.value.message


async def test_a_protobuf_post_creates_the_object() -> None:
    async with KubeSim.start(fleet=None, seed=2) as sim, aiohttp.ClientSession() as http:
        response = await http.post(
            f"{sim.url}/api/v1/namespaces", data=envelope("v1", "Namespace",
                                                          field(1, object_meta("pb"))),
            headers={"Authorization": f"Bearer {sim.token}", "Content-Type": MEDIA_TYPE,
                     "Accept": f"{MEDIA_TYPE},application/json"},
            params={"fieldManager": "kubectl-create"})
        assert response.status == 201
        assert response.content_type == "application/json"  # the client's second choice
        created = await response.json()
        assert created["metadata"]["name"] == "pb"
        assert created["metadata"]["managedFields"][0]["manager"] == "kubectl-create"
        assert sim.store.get("namespaces", "pb")["status"] == {"phase": "Active"}


async def test_a_protobuf_delete_options_body_is_read() -> None:
    """A typed client's DELETE carries DeleteOptions in protobuf: gracePeriodSeconds=0 is
    honoured, so the Pod goes at once instead of gracefully."""
    async with KubeSim.start(fleet="small", seed=2) as sim, aiohttp.ClientSession() as http:
        pod = sim.store.list("pods", namespace="payments-prod")[0]["metadata"]["name"]
        options = envelope("meta.k8s.io/v1", "DeleteOptions", field(1, 0) + field(4, "Background"))
        response = await http.delete(
            f"{sim.url}/api/v1/namespaces/payments-prod/pods/{pod}", data=options,
            headers={"Authorization": f"Bearer {sim.token}", "Content-Type": MEDIA_TYPE})
        assert response.status == 200
        assert "deletionTimestamp" not in (await response.json())["metadata"]
        assert decode_object(options) == {"apiVersion": "meta.k8s.io/v1",
                                          "kind": "DeleteOptions", "gracePeriodSeconds": 0,
                                          "propagationPolicy": "Background"}
