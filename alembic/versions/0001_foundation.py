"""Foundation: tenancy, cluster registry, inventory tables, partitions and views.

Everything below a cluster cascades from ``k8s_clusters`` so deleting a cluster removes all of
it; objects that disappear from a cluster keep their row with ``deleted_at`` set (history).
Pods and resource metrics are range-partitioned by month; the partitions are created by
``fleetgraph_ensure_partitions`` relative to ``now()`` (no calendar is written here), and a
DEFAULT partition catches any row outside them so nothing is ever refused.

Revision ID: 0001_foundation
Revises:
Create Date: 2026-11-26
"""

from sqlalchemy.util import await_only

from alembic import op

revision = "0001_foundation"
down_revision = None
branch_labels = None
depends_on = None

TENANCY = """
CREATE TABLE organizations (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    slug        text NOT NULL UNIQUE CHECK (slug ~ '^[a-z0-9][a-z0-9-]{0,62}$'),
    name        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE api_tokens (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id  uuid NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    name             text NOT NULL DEFAULT '',
    token_hash       bytea NOT NULL UNIQUE,
    token_prefix     text NOT NULL,
    role             text NOT NULL CHECK (role IN ('viewer', 'operator', 'admin')),
    created_at       timestamptz NOT NULL DEFAULT now(),
    last_used_at     timestamptz,
    revoked_at       timestamptz
);
CREATE INDEX api_tokens_organization_idx ON api_tokens (organization_id);
"""

CLUSTERS = """
CREATE TABLE k8s_clusters (
    id                       uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id          uuid NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    name                     text NOT NULL,
    provider                 text NOT NULL
                             CHECK (provider IN ('eks', 'gke', 'aks', 'k3s', 'vanilla')),
    region                   text,
    api_server_url           text NOT NULL,
    kubeconfig_encrypted     bytea NOT NULL,
    kubeconfig_key_id        text NOT NULL,
    context_name             text,
    kubernetes_version       text,
    status                   text NOT NULL DEFAULT 'pending'
                             CHECK (status IN ('pending', 'active', 'unreachable', 'disabled')),
    health_status            text NOT NULL DEFAULT 'unknown'
                             CHECK (health_status IN ('healthy', 'degraded', 'critical',
                                                      'unreachable', 'unknown')),
    health_reason            text,
    health_changed_at        timestamptz,
    metrics_available        boolean,
    last_synced_at           timestamptz,
    last_sync_error          text,
    sync_progress            jsonb NOT NULL DEFAULT '{}'::jsonb,
    sync_requested_at        timestamptz,
    labels                   jsonb NOT NULL DEFAULT '{}'::jsonb,
    price_cpu_core_hour      numeric(14, 8),
    price_memory_gib_hour    numeric(14, 8),
    price_storage_gib_hour   numeric(14, 8),
    price_network_gib        numeric(14, 8),
    cost_last_hour           numeric(14, 6),
    cost_month_to_date       numeric(16, 6),
    cost_updated_at          timestamptz,
    created_at               timestamptz NOT NULL DEFAULT now(),
    updated_at               timestamptz NOT NULL DEFAULT now(),
    UNIQUE (organization_id, name),
    UNIQUE (organization_id, id)
);
CREATE INDEX k8s_clusters_org_status_idx ON k8s_clusters (organization_id, status);
CREATE INDEX k8s_clusters_labels_idx ON k8s_clusters USING gin (labels jsonb_path_ops);
"""

