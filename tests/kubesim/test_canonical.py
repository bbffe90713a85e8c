"""kubesim stores quantities the way kube-apiserver does: decoded and re-encoded, so clients read
the canonical form back, on create, update and every kind of patch; and its labelSelector is
``labels.Parse``'s grammar, over real HTTP."""

from __future__ import annotations

import json
from typing import Any

import pytest
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from kubesim import KubeSim
from kubesim.errors import ApiError

# sent -> what a real API server returns (quantity.go's CanonicalizeBytes and its kept input)
CANONICAL = {
    "1000m": "1",
    "1.5Gi": "1536Mi",
    "0.5": "500m",
    "3.001n": "4n",
    "1024Mi": "1Gi",
    "100m": "100m",
    "1e3": "1e3",  # DecimalExponent input that already looks canonical is kept as sent
    "+1": "+1",
    "9Ei": "9223372036854775807",  # binary values are capped at 2^63-1
    "0.000000000001Ki": "2n",
    " 2 ": "2",  # UnmarshalJSON trims whitespace
    "1000E": "1e21",  # past the E suffix: exponent form (kubernetes/kubernetes#140459)
}
# ...and what a ResourceList (requests, limits, overhead, allocatedResources) holds instead,
# where SetDefaults_ResourceList also rounds up to a milli (checked against kube-apiserver 1.35
# in tests/realk8s/test_conformance.py); a lone Quantity such as emptyDir.sizeLimit is not.
IN_RESOURCE_LIST = {"3.001n": "1m", "0.000000000001Ki": "1m"}
# JSON values other than strings, as a client may send them
CANONICAL_JSON: dict[str, tuple[Any, str]] = {
    "number": (2, "2"),
    "float": (0.25, "250m"),
    "null": (None, "0"),
}


@pytest.fixture
async def sim() -> Any:
    async with KubeSim.start(fleet=None, seed=3) as running:
        running.store.create("namespaces", {"metadata": {"name": "shop"}})
        yield running


def resources(value: Any) -> dict[str, Any]:
    return {"requests": {"cpu": value, "memory": value}, "limits": {"cpu": value}}


def pod(value: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "p", "namespace": "shop"},
        "spec": {
            "containers": [{"name": "c", "image": "i", "resources": resources(value)}],
            "initContainers": [{"name": "i", "image": "i", "resources": resources(value)}],
            "overhead": {"cpu": value},
            "volumes": [{"name": "v", "emptyDir": {"sizeLimit": value}}],
        },
        "status": {"containerStatuses": [{"name": "c", "allocatedResources": {"cpu": value},
                                          "resources": resources(value)}]},
    }


def resource_list_quantities(obj: dict[str, Any]) -> list[Any]:
    spec, status = obj["spec"], obj["status"]["containerStatuses"][0]
    found = []
    for holder in (spec["containers"][0]["resources"], spec["initContainers"][0]["resources"],
                   status["resources"]):
        found += [*holder["requests"].values(), *holder["limits"].values()]
    return [*found, spec["overhead"]["cpu"], status["allocatedResources"]["cpu"]]


def pod_quantities(obj: dict[str, Any]) -> list[Any]:
    return [*resource_list_quantities(obj), obj["spec"]["volumes"][0]["emptyDir"]["sizeLimit"]]


ALL_CASES = [*((sent, sent, want) for sent, want in CANONICAL.items()),
             *((name, sent, want) for name, (sent, want) in CANONICAL_JSON.items())]


@pytest.mark.parametrize(("label", "sent", "want"), ALL_CASES, ids=[c[0] for c in ALL_CASES])
async def test_pod_quantities_are_stored_canonical_on_create(
    sim: KubeSim, label: str, sent: Any, want: str
) -> None:
    stored = sim.store.create("pods", pod(sent), namespace="shop")
    for obj in (stored, sim.store.get("pods", "p", namespace="shop")):
        assert set(resource_list_quantities(obj)) == {IN_RESOURCE_LIST.get(label, want)}
        assert obj["spec"]["volumes"][0]["emptyDir"]["sizeLimit"] == want


async def test_update_and_every_patch_type_canonicalize(sim: KubeSim) -> None:
    stored = sim.store.create("pods", pod("1"), namespace="shop")
    stored["spec"]["containers"][0]["resources"]["requests"]["cpu"] = "2000m"
    updated = sim.store.update("pods", stored, namespace="shop")
    assert updated["spec"]["containers"][0]["resources"]["requests"]["cpu"] == "2"

    merged = sim.store.patch("pods", "p", {"spec": {"overhead": {"cpu": "0.1"}}},
                             namespace="shop", patch_type="merge")
    assert merged["spec"]["overhead"]["cpu"] == "100m"
    strategic = sim.store.patch(
        "pods", "p",
        {"spec": {"containers": [{"name": "c", "resources": {"limits": {"memory": "2048Ki"}}}]}},
        namespace="shop", patch_type="strategic",
    )
    assert strategic["spec"]["containers"][0]["resources"]["limits"]["memory"] == "2Mi"
    jsonpatch = sim.store.patch(
        "pods", "p",
        [{"op": "replace", "path": "/spec/volumes/0/emptyDir/sizeLimit", "value": "1.5Gi"}],
        namespace="shop", patch_type="json",
    )
    assert jsonpatch["spec"]["volumes"][0]["emptyDir"]["sizeLimit"] == "1536Mi"


