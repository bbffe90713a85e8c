"""Writes through kubesim's API set its controllers going, as kube-controller-manager, the
scheduler and a kubelet would: and deletes go the way kube-apiserver takes them.

(The same behaviours against the real apiserver: tests/realk8s/test_conformance.py.)
"""

from __future__ import annotations

from typing import Any

import aiohttp

from kubesim import Fleet, KubeSim


def fleet_of(sim: KubeSim) -> Fleet:
    assert sim.fleet is not None
    return sim.fleet


async def call(sim: KubeSim, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as http, http.request(
        method, sim.url + path, json=body, headers={"Authorization": f"Bearer {sim.token}"}
    ) as response:
        return response.status, await response.json()


def deployment(name: str, replicas: int) -> dict[str, Any]:
    labels = {"app": name}
    return {"metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels},
                                  "spec": {"containers": [{"name": "c", "image": "i",
                                                           "resources": {"requests": {
                                                               "cpu": "100m"}}}]}}}}


async def test_a_deployment_gets_running_pods_and_a_deleted_one_comes_back(
    kubesim: KubeSim,
) -> None:
    status, created = await call(kubesim, "POST", "/apis/apps/v1/namespaces/default/deployments",
                                 deployment("api", 3))
    assert status == 201
    [rs] = kubesim.store.owned_by(created["metadata"]["uid"], "replicasets")
    pods = kubesim.store.owned_by(rs.obj["metadata"]["uid"], "pods")
    assert len(pods) == 3
    assert {p.obj["status"]["phase"] for p in pods} == {"Running"}
    assert all(p.obj["spec"]["nodeName"] in fleet_of(kubesim).node_names for p in pods)
    stored = kubesim.store.get("deployments", "api", namespace="default")
    assert (stored["status"]["readyReplicas"], stored["status"]["updatedReplicas"]) == (3, 3)

    victim = pods[0].obj["metadata"]
    status, answer = await call(kubesim, "DELETE",
                                f"/api/v1/namespaces/default/pods/{victim['name']}")
    # Graceful: the answer is the Pod with its deletionTimestamp 30 s ahead; then it is gone.
    assert status == 200 and answer["metadata"]["deletionGracePeriodSeconds"] == 30
    assert not kubesim.store.exists("pods", victim["name"], namespace="default")
    after = kubesim.store.owned_by(rs.obj["metadata"]["uid"], "pods")
    assert len(after) == 3 and victim["uid"] not in {p.obj["metadata"]["uid"] for p in after}


async def test_a_bare_pod_is_scheduled_and_started(kubesim: KubeSim) -> None:
    pod = {"metadata": {"name": "bare"},
           "spec": {"containers": [{"name": "c", "image": "nginx"}]}}
    status, created = await call(kubesim, "POST", "/api/v1/namespaces/default/pods", pod)
    assert status == 201 and created["status"] == {"phase": "Pending"}
    stored = kubesim.store.get("pods", "bare", namespace="default")
    assert stored["spec"]["nodeName"] in fleet_of(kubesim).node_names
    assert stored["status"]["phase"] == "Running"
    assert stored["status"]["containerStatuses"][0]["ready"] is True


async def test_forced_pod_deletion_and_immediate_deletes_answer_a_status(
    kubesim: KubeSim,
) -> None:
    pod = kubesim.store.list("pods", namespace="payments-prod")[0]["metadata"]
    status, answer = await call(
        kubesim, "DELETE",
        f"/api/v1/namespaces/payments-prod/pods/{pod['name']}?gracePeriodSeconds=0")
    assert status == 200 and "deletionTimestamp" not in answer["metadata"]
    secret = kubesim.store.create("secrets", {"metadata": {"name": "s", "namespace": "default"}})
    status, answer = await call(kubesim, "DELETE", "/api/v1/namespaces/default/secrets/s")
    assert answer == {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                      "details": {"name": "s", "kind": "secrets",
                                  "uid": secret["metadata"]["uid"]}}


async def test_a_namespace_turns_terminating_before_it_goes(kubesim: KubeSim) -> None:
    subscription = kubesim.store.subscribe("namespaces")
    status, answer = await call(kubesim, "DELETE", "/api/v1/namespaces/payments-prod")
    assert status == 200 and answer["status"] == {"phase": "Terminating"}
    assert answer["metadata"]["deletionTimestamp"] == kubesim.clock.timestamp()
    events = [subscription.queue.get_nowait() for _ in range(subscription.queue.qsize())]
    assert all(e is not None for e in events)
    assert [(e.type, e.entry.obj["status"]["phase"]) for e in events if e] == [
        ("MODIFIED", "Terminating"), ("DELETED", "Terminating")]
    assert kubesim.store.list("pods", namespace="payments-prod") == []
    assert kubesim.store.list("serviceaccounts", namespace="payments-prod") == []
    kubesim.store.unsubscribe(subscription)


async def test_every_namespace_has_its_default_service_account(kubesim: KubeSim) -> None:
    namespaces = {n["metadata"]["name"] for n in kubesim.store.list("namespaces")}
    accounts = kubesim.store.list("serviceaccounts")
    assert {(a["metadata"]["namespace"], a["metadata"]["name"]) for a in accounts} == {
        (ns, "default") for ns in namespaces}