INVENTORY = """
CREATE TABLE k8s_namespaces (
    id                       uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    cluster_id               uuid NOT NULL REFERENCES k8s_clusters(id) ON DELETE CASCADE,
    uid                      text NOT NULL,
    name                     text NOT NULL,
    phase                    text,
    labels                   jsonb NOT NULL DEFAULT '{}'::jsonb,
    annotations              jsonb NOT NULL DEFAULT '{}'::jsonb,
    team                     text,
    cost_center              text,
    quota_hard_cpu_cores     numeric,
    quota_hard_memory_bytes  bigint,
    quota_hard_pods          integer,
    quota_used_cpu_cores     numeric,
    quota_used_memory_bytes  bigint,
    quota_used_pods          integer,
    usage_cpu_cores          numeric,
    usage_memory_bytes       bigint,
    resource_version         text,
    created_at               timestamptz,
    deleted_at               timestamptz,
    synced_at                timestamptz NOT NULL DEFAULT now(),
    UNIQUE (cluster_id, uid)
);
CREATE INDEX k8s_namespaces_cluster_name_idx ON k8s_namespaces (cluster_id, name)
    WHERE deleted_at IS NULL;
CREATE INDEX k8s_namespaces_team_idx ON k8s_namespaces (team) WHERE team IS NOT NULL;
CREATE INDEX k8s_namespaces_cost_center_idx ON k8s_namespaces (cost_center)
    WHERE cost_center IS NOT NULL;

CREATE TABLE k8s_nodes (
    id                                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    cluster_id                          uuid NOT NULL REFERENCES k8s_clusters(id) ON DELETE CASCADE,
    uid                                 text NOT NULL,
    name                                text NOT NULL,
    labels                              jsonb NOT NULL DEFAULT '{}'::jsonb,
    taints                              jsonb NOT NULL DEFAULT '[]'::jsonb,
    conditions                          jsonb NOT NULL DEFAULT '[]'::jsonb,
    ready                               boolean NOT NULL DEFAULT false,
    unschedulable                       boolean NOT NULL DEFAULT false,
    instance_type                       text,
    zone                                text,
    kubelet_version                     text,
    capacity_cpu_cores                  numeric,
    capacity_memory_bytes               bigint,
    capacity_pods                       integer,
    capacity_ephemeral_storage_bytes    bigint,
    allocatable_cpu_cores               numeric,
    allocatable_memory_bytes            bigint,
    allocatable_pods                    integer,
    allocatable_ephemeral_storage_bytes bigint,
    usage_cpu_cores                     numeric,
    usage_memory_bytes                  bigint,
    hourly_cost                         numeric(14, 6),
    resource_version                    text,
    created_at                          timestamptz,
    deleted_at                          timestamptz,
    synced_at                           timestamptz NOT NULL DEFAULT now(),
    UNIQUE (cluster_id, uid)
);
CREATE INDEX k8s_nodes_cluster_name_idx ON k8s_nodes (cluster_id, name) WHERE deleted_at IS NULL;

CREATE TABLE k8s_deployments (
    id                    uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    cluster_id            uuid NOT NULL REFERENCES k8s_clusters(id) ON DELETE CASCADE,
    uid                   text NOT NULL,
    namespace             text NOT NULL,
    name                  text NOT NULL,
    labels                jsonb NOT NULL DEFAULT '{}'::jsonb,
    annotations           jsonb NOT NULL DEFAULT '{}'::jsonb,
    selector              jsonb NOT NULL DEFAULT '{}'::jsonb,
    replicas_desired      integer NOT NULL DEFAULT 0,
    replicas_ready        integer NOT NULL DEFAULT 0,
    replicas_available    integer NOT NULL DEFAULT 0,
    replicas_updated      integer NOT NULL DEFAULT 0,
    replicas_unavailable  integer NOT NULL DEFAULT 0,
    strategy              text,
    strategy_params       jsonb NOT NULL DEFAULT '{}'::jsonb,
    containers            jsonb NOT NULL DEFAULT '[]'::jsonb,
    conditions            jsonb NOT NULL DEFAULT '[]'::jsonb,
    generation            bigint,
    observed_generation   bigint,
    health_status         text NOT NULL DEFAULT 'unknown'
                          CHECK (health_status IN ('healthy', 'degraded', 'critical', 'unknown')),
    health_reason         text,
    resource_version      text,
    created_at            timestamptz,
    deleted_at            timestamptz,
    synced_at             timestamptz NOT NULL DEFAULT now(),
    UNIQUE (cluster_id, uid)
);
CREATE INDEX k8s_deployments_cluster_ns_idx ON k8s_deployments (cluster_id, namespace, name)
    WHERE deleted_at IS NULL;
CREATE INDEX k8s_deployments_health_idx ON k8s_deployments (cluster_id, health_status)
    WHERE deleted_at IS NULL;

-- ReplicaSets exist here only to tie pods to their Deployment (pod -> RS -> Deployment).
CREATE TABLE k8s_replicasets (
    id                 uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    cluster_id         uuid NOT NULL REFERENCES k8s_clusters(id) ON DELETE CASCADE,
    uid                text NOT NULL,
    namespace          text NOT NULL,
    name               text NOT NULL,
    deployment_name    text,
    deployment_uid     text,
    replicas_desired   integer NOT NULL DEFAULT 0,
    replicas_ready     integer NOT NULL DEFAULT 0,
    resource_version   text,
    created_at         timestamptz,
    deleted_at         timestamptz,
    synced_at          timestamptz NOT NULL DEFAULT now(),
    UNIQUE (cluster_id, uid)
);
CREATE INDEX k8s_replicasets_cluster_ns_idx ON k8s_replicasets (cluster_id, namespace, name);

CREATE TABLE k8s_pods (
    id                     uuid NOT NULL DEFAULT gen_random_uuid(),
    cluster_id             uuid NOT NULL REFERENCES k8s_clusters(id) ON DELETE CASCADE,
    uid                    text NOT NULL,
    namespace              text NOT NULL,
    name                   text NOT NULL,
    node_name              text,
    owner_kind             text,
    owner_name             text,
    deployment_name        text,
    labels                 jsonb NOT NULL DEFAULT '{}'::jsonb,
    phase                  text,
    reason                 text,
    qos_class              text,
    pod_ip                 text,
    requests_cpu_cores     numeric,
    requests_memory_bytes  bigint,
    limits_cpu_cores       numeric,
    limits_memory_bytes    bigint,
    containers             jsonb NOT NULL DEFAULT '[]'::jsonb,
    restart_count          integer NOT NULL DEFAULT 0,
    oom_kill_count         integer NOT NULL DEFAULT 0,
    last_oom_killed_at     timestamptz,
    ready                  boolean NOT NULL DEFAULT false,
    usage_cpu_cores        numeric,
    usage_memory_bytes     bigint,
    start_time             timestamptz,
    deletion_timestamp     timestamptz,
    resource_version       text,
    created_at             timestamptz NOT NULL,
    deleted_at             timestamptz,
    synced_at              timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (id, created_at),
    UNIQUE (cluster_id, uid, created_at)
) PARTITION BY RANGE (created_at);
CREATE INDEX k8s_pods_cluster_ns_idx ON k8s_pods (cluster_id, namespace, name);
CREATE INDEX k8s_pods_cluster_node_idx ON k8s_pods (cluster_id, node_name);
CREATE INDEX k8s_pods_cluster_deployment_idx ON k8s_pods (cluster_id, namespace, deployment_name);
CREATE INDEX k8s_pods_live_idx ON k8s_pods (cluster_id, phase) WHERE deleted_at IS NULL;
CREATE TABLE k8s_pods_default PARTITION OF k8s_pods DEFAULT;

CREATE TABLE k8s_resource_metrics (
    cluster_id         uuid NOT NULL REFERENCES k8s_clusters(id) ON DELETE CASCADE,
    level              text NOT NULL
                       CHECK (level IN ('cluster', 'namespace', 'deployment', 'pod', 'node')),
    namespace          text NOT NULL DEFAULT '',
    name               text NOT NULL DEFAULT '',
    sampled_at         timestamptz NOT NULL,
    cpu_cores          numeric,
    memory_bytes       bigint,
    network_rx_bytes   bigint,
    network_tx_bytes   bigint,
    storage_bytes      bigint,
    restarts           integer,
    oom_kills          integer,
    PRIMARY KEY (cluster_id, level, namespace, name, sampled_at)
) PARTITION BY RANGE (sampled_at);
CREATE INDEX k8s_resource_metrics_sampled_brin ON k8s_resource_metrics USING brin (sampled_at);
CREATE TABLE k8s_resource_metrics_default PARTITION OF k8s_resource_metrics DEFAULT;

CREATE TABLE k8s_helm_releases (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    cluster_id          uuid NOT NULL REFERENCES k8s_clusters(id) ON DELETE CASCADE,
    namespace           text NOT NULL,
    name                text NOT NULL,
    revision            integer NOT NULL,
    chart_name          text,
    chart_version       text,
    app_version         text,
    status              text,
    description         text,
    first_deployed_at   timestamptz,
    last_deployed_at    timestamptz,
    values_encrypted    bytea,
    values_key_id       text,
    storage_secret      text,
    deleted_at          timestamptz,
    synced_at           timestamptz NOT NULL DEFAULT now(),
    UNIQUE (cluster_id, namespace, name)
);

CREATE TABLE k8s_cost_attribution (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    cluster_id          uuid NOT NULL REFERENCES k8s_clusters(id) ON DELETE CASCADE,
    namespace           text NOT NULL,
    is_idle             boolean NOT NULL DEFAULT false,
    team                text,
    cost_center         text,
    granularity         text NOT NULL CHECK (granularity IN ('hour', 'day')),
    period_start        timestamptz NOT NULL,
    cpu_cost            numeric(16, 6) NOT NULL DEFAULT 0,
    memory_cost         numeric(16, 6) NOT NULL DEFAULT 0,
    storage_cost        numeric(16, 6) NOT NULL DEFAULT 0,
    network_cost        numeric(16, 6) NOT NULL DEFAULT 0,
    total_cost          numeric(16, 6) NOT NULL DEFAULT 0,
    cpu_core_hours      numeric(18, 6) NOT NULL DEFAULT 0,
    memory_gib_hours    numeric(18, 6) NOT NULL DEFAULT 0,
    storage_gib_hours   numeric(18, 6) NOT NULL DEFAULT 0,
    network_gib         numeric(18, 6) NOT NULL DEFAULT 0,
    computed_at         timestamptz NOT NULL DEFAULT now(),
    UNIQUE (cluster_id, namespace, granularity, period_start)
);
CREATE INDEX k8s_cost_attribution_period_idx
    ON k8s_cost_attribution (granularity, period_start, cluster_id);
CREATE INDEX k8s_cost_attribution_team_idx
    ON k8s_cost_attribution (team, granularity, period_start);
"""

