"""A list is written page by page while it is still being listed, and ends with a snapshot.

The informer hands each page's objects to the cluster's buffer as it decodes them, so the
flusher writes one page while the next is fetched and mapped; the list ends with a snapshot of
every uid it saw (all :data:`~sync.writer.UNCHANGED`), which only marks deleted what no page
held. These tests pin the informer's hand-over (what reaches the sink, and when, and that the buffer
then holds what one whole snapshot would) and a first sync against kubesim over HTTP, whose
pods are in PostgreSQL before their list has ended. What a relist marks deleted through this
path is pinned by ``test_unchanged_relist`` (a pod gone while unwatched).
"""

from __future__ import annotations

from typing import Any

import asyncpg

from app.kube_client import open_api_client
from app.kubeconfig import sanitize_kubeconfig
from app.vault import Vault
from kubesim import KubeSim
from sync.cluster_sync import kind_specs
from sync.informer import Backoff, Informer, InformerState
from sync.writer import UNCHANGED, Batch, OomLedger
from tests.sync.conftest import FAST, eventually, new_cluster, running_sync
from tests.sync.factories import kubeconfig_for

PAGE = 20


class RecordingSink:
    """The informer's sink, noting every hand-over in order (kind, what, uids)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, dict[str, Any]]] = []
        self.batch = Batch()

    def put(self, kind: str, uid: str, value: Any) -> None:
        self.calls.append((kind, "put", {uid: value}))
        self.batch.put(kind, uid, value)

    def put_many(self, kind: str, values: dict[str, Any]) -> None:
        self.calls.append((kind, "page", dict(values)))
        self.batch.put_many(kind, values)

    def replace(self, kind: str, values: dict[str, Any]) -> None:
        self.calls.append((kind, "snapshot", dict(values)))
        self.batch.replace(kind, values)


async def _list_pods_twice(sim: KubeSim, sink: RecordingSink) -> list[list[tuple[
        str, str, dict[str, Any]]]]:
    """What the sink got from a list of pods, and from a second list of the same pods."""
    spec = next(s for s in kind_specs(OomLedger()) if s.kind == "pods")
    kubeconfig = sanitize_kubeconfig(kubeconfig_for(sim.url, token=sim.token))
    rounds = []
    async with open_api_client(kubeconfig, connect_timeout=2.0, read_timeout=5.0,
                               network=FAST.network) as api:
        informer = Informer(api=api, spec=spec, sink=sink, page_size=PAGE, watch_timeout_s=30,
                            connect_timeout=2.0, backoff=Backoff(initial=0.1, maximum=0.5))
        for _ in range(2):
            await informer.list()
            rounds.append(list(sink.calls))
            sink.calls.clear()
    assert informer.unchanged == len(sim.store.list("pods"))  # the second time
    return rounds


async def test_each_page_is_handed_over_as_it_is_decoded_and_the_list_ends_with_a_snapshot(
    sim: KubeSim,
) -> None:
    pods = sim.store.list("pods")
    assert len(pods) > 2 * PAGE  # at least three pages
    sink = RecordingSink()
    first, second = await _list_pods_twice(sim, sink)
    pages = [values for kind, what, values in first if what == "page"]
    assert [kind for kind, _, _ in first] == ["pods"] * len(first)
    assert [what for _, what, _ in first] == ["page"] * len(pages) + ["snapshot"]
    assert [len(p) for p in pages] == [min(PAGE, len(pods) - i) for i in
                                       range(0, len(pods), PAGE)]
    snapshot = first[-1][2]
    uids = {p["metadata"]["uid"] for p in pods}
    assert set(snapshot) == uids and all(v is UNCHANGED for v in snapshot.values())
    # The buffer holds what one whole snapshot of mapped pods would have held.
    assert sink.batch.snapshots == {"pods"}
    assert set(sink.batch.items["pods"]) == uids
    assert all(v is not UNCHANGED for v in sink.batch.items["pods"].values())
    # Listed again at the same versions: nothing is handed over but the snapshot, and the
    # pending rows of the first list survive it.
    assert [what for _, what, _ in second] == ["snapshot"]
    assert all(v is not UNCHANGED for v in sink.batch.items["pods"].values())


async def test_a_first_sync_writes_its_pods_while_it_still_lists_them(
    db_pool: asyncpg.Pool, vault: Vault, sim: KubeSim,
) -> None:
    sim.faults.metrics_available = False
    sim.faults.latency = 0.1  # each page takes a tenth of a second to come
    pods = len(sim.store.list("pods"))
    cluster_id = await new_cluster(db_pool, vault, sim)
    seen: list[tuple[InformerState | None, int]] = []
    async with running_sync(db_pool, vault, cluster_id, wait=False) as sync:

        async def sample() -> bool:
            informer = next((i for i in sync.informers if i.spec.kind == "pods"), None)
            seen.append((informer.state if informer is not None else None,
                         await db_pool.fetchval(
                             "SELECT count(*) FROM k8s_pods WHERE cluster_id = $1",
                             cluster_id)))
            return sync.synced.is_set()

        await eventually(sample, within=30, interval=0.01)
    # Pods were in PostgreSQL while their list was still going on, and all of them after.
    assert any(state == InformerState.LISTING and 0 < rows < pods for state, rows in seen), seen
    assert await db_pool.fetchval(
        "SELECT count(*) FROM k8s_pods WHERE cluster_id = $1 AND deleted_at IS NULL",
        cluster_id) == pods
