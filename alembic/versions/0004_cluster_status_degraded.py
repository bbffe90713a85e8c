"""A cluster status of its own for an API server that answers with errors: ``degraded``.

Why: ``unreachable`` is for a cluster FleetGraph cannot get at (no connection, a timeout,
refused credentials, an answer that is not Kubernetes). An API server that answers 5xx, or
throttles with 429, is reachable: it is failing or busy, and some kinds may still be watched.
Calling that ``unreachable`` sent operators after the network; ``degraded`` (with the reason
and the kinds in ``last_sync_error``) sends them to the API server. ``active`` now means every
kind is listed and watching.

The downgrade folds ``degraded`` back into ``unreachable``, which is what the sync wrote for
those failures before.

Revision ID: 0004_cluster_status_degraded
Revises: 0003_cost_exact
Create Date: 2026-12-01
"""

from alembic import op

revision = "0004_cluster_status_degraded"
down_revision = "0003_cost_exact"
branch_labels = None
depends_on = None

_STATUSES = ("pending", "active", "degraded", "unreachable", "disabled")
_PREVIOUS = ("pending", "active", "unreachable", "disabled")


def _check(statuses: tuple[str, ...]) -> str:
    listed = ", ".join(f"'{s}'" for s in statuses)
    return (
        "ALTER TABLE k8s_clusters ADD CONSTRAINT k8s_clusters_status_check"
        f" CHECK (status IN ({listed}))"
    )


def upgrade() -> None:
    op.execute("ALTER TABLE k8s_clusters DROP CONSTRAINT k8s_clusters_status_check")
    op.execute(_check(_STATUSES))


def downgrade() -> None:
    op.execute("ALTER TABLE k8s_clusters DROP CONSTRAINT k8s_clusters_status_check")
    op.execute("UPDATE k8s_clusters SET status = 'unreachable' WHERE status = 'degraded'")
    op.execute(_check(_PREVIOUS))