PARTITION_FUNCTIONS = r"""
-- Creates (idempotently) one monthly partition of a range-partitioned parent. Rows that already
-- sit in the DEFAULT partition for that month are moved into it first, because PostgreSQL
-- refuses to attach a range the default partition already holds rows for.
CREATE FUNCTION fleetgraph_ensure_month_partition(parent text, month_start timestamptz)
RETURNS text LANGUAGE plpgsql AS $fn$
DECLARE
    lo timestamptz := date_trunc('month', month_start AT TIME ZONE 'UTC') AT TIME ZONE 'UTC';
    hi timestamptz := (date_trunc('month', month_start AT TIME ZONE 'UTC') + interval '1 month')
                      AT TIME ZONE 'UTC';
    part text := format('%s_y%sm%s', parent, to_char(lo AT TIME ZONE 'UTC', 'YYYY'),
                        to_char(lo AT TIME ZONE 'UTC', 'MM'));
    key_column text;
BEGIN
    IF to_regclass(part) IS NOT NULL THEN
        RETURN part;
    END IF;
    SELECT a.attname INTO key_column
      FROM pg_partitioned_table p
      JOIN pg_attribute a ON a.attrelid = p.partrelid AND a.attnum = p.partattrs[0]
     WHERE p.partrelid = parent::regclass;
    EXECUTE format('LOCK TABLE %I IN SHARE ROW EXCLUSIVE MODE', parent);
    EXECUTE format('CREATE TABLE %I (LIKE %I INCLUDING DEFAULTS INCLUDING CONSTRAINTS)',
                   part, parent);
    EXECUTE format('WITH moved AS (DELETE FROM %I WHERE %I >= $1 AND %I < $2 RETURNING *) '
                   'INSERT INTO %I SELECT * FROM moved',
                   parent || '_default', key_column, key_column, part)
      USING lo, hi;
    EXECUTE format('ALTER TABLE %I ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)',
                   parent, part, lo, hi);
    RETURN part;
END
$fn$;

-- The months from now's month to months_ahead later, for every partitioned table we own.
CREATE FUNCTION fleetgraph_ensure_partitions(now_ts timestamptz, months_ahead integer DEFAULT 3)
RETURNS SETOF text LANGUAGE plpgsql AS $fn$
DECLARE
    parent text;
    i integer;
BEGIN
    FOREACH parent IN ARRAY ARRAY['k8s_pods', 'k8s_resource_metrics'] LOOP
        FOR i IN 0..months_ahead LOOP
            RETURN NEXT fleetgraph_ensure_month_partition(
                parent,
                (date_trunc('month', now_ts AT TIME ZONE 'UTC') + make_interval(months => i))
                    AT TIME ZONE 'UTC');
        END LOOP;
    END LOOP;
END
$fn$;

-- Maintenance: give every month that has rows in a DEFAULT partition a partition of its own.
CREATE FUNCTION fleetgraph_split_default_partitions()
RETURNS SETOF text LANGUAGE plpgsql AS $fn$
DECLARE
    parent text;
    key_column text;
    month timestamptz;
BEGIN
    FOREACH parent IN ARRAY ARRAY['k8s_pods', 'k8s_resource_metrics'] LOOP
        SELECT a.attname INTO key_column
          FROM pg_partitioned_table p
          JOIN pg_attribute a ON a.attrelid = p.partrelid AND a.attnum = p.partattrs[0]
         WHERE p.partrelid = parent::regclass;
        FOR month IN EXECUTE format(
            'SELECT DISTINCT date_trunc(''month'', %I AT TIME ZONE ''UTC'') AT TIME ZONE ''UTC'' '
            'FROM %I', key_column, parent || '_default')
        LOOP
            RETURN NEXT fleetgraph_ensure_month_partition(parent, month);
        END LOOP;
    END LOOP;
END
$fn$;
"""

