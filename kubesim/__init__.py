"""kubesim: a Kubernetes API server emulator and fleet simulator for tests, demo and benchmarks.

There is no kube-apiserver (and no Docker) on our machines, so kubesim speaks the real
Kubernetes REST API over real HTTP - well enough that ``kubernetes-asyncio`` and ``kubectl``
accept it - on top of an in-memory store, and simulates a believable fleet that changes over
time. It imports nothing else of FleetGraph's.

Start one
---------
In a test, on the running loop::

    from kubesim import KubeSim

    async with KubeSim.start(fleet="small", seed=1) as sim:   # port 0 = a free port
        sim.url            # "http://127.0.0.1:PORT"
        sim.token          # bearer token the server requires (401 otherwise)
        sim.kubeconfig     # kubeconfig dict: one cluster, a token user, current-context set
        sim.write_kubeconfig(path)          # same, as a 0600 YAML file for kubectl
        sim.client_configuration()          # a kubernetes_asyncio Configuration (not global)

``KubeSim.start(**options)`` accepts ``fleet`` ("small" ~3 nodes/~40 pods, "medium" ~20
nodes/~1,000 pods, "large" ~100 nodes/~10,000 pods, or None for an empty cluster), ``seed``,
``token``, ``host``, ``port``, ``history_window`` (events kept for watch resumption; older
versions get 410), ``bookmark_interval`` (seconds between watch BOOKMARKs), ``start_time``
(simulated clock start; default: the current hour) and ``realtime=True`` (fleet follows the
wall clock). tests/kubesim/conftest.py has a ``kubesim`` fixture built on this.
From a shell: ``python -m kubesim --port P --fleet small --seed S --kubeconfig-out FILE
[--token T] [--realtime]`` serves until SIGINT/SIGTERM.

Served API
----------
core/v1 namespaces, nodes, pods, resourcequotas, secrets, events, persistentvolumeclaims,
persistentvolumes (the fleet's claims are Bound to volumes provisioned for them, see
``Fleet.create_claim``); apps/v1 deployments,
replicasets (+ ``deployments/scale``, ``*/status``); metrics.k8s.io/v1beta1 nodes and pods;
``/version``, ``/api``, ``/apis`` and per-group discovery; Table output for kubectl. Lists
page with ``limit``/``continue`` and filter by ``labelSelector`` and ``fieldSelector``
(metadata.name, metadata.namespace, spec.nodeName, status.phase); watches resume from a
``resourceVersion`` and send BOOKMARKs (also 2 s before a watch's timeout, as the watch cache
does); POST and PUT in JSON or, for what kubectl creates, protobuf; merge/strategic/JSON PATCH;
DELETE (finalizers, graceful Pods, namespaces Terminating first, ownerReference garbage
collection). Writes through the API get managedFields, and with a fleet its controllers act
on them at once (a Deployment gets its ReplicaSet and Pods, a deleted Pod comes back).
Errors are Status objects; a path no group serves is a plain-text 404, as kube-apiserver's.
``sim.add_user_without_rights("nobody")`` returns a token that RBAC would answer 403.
tests/realk8s/test_conformance.py holds all of this to the real apiserver's answers.

Direct access to objects: ``sim.store`` (:class:`kubesim.store.Store`)
-----------------------------------------------------------------------
``create(resource, obj, *, namespace=None, preserve_metadata=False)``,
``get(resource, name, *, namespace=None)``, ``list(resource, *, namespace=None,
label_selector=None, field_selector=None)``, ``update(resource, obj)``,
``patch(resource, name, patch, *, namespace=None, patch_type="merge"|"strategic"|"json")``,
``delete(resource, name, *, namespace=None)``, ``resource_version``, ``compact()`` (drop all
history: any older version now gets 410), ``history_window`` (settable). ``resource`` is a
plural, kind or short name ("pods", "Deployment", "rs"). Writes raise
:class:`kubesim.errors.ApiError` (``.code``, ``.reason``) exactly as the HTTP API answers, and
every write is seen by watchers.

Faults: ``sim.faults`` (:class:`kubesim.faults.Faults`) and the listener
-------------------------------------------------------------------------
``faults.latency = 0.3`` (+ ``latency_jitter``) delays every answer;
``faults.fail_next(n, status=500)``; ``faults.throttle_next(n, retry_after=2)`` (429 +
Retry-After); ``faults.inject_error(status, count=None, rate=0.2, retry_after=None,
path_contains="/pods", methods=("GET",))`` for rates and targeting; ``faults.cut_watches(n)``
(the next n watch events are cut mid-JSON and the socket aborted; ``None`` = every event);
``faults.force_410(n)`` (next n watches get an ERROR 410 event / lists with a
resourceVersion or continue get HTTP 410); ``faults.metrics_available = False``
(metrics.k8s.io 404s and leaves /apis); ``faults.reset()``. Server down altogether:
``await sim.down()`` closes the listener and drops every connection (clients get connection
refused), ``await sim.up()`` listens again on the same port; ``async with sim.outage():``.

Fleet hooks: ``sim.fleet`` (:class:`kubesim.fleet.Fleet`)
----------------------------------------------------------
Time: ``step(seconds=10.0)``, ``advance(seconds, *, tick=10.0)``, ``await
run_realtime(speed=1.0, tick=2.0)``, ``reconcile()`` (controllers only, no clock move).
Forced events: ``oom_kill(namespace, pod, *, container=None)``,
``crashloop(namespace, pod, *, container=None, restarts=1)``, ``recover(namespace, pod)``,
``set_node_ready(name, ready, *, recover_after=None)``, ``scale(namespace, deployment,
replicas)``, ``rollout(namespace, deployment, *, image=None)``, ``set_load(namespace,
deployment, load)``, ``helm_upgrade(namespace, release)``; ``snapshot()`` returns every
object; ``stats`` counts what happened. Same seed + same start_time + same calls = identical
objects. Helm release secrets: :mod:`kubesim.helm` (``decode_release_secret(secret)``).
"""

from kubesim.errors import ApiError
from kubesim.faults import Faults
from kubesim.fleet import FLEETS, Fleet, FleetSize
from kubesim.server import KubeSim
from kubesim.store import Store

__all__ = ["FLEETS", "ApiError", "Faults", "Fleet", "FleetSize", "KubeSim", "Store"]
