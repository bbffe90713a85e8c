"""Cost, OpenCost-exact (issue 14): the provisional running hour, and storage from claims.

Why each piece exists:

* ``provisional`` on ``k8s_cost_allocations`` and ``k8s_cost_hours`` — the running hour (and a
  closed hour whose last samples may still arrive) is costed from the samples so far, so a
  dashboard shows cost at once; the flag says the figure will still change. The scheduler
  treats a provisional ledger row as missing once its hour has settled, so the final figure
  replaces it. Day rollups carry the flag when any of their hours is provisional.
* ``k8s_persistent_volume_claims`` / ``k8s_persistent_volumes`` — storage is priced on the
  requested capacity of each bound claim, per GiB-hour (OpenCost's PV allocation), so the
  claims and the volumes they bind must be stored. Shaped like the other inventory tables
  (one row per object and ``uid``, ``deleted_at`` kept so past hours can be recomputed) for
  the sync's informers to fill.
* ``k8s_storage_class_prices`` — "PV price where known": a per-GiB-hour price by storage class,
  with the same history semantics as instance-type prices (the row in effect at the hour's
  start), used before the cluster's storage price.

``k8s_cost_hours.sample_count`` keeps its name but now counts every sample the hour's figures
read: the pod samples inside the hour, plus each network-counter delta that reaches into the
hour from a sample outside it (a delta is spread over the hours it spans).

Revision ID: 0003_cost_exact
Revises: 0002_cost
Create Date: 2026-12-01
"""

from sqlalchemy.util import await_only

from alembic import op

revision = "0003_cost_exact"
down_revision = "0002_cost"
branch_labels = None
depends_on = None

UPGRADE = """
ALTER TABLE k8s_cost_allocations ADD COLUMN provisional boolean NOT NULL DEFAULT false;
ALTER TABLE k8s_cost_hours ADD COLUMN provisional boolean NOT NULL DEFAULT false;
COMMENT ON COLUMN k8s_cost_hours.sample_count IS
    'pod samples inside the hour plus network-counter deltas reaching into it from outside';

CREATE TABLE k8s_persistent_volume_claims (
    id                      uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    cluster_id              uuid NOT NULL REFERENCES k8s_clusters(id) ON DELETE CASCADE,
    uid                     text NOT NULL,
    namespace               text NOT NULL,
    name                    text NOT NULL,
    storage_class           text,
    volume_name             text,
    phase                   text,
    access_modes            text[] NOT NULL DEFAULT '{}',
    requests_storage_bytes  bigint,
    capacity_bytes          bigint,
    labels                  jsonb NOT NULL DEFAULT '{}'::jsonb,
    resource_version        text,
    created_at              timestamptz,
    deleted_at              timestamptz,
    synced_at               timestamptz NOT NULL DEFAULT now(),
    UNIQUE (cluster_id, uid)
);
CREATE INDEX k8s_persistent_volume_claims_cluster_ns_idx
    ON k8s_persistent_volume_claims (cluster_id, namespace, name);

CREATE TABLE k8s_persistent_volumes (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    cluster_id          uuid NOT NULL REFERENCES k8s_clusters(id) ON DELETE CASCADE,
    uid                 text NOT NULL,
    name                text NOT NULL,
    storage_class       text,
    capacity_bytes      bigint,
    phase               text,
    reclaim_policy      text,
    claim_namespace     text,
    claim_name          text,
    claim_uid           text,
    csi_driver          text,
    labels              jsonb NOT NULL DEFAULT '{}'::jsonb,
    resource_version    text,
    created_at          timestamptz,
    deleted_at          timestamptz,
    synced_at           timestamptz NOT NULL DEFAULT now(),
    UNIQUE (cluster_id, uid)
);
CREATE INDEX k8s_persistent_volumes_cluster_name_idx
    ON k8s_persistent_volumes (cluster_id, name);

CREATE TABLE k8s_storage_class_prices (
    cluster_id      uuid NOT NULL REFERENCES k8s_clusters(id) ON DELETE CASCADE,
    storage_class   text NOT NULL,
    effective_from  timestamptz NOT NULL,
    gib_hour        numeric(14, 8) CHECK (gib_hour >= 0),
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (cluster_id, storage_class, effective_from)
);
"""


def _execute_script(sql: str) -> None:
    """Run a multi-statement script on the migration's own connection (see 0002)."""
    await_only(op.get_bind().connection.driver_connection.execute(sql))


def upgrade() -> None:
    _execute_script(UPGRADE)


def downgrade() -> None:
    for table in (
        "k8s_storage_class_prices", "k8s_persistent_volumes", "k8s_persistent_volume_claims",
    ):
        op.execute(f"DROP TABLE IF EXISTS {table}")
    op.execute("COMMENT ON COLUMN k8s_cost_hours.sample_count IS NULL")
    op.execute("ALTER TABLE k8s_cost_hours DROP COLUMN IF EXISTS provisional")
    op.execute("ALTER TABLE k8s_cost_allocations DROP COLUMN IF EXISTS provisional")