VIEWS = """
-- One row per cluster: the figures a health dashboard shows. Restarts and OOM kills in the
-- last 24 h are the increase of the pods' cumulative counters over the window (the way
-- Prometheus' increase() reads kube_pod_container_status_restarts_total).
CREATE VIEW v_k8s_cluster_health AS
SELECT
    c.id AS cluster_id,
    c.organization_id,
    c.name,
    c.status,
    c.health_status,
    c.health_reason,
    c.last_synced_at,
    COALESCE(n.nodes_total, 0) AS nodes_total,
    COALESCE(n.nodes_ready, 0) AS nodes_ready,
    COALESCE(d.deployments_total, 0) AS deployments_total,
    COALESCE(d.deployments_healthy, 0) AS deployments_healthy,
    COALESCE(p.pods_total, 0) AS pods_total,
    COALESCE(p.pods_running, 0) AS pods_running,
    COALESCE(p.pods_pending, 0) AS pods_pending,
    COALESCE(p.pods_succeeded, 0) AS pods_succeeded,
    COALESCE(p.pods_failed, 0) AS pods_failed,
    COALESCE(p.pods_unknown, 0) AS pods_unknown,
    COALESCE(r.restarts_24h, 0) AS restarts_24h,
    COALESCE(r.oom_kills_24h, 0) AS oom_kills_24h,
    COALESCE(n.cpu_capacity_cores, 0) AS cpu_capacity_cores,
    COALESCE(n.memory_capacity_bytes, 0) AS memory_capacity_bytes,
    COALESCE(n.cpu_usage_cores, 0) AS cpu_usage_cores,
    COALESCE(n.memory_usage_bytes, 0) AS memory_usage_bytes,
    COALESCE(p.cpu_requests_cores, 0) AS cpu_requests_cores,
    COALESCE(p.memory_requests_bytes, 0) AS memory_requests_bytes,
    COALESCE(n.hourly_cost, 0) AS estimated_hourly_cost,
    COALESCE(n.hourly_cost, 0) * 730 AS estimated_monthly_cost
FROM k8s_clusters c
LEFT JOIN LATERAL (
    SELECT count(*) AS nodes_total,
           count(*) FILTER (WHERE nd.ready) AS nodes_ready,
           sum(nd.capacity_cpu_cores) AS cpu_capacity_cores,
           sum(nd.capacity_memory_bytes) AS memory_capacity_bytes,
           sum(nd.usage_cpu_cores) AS cpu_usage_cores,
           sum(nd.usage_memory_bytes) AS memory_usage_bytes,
           sum(COALESCE(nd.hourly_cost,
                        nd.capacity_cpu_cores * c.price_cpu_core_hour
                        + nd.capacity_memory_bytes / 1073741824.0 * c.price_memory_gib_hour,
                        0)) AS hourly_cost
      FROM k8s_nodes nd
     WHERE nd.cluster_id = c.id AND nd.deleted_at IS NULL
) n ON true
LEFT JOIN LATERAL (
    SELECT count(*) AS deployments_total,
           count(*) FILTER (WHERE dp.replicas_available >= dp.replicas_desired)
               AS deployments_healthy
      FROM k8s_deployments dp
     WHERE dp.cluster_id = c.id AND dp.deleted_at IS NULL
) d ON true
LEFT JOIN LATERAL (
    SELECT count(*) AS pods_total,
           count(*) FILTER (WHERE pd.phase = 'Running') AS pods_running,
           count(*) FILTER (WHERE pd.phase = 'Pending') AS pods_pending,
           count(*) FILTER (WHERE pd.phase = 'Succeeded') AS pods_succeeded,
           count(*) FILTER (WHERE pd.phase = 'Failed') AS pods_failed,
           count(*) FILTER (WHERE pd.phase IS NULL OR pd.phase NOT IN
                            ('Running', 'Pending', 'Succeeded', 'Failed')) AS pods_unknown,
           sum(pd.requests_cpu_cores) FILTER (WHERE pd.phase IN ('Running', 'Pending'))
               AS cpu_requests_cores,
           sum(pd.requests_memory_bytes) FILTER (WHERE pd.phase IN ('Running', 'Pending'))
               AS memory_requests_bytes
      FROM k8s_pods pd
     WHERE pd.cluster_id = c.id AND pd.deleted_at IS NULL
) p ON true
LEFT JOIN LATERAL (
    SELECT sum(per_pod.restarts) AS restarts_24h, sum(per_pod.oom_kills) AS oom_kills_24h
      FROM (SELECT max(m.restarts) - min(m.restarts) AS restarts,
                   max(m.oom_kills) - min(m.oom_kills) AS oom_kills
              FROM k8s_resource_metrics m
             WHERE m.cluster_id = c.id AND m.level = 'pod'
               AND m.sampled_at > now() - interval '24 hours'
             GROUP BY m.namespace, m.name) per_pod
) r ON true;

-- One row per live namespace: cost over the last 30 days (30 daily buckets, today's included)
-- from the daily rollups. The average divides by the days that have cost rows, so a namespace
-- created last week is not diluted by days it did not exist.
CREATE VIEW v_k8s_namespace_costs AS
SELECT
    ns.id AS namespace_id,
    ns.cluster_id,
    c.organization_id,
    ns.name AS namespace,
    ns.team,
    ns.cost_center,
    COALESCE(ca.total_cost, 0) AS total_cost_30d,
    COALESCE(ca.cpu_cost, 0) AS cpu_cost_30d,
    COALESCE(ca.memory_cost, 0) AS memory_cost_30d,
    COALESCE(ca.storage_cost, 0) AS storage_cost_30d,
    COALESCE(ca.network_cost, 0) AS network_cost_30d,
    COALESCE(ca.total_cost / NULLIF(ca.days, 0), 0) AS avg_daily_cost,
    COALESCE(ca.days, 0) AS days_with_cost,
    COALESCE(ca.cpu_core_hours, 0) AS cpu_core_hours_30d,
    COALESCE(ca.memory_gib_hours, 0) AS memory_gib_hours_30d,
    COALESCE(ca.storage_gib_hours, 0) AS storage_gib_hours_30d,
    COALESCE(ca.network_gib, 0) AS network_gib_30d
FROM k8s_namespaces ns
JOIN k8s_clusters c ON c.id = ns.cluster_id
LEFT JOIN LATERAL (
    SELECT sum(a.total_cost) AS total_cost,
           sum(a.cpu_cost) AS cpu_cost,
           sum(a.memory_cost) AS memory_cost,
           sum(a.storage_cost) AS storage_cost,
           sum(a.network_cost) AS network_cost,
           count(DISTINCT a.period_start) AS days,
           sum(a.cpu_core_hours) AS cpu_core_hours,
           sum(a.memory_gib_hours) AS memory_gib_hours,
           sum(a.storage_gib_hours) AS storage_gib_hours,
           sum(a.network_gib) AS network_gib
      FROM k8s_cost_attribution a
     WHERE a.cluster_id = ns.cluster_id AND a.namespace = ns.name AND NOT a.is_idle
       AND a.granularity = 'day'
       AND a.period_start >= date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'
                             - interval '29 days'
) ca ON true
WHERE ns.deleted_at IS NULL;
"""


