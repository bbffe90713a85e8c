"""PersistentVolumeClaims and PersistentVolumes: synced from kubesim like every other kind, and
charged as storage cost the way OpenCost does (requested GiB x hours x the price of the
volume's storage class where one is set, else the cluster's storage price).

The figures are worked by hand below; kubesim's fleet for seed 1 gives ``identity-prod`` one
claim, ``cron-data``: 50Gi of ``gp3``, bound to a volume provisioned for it, mounted by the
``cron`` deployment's pods.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from decimal import Decimal

import asyncpg
import pytest

from cost.allocation import compute_hour
from cost.pricing import BASELINE_FROM, set_cluster_pricing
from kubesim import KubeSim
from sync.mappers import BadObject
from sync.storage_mappers import map_persistent_volume, map_persistent_volume_claim
from tests.api import Api, make_tenant
from tests.clock import MID_MONTH
from tests.cost.helpers import BOOK
from tests.sync.conftest import eventually, new_cluster, running_sync
from tests.sync.factories import make_vault

GIB = 1024**3
HOUR = timedelta(hours=1)
NAMESPACE = "identity-prod"
COSTS = """query($from: DateTime!, $to: DateTime!) {
  costs(window: {from: $from, to: $to}, groupBy: [NAMESPACE]) {
    namespace storageCost provisional } }"""


async def _claims(pool: asyncpg.Pool, cluster: object) -> dict[str, asyncpg.Record]:
    rows = await pool.fetch(
        """SELECT name, storage_class, volume_name, phase, access_modes, requests_storage_bytes,
                  capacity_bytes, deleted_at
             FROM k8s_persistent_volume_claims WHERE cluster_id = $1 AND namespace = $2""",
        cluster, NAMESPACE,
    )
    return {r["name"]: r for r in rows}


async def test_claims_and_volumes_sync_and_are_charged_as_their_namespaces_storage(
    api: Api, db_pool: asyncpg.Pool
) -> None:
    hour = MID_MONTH - 2 * HOUR  # 10:00; the fleet (and its claims) start here
    vault = make_vault()
    # A tenant of its own: the session's tenants are expected to hold no clusters.
    tenant = await make_tenant(db_pool, f"storage-{uuid.uuid4().hex[:8]}")
    async with KubeSim.start(fleet="small", seed=1, start_time=hour) as sim:
        assert sim.fleet is not None
        pod = next(p for p in sim.store.list("pods", namespace=NAMESPACE)
                   if p["metadata"]["labels"]["app"] == "cron")
        assert pod["spec"]["volumes"] == [
            {"name": "data", "persistentVolumeClaim": {"claimName": "cron-data"}}]
        # Half an hour later the team adds a 5Gi claim of a class with no price of its own,
        # and asks for one that is never bound (Pending claims are not charged).
        sim.clock.advance(1800)
        sim.fleet.create_claim(NAMESPACE, "scratch", size="5Gi", storage_class="standard")
        sim.store.create("persistentvolumeclaims", {
            "metadata": {"name": "waiting", "namespace": NAMESPACE},
            "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "gp3",
                     "resources": {"requests": {"storage": "8Gi"}}},
            "status": {"phase": "Pending"}})

        cluster = await new_cluster(db_pool, vault, sim, org_id=tenant.org_id)
        async with db_pool.acquire() as conn:
            await set_cluster_pricing(
                conn, organization_id=tenant.org_id, cluster_id=cluster,
                effective_from=BASELINE_FROM, book=BOOK, storage_gib_hour=Decimal("0.0002"),
                storage_classes={"gp3": Decimal("0.00011")},
            )
        async with running_sync(db_pool, vault, cluster) as sync:
            claims = await _claims(db_pool, cluster)
            assert sorted(claims) == ["cron-data", "scratch", "waiting"]
            cron = claims["cron-data"]
            assert (cron["storage_class"], cron["phase"], list(cron["access_modes"]),
                    cron["requests_storage_bytes"], cron["capacity_bytes"]) == (
                "gp3", "Bound", ["ReadWriteOnce"], 50 * GIB, 50 * GIB)
            assert claims["waiting"]["phase"] == "Pending"
            assert claims["waiting"]["volume_name"] is None
            volume = await db_pool.fetchrow(
                """SELECT storage_class, capacity_bytes, phase, reclaim_policy, claim_namespace,
                          claim_name, csi_driver
                     FROM k8s_persistent_volumes WHERE cluster_id = $1 AND name = $2""",
                cluster, cron["volume_name"])
            assert dict(volume) == {
                "storage_class": "gp3", "capacity_bytes": 50 * GIB, "phase": "Bound",
                "reclaim_policy": "Delete", "claim_namespace": NAMESPACE,
                "claim_name": "cron-data", "csi_driver": "ebs.csi.aws.com"}
            progress = await db_pool.fetchval(
                "SELECT sync_progress FROM k8s_clusters WHERE id = $1", cluster)
            assert progress["persistentvolumeclaims"]["state"] == "watching"
            assert progress["persistentvolumes"]["state"] == "watching"

            async with db_pool.acquire() as conn:
                await compute_hour(conn, cluster_id=cluster, hour=hour, book=BOOK,
                                   now=MID_MONTH)
            body = await api.gql(COSTS, {"from": hour.isoformat(),
                                         "to": (hour + HOUR).isoformat()},
                                 token=tenant.tokens["viewer"])
            rows = {r["namespace"]: r for r in body["data"]["costs"]}
            # cron-data: 50 GiB x 1 h x 0.00011 (gp3's own price)   = 0.005500
            # scratch:    5 GiB x 0.5 h (from 10:30) x 0.0002 (the cluster's storage price,
            #             "standard" has none)                      = 0.000500
            # waiting:   Pending, not charged                       = 0
            assert rows[NAMESPACE]["storageCost"] == "0.006000"
            assert rows[NAMESPACE]["provisional"] is False
            # checkout-prod's cache-data: 10 GiB x 1 h x 0.0002 (gp2 has no price of its
            # own)                                                  = 0.002000
            assert rows["checkout-prod"]["storageCost"] == "0.002000"
            # A namespace without claims pays no persistent storage (its pods report none).
            assert rows["kube-system"]["storageCost"] == "0.000000"

            # The namespace goes: kubesim tears down its claims, the volume controller deletes
            # the volumes they were bound to (reclaim policy Delete), and the sync marks both
            # deleted.
            sim.store.delete("namespaces", NAMESPACE)
            sim.fleet.reconcile()
            await eventually(lambda: _claims(db_pool, cluster),
                             lambda c: all(r["deleted_at"] is not None for r in c.values()))
            volumes = await eventually(lambda: db_pool.fetch(
                """SELECT claim_name, deleted_at IS NOT NULL AS gone FROM k8s_persistent_volumes
                    WHERE cluster_id = $1 AND claim_namespace = $2""", cluster, NAMESPACE),
                lambda rows: all(r["gone"] for r in rows))
            assert sorted(r["claim_name"] for r in volumes) == ["cron-data", "scratch"]
            assert sync.status == "active"


def test_an_odd_claim_keeps_what_it_can_and_one_without_identity_is_refused() -> None:
    row = map_persistent_volume_claim({
        "metadata": {"uid": "u1", "name": "odd", "namespace": "ns",
                     "creationTimestamp": "2027-03-15T10:00:00Z", "labels": {"team": 7}},
        "spec": {"accessModes": ["ReadWriteOnce", 3, ""],
                 "resources": {"requests": {"storage": "lots"}}, "storageClassName": ""},
        "status": "not an object",
    })
    assert (row["requests_storage_bytes"], row["capacity_bytes"], row["storage_class"],
            row["phase"], row["access_modes"], row["labels"]) == (
        None, None, None, None, ["ReadWriteOnce"], {"team": "7"})
    volume = map_persistent_volume({"metadata": {"uid": "u2", "name": "pv"},
                                    "spec": {"capacity": {"storage": "1500M"}}})
    assert (volume["capacity_bytes"], volume["claim_uid"], volume["csi_driver"]) == (
        1_500_000_000, None, None)
    with pytest.raises(BadObject):
        map_persistent_volume({"metadata": {"name": "no-uid"}})