async def test_nodes_quotas_and_pod_templates_are_canonical(sim: KubeSim) -> None:
    node = sim.store.create("nodes", {
        "metadata": {"name": "n1"},
        "status": {"capacity": {"cpu": "4000m", "memory": "16384Mi", "pods": "110"},
                   "allocatable": {"cpu": "3.5", "memory": "15.5Gi", "ephemeral-storage": "1e3"}},
    })
    assert node["status"]["capacity"] == {"cpu": "4", "memory": "16Gi", "pods": "110"}
    assert node["status"]["allocatable"] == {"cpu": "3500m", "memory": "15872Mi",
                                             "ephemeral-storage": "1e3"}
    quota = sim.store.create("resourcequotas", {
        "metadata": {"name": "q"},
        "spec": {"hard": {"requests.cpu": "10000m", "requests.memory": "0.5Gi"}},
        "status": {"hard": {"pods": "1k"}, "used": {"requests.cpu": "0.75"}},
    }, namespace="shop")
    assert quota["spec"]["hard"] == {"requests.cpu": "10", "requests.memory": "512Mi"}
    assert quota["status"] == {"hard": {"pods": "1k"}, "used": {"requests.cpu": "750m"}}
    for kind in ("deployments", "replicasets"):
        template = {"spec": {"containers": [{"name": "c", "image": "i",
                                             "resources": {"requests": {"cpu": "0.5"}}}]}}
        stored = sim.store.create(kind, {
            "metadata": {"name": "d"},
            "spec": {"selector": {"matchLabels": {"a": "b"}}, "template": template},
        }, namespace="shop")
        requests = stored["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]
        assert requests == {"cpu": "500m"}


@pytest.mark.parametrize("bad", ["1.5.5", "1i", "abc", "1 Gi", True, {"n": 1}])
async def test_a_value_that_is_not_a_quantity_is_a_400_and_nothing_is_stored(
    sim: KubeSim, bad: Any
) -> None:
    with pytest.raises(ApiError) as caught:
        sim.store.create("pods", pod(bad), namespace="shop")
    assert caught.value.code == 400
    assert caught.value.message.startswith('Pod in version "v1" cannot be handled as a Pod: ')
    assert "spec.containers[0].resources.limits[cpu]: " in caught.value.message
    assert not sim.store.exists("pods", "p", namespace="shop")


async def test_over_http_clients_read_back_canonical_quantities(sim: KubeSim) -> None:
    async with client.ApiClient(configuration=sim.client_configuration()) as api:
        core: Any = client.CoreV1Api(api)
        response = await core.create_namespaced_pod("shop", pod("1.5Gi"), _preload_content=False)
        assert response.status == 201
        assert set(pod_quantities(json.loads(await response.read()))) == {"1536Mi"}
        response = await core.read_namespaced_pod("p", "shop", _preload_content=False)
        assert set(pod_quantities(json.loads(await response.read()))) == {"1536Mi"}
        with pytest.raises(ApiException) as caught:
            await core.create_namespaced_pod("shop", {**pod("1.5.5"), "metadata": {"name": "q"}})
        assert caught.value.status == 400
        assert "quantities must match the regular expression" in str(caught.value.body)


async def test_label_selectors_over_http_follow_labels_parse(sim: KubeSim) -> None:
    for name, labels in {"a": {"rank": "3", "tier": ""}, "b": {"rank": "12"},
                         "c": {"rank": "x"}, "d": {}}.items():
        sim.store.create("pods", {"metadata": {"name": name, "labels": labels},
                                  "spec": {"containers": [{"name": "c", "image": "i"}]}},
                         namespace="shop")
    async with client.ApiClient(configuration=sim.client_configuration()) as api:
        core: Any = client.CoreV1Api(api)

        async def names(selector: str) -> list[str]:
            found = await core.list_namespaced_pod("shop", label_selector=selector)
            return sorted(p.metadata.name for p in found.items)

        assert await names("rank>5") == ["b"]
        assert await names("rank<5") == ["a"]  # "x" is no integer: neither > nor <
        assert await names("tier in ()") == ["a"]  # the set holding the empty string
        assert await names("rank notin (3,12)") == ["c", "d"]  # no key matches notin
        assert await names("!rank") == ["d"]
        with pytest.raises(ApiException) as caught:
            await core.list_namespaced_pod("shop", label_selector="x=a||y=b")
        assert caught.value.status == 400
        body = json.loads(str(caught.value.body))
        assert body["reason"] == "BadRequest"
        assert body["message"].startswith("unable to parse requirement: ")
        assert body["message"].endswith("(at character 3)")