def _execute_script(sql: str) -> None:
    """Run a multi-statement script on the migration's own connection and transaction.

    SQLAlchemy's asyncpg dialect prepares every statement, and a prepared statement holds one
    command; asyncpg's own ``execute`` without arguments uses the simple protocol instead.
    """
    await_only(op.get_bind().connection.driver_connection.execute(sql))


def upgrade() -> None:
    for script in (TENANCY, CLUSTERS, INVENTORY, PARTITION_FUNCTIONS, VIEWS):
        _execute_script(script)
    op.execute("SELECT count(*) FROM fleetgraph_ensure_partitions(now(), 3)")


def downgrade() -> None:
    op.execute("DROP VIEW IF EXISTS v_k8s_namespace_costs")
    op.execute("DROP VIEW IF EXISTS v_k8s_cluster_health")
    op.execute("DROP FUNCTION IF EXISTS fleetgraph_split_default_partitions()")
    op.execute("DROP FUNCTION IF EXISTS fleetgraph_ensure_partitions(timestamptz, integer)")
    op.execute("DROP FUNCTION IF EXISTS fleetgraph_ensure_month_partition(text, timestamptz)")
    for table in (
        "k8s_cost_attribution",
        "k8s_helm_releases",
        "k8s_resource_metrics",
        "k8s_pods",
        "k8s_replicasets",
        "k8s_deployments",
        "k8s_nodes",
        "k8s_namespaces",
        "k8s_clusters",
        "api_tokens",
        "organizations",
    ):
        op.execute(f"DROP TABLE IF EXISTS {table} CASCADE")
