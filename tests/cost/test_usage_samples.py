"""A pod without usage (still starting, or crash-looping) is sampled with no memory, not with
2^63-1 bytes.

The cost engine allocates ``max(request, usage)`` per sample, so one such sample made a pod
that had not started yet the most expensive thing in the fleet: the metrics writer saturated
sums with ``LEAST(memory, 2^63-1)``, and ``LEAST`` ignores NULL. Found when the demo's
history (app/demo_history.py) costed its first days at millions per hour.
"""

from __future__ import annotations

import asyncpg

from kubesim import KubeSim
from tests.sync.conftest import eventually, new_cluster, running_sync
from tests.sync.factories import make_vault


def _pod(name: str, phase: str) -> dict[str, object]:
    return {
        "metadata": {"name": name, "namespace": "app"},
        "spec": {"nodeName": "n1", "containers": [{
            "name": "c", "image": "example/app:1",
            "resources": {"requests": {"cpu": "100m", "memory": "64Mi"},
                          "limits": {"memory": "128Mi"}}}]},
        "status": {"phase": phase},
    }


async def test_a_pod_without_usage_is_sampled_without_memory(db_pool: asyncpg.Pool) -> None:
    vault = make_vault()
    async with KubeSim.start(fleet=None) as sim:
        sim.store.create("namespaces", {"metadata": {"name": "app"}})
        sim.store.create("pods", _pod("running", "Running"))
        sim.store.create("pods", _pod("starting", "Pending"))
        cluster = await new_cluster(db_pool, vault, sim)
        async with running_sync(db_pool, vault, cluster):

            async def samples() -> dict[tuple[str, str], asyncpg.Record]:
                rows = await db_pool.fetch(
                    """SELECT level, name, cpu_cores, memory_bytes FROM k8s_resource_metrics
                        WHERE cluster_id = $1 AND level IN ('pod', 'namespace')""", cluster)
                return {(r["level"], r["name"]): r for r in rows}

            found = await eventually(samples, lambda s: len(s) == 3)
    starting, running = found[("pod", "starting")], found[("pod", "running")]
    assert (starting["cpu_cores"], starting["memory_bytes"]) == (None, None)
    # kubesim's metrics-server reports the running pod below its 128Mi limit.
    assert 0 < running["memory_bytes"] < 128 * 2**20
    # The namespace's usage is the running pod's alone.
    assert found[("namespace", "")]["memory_bytes"] == running["memory_bytes"]
