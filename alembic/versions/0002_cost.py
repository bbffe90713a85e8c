"""Cost engine: price history, instance-type prices, shared namespaces, budgets, fine hourly rows.

Why each piece exists:

* ``k8s_cluster_prices`` — price history. ``k8s_clusters.price_*`` holds the *current* sheet
  (what ``Cluster.pricing`` shows); every change also appends a row here with
  ``effective_from``. An hour is priced with the row in effect at the hour's start, so a
  recompute of a past hour uses the price of that time, never today's.
* ``k8s_instance_type_prices`` — optional per-node hourly price by instance type, with the same
  history semantics.
* ``k8s_shared_namespaces`` — namespaces marked shared (``kube-system``, monitoring) whose cost
  a query may spread over the others; per organization, optionally narrowed to one cluster.
* ``k8s_cost_allocations`` — the finest stored grain: one row per (cluster, hour|day, namespace,
  deployment, team, cost center), plus one idle row per cluster-hour. DEPLOYMENT grouping and
  pod-label team overrides are answered from here; ``k8s_cost_attribution`` rows are sums of it.
* ``k8s_cost_hours`` — the ledger of computed cluster-hours: when, with which prices, node
  cost, idle and the number of pod samples seen. Backfill finds the hours missing from it and
  late-sample detection compares sample counts against it.
* ``k8s_resource_metrics.ingested_at`` — the table had no arrival time, so a sample written
  after its hour was costed could not be told from one that was there all along.
* ``k8s_budgets`` / ``k8s_budget_alerts`` — monthly budgets per team, cost center or namespace,
  and the record of each forecast crossing so an alert fires once per budget, month and amount.

``k8s_cost_attribution``'s unique key grows ``team`` and ``cost_center`` (NULLS NOT DISTINCT):
a pod label ``team`` overrides its namespace's label, so one namespace can split across teams
within one hour, and folding those into one row would lose exactly what the override asked for.
The per-namespace view still sums correctly because it sums all rows of a namespace. The
downgrade merges such split rows back before restoring the original key.

Revision ID: 0002_cost
Revises: 0001_foundation
Create Date: 2026-11-27
"""

from sqlalchemy.util import await_only

from alembic import op

revision = "0002_cost"
down_revision = "0001_foundation"
branch_labels = None
depends_on = None

PRICES = """
CREATE TABLE k8s_cluster_prices (
    id                      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    cluster_id              uuid NOT NULL REFERENCES k8s_clusters(id) ON DELETE CASCADE,
    effective_from          timestamptz NOT NULL,
    price_cpu_core_hour     numeric(14, 6) NOT NULL CHECK (price_cpu_core_hour >= 0),
    price_memory_gib_hour   numeric(14, 6) NOT NULL CHECK (price_memory_gib_hour >= 0),
    price_storage_gib_hour  numeric(14, 8) NOT NULL CHECK (price_storage_gib_hour >= 0),
    price_network_gib       numeric(14, 6) NOT NULL CHECK (price_network_gib >= 0),
    currency                text NOT NULL DEFAULT 'USD',
    source                  text NOT NULL DEFAULT 'custom',
    created_at              timestamptz NOT NULL DEFAULT now(),
    UNIQUE (cluster_id, effective_from)
);

CREATE TABLE k8s_instance_type_prices (
    cluster_id      uuid NOT NULL REFERENCES k8s_clusters(id) ON DELETE CASCADE,
    instance_type   text NOT NULL,
    effective_from  timestamptz NOT NULL,
    hourly_cost     numeric(14, 6) CHECK (hourly_cost >= 0),
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (cluster_id, instance_type, effective_from)
);

CREATE TABLE k8s_shared_namespaces (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    organization_id  uuid NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    cluster_id       uuid REFERENCES k8s_clusters(id) ON DELETE CASCADE,
    namespace        text NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE NULLS NOT DISTINCT (organization_id, cluster_id, namespace)
);
"""

ALLOCATIONS = """
CREATE TABLE k8s_cost_allocations (
    cluster_id         uuid NOT NULL REFERENCES k8s_clusters(id) ON DELETE CASCADE,
    granularity        text NOT NULL CHECK (granularity IN ('hour', 'day')),
    period_start       timestamptz NOT NULL,
    namespace          text NOT NULL,
    deployment         text NOT NULL DEFAULT '',
    team               text,
    cost_center        text,
    is_idle            boolean NOT NULL DEFAULT false,
    pod_count          integer NOT NULL DEFAULT 0,
    cpu_cost           numeric(16, 6) NOT NULL DEFAULT 0,
    memory_cost        numeric(16, 6) NOT NULL DEFAULT 0,
    storage_cost       numeric(16, 6) NOT NULL DEFAULT 0,
    network_cost       numeric(16, 6) NOT NULL DEFAULT 0,
    total_cost         numeric(16, 6) NOT NULL DEFAULT 0,
    cpu_core_hours     numeric(18, 6) NOT NULL DEFAULT 0,
    memory_gib_hours   numeric(18, 6) NOT NULL DEFAULT 0,
    storage_gib_hours  numeric(18, 6) NOT NULL DEFAULT 0,
    network_gib        numeric(18, 6) NOT NULL DEFAULT 0,
    computed_at        timestamptz NOT NULL DEFAULT now(),
    UNIQUE NULLS NOT DISTINCT
        (cluster_id, granularity, period_start, namespace, deployment, team, cost_center)
);
CREATE INDEX k8s_cost_allocations_period_idx
    ON k8s_cost_allocations (granularity, period_start, cluster_id);

CREATE TABLE k8s_cost_hours (
    cluster_id              uuid NOT NULL REFERENCES k8s_clusters(id) ON DELETE CASCADE,
    period_start            timestamptz NOT NULL,
    computed_at             timestamptz NOT NULL DEFAULT now(),
    price_cpu_core_hour     numeric(14, 6) NOT NULL,
    price_memory_gib_hour   numeric(14, 6) NOT NULL,
    price_storage_gib_hour  numeric(14, 8) NOT NULL,
    price_network_gib       numeric(14, 6) NOT NULL,
    price_source            text NOT NULL,
    node_cost               numeric(16, 6) NOT NULL DEFAULT 0,
    allocated_cost          numeric(16, 6) NOT NULL DEFAULT 0,
    idle_cost               numeric(16, 6) NOT NULL DEFAULT 0,
    total_cost              numeric(16, 6) NOT NULL DEFAULT 0,
    pod_count               integer NOT NULL DEFAULT 0,
    sample_count            bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (cluster_id, period_start)
);
CREATE INDEX k8s_cost_hours_period_idx ON k8s_cost_hours (period_start);

ALTER TABLE k8s_resource_metrics ADD COLUMN ingested_at timestamptz NOT NULL DEFAULT now();
CREATE INDEX k8s_resource_metrics_ingested_brin
    ON k8s_resource_metrics USING brin (ingested_at);

-- 0001 left the key's name to PostgreSQL (which truncates it), so find it rather than spell it.
DO $$
DECLARE key_name text;
BEGIN
    SELECT conname INTO key_name FROM pg_constraint
     WHERE conrelid = 'k8s_cost_attribution'::regclass AND contype = 'u';
    EXECUTE format('ALTER TABLE k8s_cost_attribution DROP CONSTRAINT %I', key_name);
END
$$;
ALTER TABLE k8s_cost_attribution ADD CONSTRAINT k8s_cost_attribution_split_key
    UNIQUE NULLS NOT DISTINCT
        (cluster_id, namespace, team, cost_center, granularity, period_start);
"""

BUDGETS = """
CREATE TABLE k8s_budgets (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id  uuid NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    scope_kind       text NOT NULL CHECK (scope_kind IN ('team', 'cost_center', 'namespace')),
    scope_value      text NOT NULL CHECK (scope_value <> ''),
    cluster_id       uuid REFERENCES k8s_clusters(id) ON DELETE CASCADE,
    amount_monthly   numeric(14, 2) NOT NULL CHECK (amount_monthly >= 0),
    currency         text NOT NULL DEFAULT 'USD' CHECK (currency ~ '^[A-Z]{3}$'),
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE NULLS NOT DISTINCT (organization_id, scope_kind, scope_value, cluster_id)
);

CREATE TABLE k8s_budget_alerts (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    budget_id        uuid NOT NULL REFERENCES k8s_budgets(id) ON DELETE CASCADE,
    organization_id  uuid NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    month_start      timestamptz NOT NULL,
    amount_monthly   numeric(14, 2) NOT NULL,
    spent            numeric(16, 6) NOT NULL,
    forecast         numeric(16, 6) NOT NULL,
    fired_at         timestamptz NOT NULL DEFAULT now(),
    UNIQUE (budget_id, month_start, amount_monthly)
);
CREATE INDEX k8s_budget_alerts_org_idx ON k8s_budget_alerts (organization_id, fired_at);
"""

RESTORE_ATTRIBUTION_KEY = """
WITH merged AS (
    DELETE FROM k8s_cost_attribution RETURNING *
)
INSERT INTO k8s_cost_attribution
    (cluster_id, namespace, is_idle, team, cost_center, granularity, period_start,
     cpu_cost, memory_cost, storage_cost, network_cost, total_cost,
     cpu_core_hours, memory_gib_hours, storage_gib_hours, network_gib, computed_at)
SELECT cluster_id, namespace, bool_or(is_idle), min(team), min(cost_center), granularity,
       period_start, sum(cpu_cost), sum(memory_cost), sum(storage_cost), sum(network_cost),
       sum(total_cost), sum(cpu_core_hours), sum(memory_gib_hours), sum(storage_gib_hours),
       sum(network_gib), max(computed_at)
  FROM merged
 GROUP BY cluster_id, namespace, granularity, period_start;
ALTER TABLE k8s_cost_attribution DROP CONSTRAINT k8s_cost_attribution_split_key;
-- Unnamed, as in 0001, so PostgreSQL gives it back its original name.
ALTER TABLE k8s_cost_attribution ADD UNIQUE (cluster_id, namespace, granularity, period_start);
"""


def _execute_script(sql: str) -> None:
    """Run a multi-statement script on the migration's own connection and transaction.

    SQLAlchemy's asyncpg dialect prepares every statement and a prepared statement holds one
    command; asyncpg's ``execute`` without arguments uses the simple protocol instead.
    """
    await_only(op.get_bind().connection.driver_connection.execute(sql))


def upgrade() -> None:
    for script in (PRICES, ALLOCATIONS, BUDGETS):
        _execute_script(script)


def downgrade() -> None:
    for table in (
        "k8s_budget_alerts",
        "k8s_budgets",
        "k8s_cost_hours",
        "k8s_cost_allocations",
        "k8s_shared_namespaces",
        "k8s_instance_type_prices",
        "k8s_cluster_prices",
    ):
        op.execute(f"DROP TABLE IF EXISTS {table}")
    op.execute("DROP INDEX IF EXISTS k8s_resource_metrics_ingested_brin")
    op.execute("ALTER TABLE k8s_resource_metrics DROP COLUMN IF EXISTS ingested_at")
    _execute_script(RESTORE_ATTRIBUTION_KEY)
