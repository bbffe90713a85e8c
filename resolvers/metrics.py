"""Time series over ``k8s_resource_metrics``, bucketed in SQL with ``date_bin``.

The table is range-partitioned by month on ``sampled_at``. The range bounds are written into
the statement as typed literals (built from validated ``datetime`` objects, never from text),
so the planner prunes to the months in range when it plans the statement, whatever plan cache
asyncpg's prepared statements would otherwise pick. ``tests/graph/test_metrics.py`` checks the
plan with EXPLAIN.

Which rows describe which object (the sync engine's metrics job writes them this way):

======================  =========  ================  ==================
object                  level      namespace         name
======================  =========  ================  ==================
Cluster                 cluster    ``''``            ``''``
Namespace               namespace  the namespace     ``''``
Deployment              deployment the namespace     the deployment
Pod                     pod        the namespace     the pod
ClusterNode             node       ``''``            the node
======================  =========  ================  ==================

CPU, memory and storage are gauges (default aggregation AVG over the bucket); network bytes
are cumulative counters (default INCREASE: the growth of the counter within the bucket, as the
cost engine reads them).
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from resolvers.context import Context
from resolvers.dataloaders import BatchLoader
from resolvers.errors import BadUserInput

MAX_RANGE = timedelta(days=93)
MAX_POINTS = 1_000
MIN_STEP_SECONDS = 10

RESOURCE_COLUMNS = {
    "CPU": "cpu_cores",
    "MEMORY": "memory_bytes",
    "NETWORK_RX": "network_rx_bytes",
    "NETWORK_TX": "network_tx_bytes",
    "STORAGE": "storage_bytes",
}
COUNTERS = frozenset({"NETWORK_RX", "NETWORK_TX"})
AGGREGATES = {
    "AVG": "avg(m.{c})",
    "MIN": "min(m.{c})",
    "MAX": "max(m.{c})",
    "SUM": "sum(m.{c})",
    "INCREASE": "GREATEST(max(m.{c}) - min(m.{c}), 0)",
}

EntityKey = tuple[uuid.UUID, str, str]  # (cluster_id, namespace, name)


@dataclass(frozen=True)
class SeriesArgs:
    resource: str
    start: datetime
    end: datetime
    step_seconds: int
    aggregation: str

    @property
    def buckets(self) -> list[datetime]:
        step = timedelta(seconds=self.step_seconds)
        count = math.ceil((self.end - self.start) / step)
        return [self.start + i * step for i in range(count)]


def as_utc(value: datetime) -> datetime:
    """Naive datetimes are read as UTC (the API's documented default), aware ones converted."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def series_args(resource: str, start: datetime, end: datetime, step_seconds: int,
                aggregation: str | None) -> SeriesArgs:
    """Validated arguments; every refusal names the argument and the limit."""
    start, end = as_utc(start), as_utc(end)
    if end <= start:
        raise BadUserInput("to", "must be later than from")
    if end - start > MAX_RANGE:
        raise BadUserInput("to", f"the range may span at most {MAX_RANGE.days} days")
    if step_seconds < MIN_STEP_SECONDS:
        raise BadUserInput("step", f"must be at least {MIN_STEP_SECONDS} seconds")
    points = math.ceil((end - start).total_seconds() / step_seconds)
    if points > MAX_POINTS:
        raise BadUserInput(
            "step", f"the range and step give {points} points; at most {MAX_POINTS} are "
            "allowed, so use a larger step or a shorter range")
    default = "INCREASE" if resource in COUNTERS else "AVG"
    return SeriesArgs(resource, start, end, step_seconds, aggregation or default)


def _timestamp_literal(value: datetime) -> str:
    # isoformat() of a datetime holds digits, '-', ':', '.', '+' and 'T' only.
    return f"TIMESTAMPTZ '{value.isoformat()}'"


def series_sql(level: str, args: SeriesArgs) -> str:
    """The statement for all entities of one level: ``$1`` organization, ``$2..$4`` the keys."""
    value = AGGREGATES[args.aggregation].format(c=RESOURCE_COLUMNS[args.resource])
    start, end = _timestamp_literal(args.start), _timestamp_literal(args.end)
    step = f"INTERVAL '{int(args.step_seconds)} seconds'"
    if level not in {"cluster", "namespace", "deployment", "pod", "node"}:
        raise ValueError(level)
    return f"""
SELECT m.cluster_id, m.namespace, m.name,
       date_bin({step}, m.sampled_at, {start}) AS bucket,
       ({value})::float8 AS value
  FROM k8s_resource_metrics m
  JOIN unnest($2::uuid[], $3::text[], $4::text[]) AS e(cluster_id, namespace, name)
    ON m.cluster_id = e.cluster_id AND m.namespace = e.namespace AND m.name = e.name
 WHERE m.level = '{level}'
   AND m.sampled_at >= {start} AND m.sampled_at < {end}
   AND m.cluster_id IN (SELECT id FROM k8s_clusters WHERE organization_id = $1)
 GROUP BY 1, 2, 3, 4"""


Points = list[tuple[datetime, float | None]]


async def fetch_series(
    ctx: Context, level: str, keys: list[EntityKey], args: SeriesArgs
) -> dict[EntityKey, Points]:
    rows = await ctx.pool.fetch(
        series_sql(level, args), ctx.require().organization_id,
        [k[0] for k in keys], [k[1] for k in keys], [k[2] for k in keys],
    )
    found: dict[EntityKey, dict[datetime, float]] = {}
    for row in rows:
        key = (row["cluster_id"], row["namespace"], row["name"])
        found.setdefault(key, {})[row["bucket"]] = row["value"]
    buckets = args.buckets
    return {key: [(b, values.get(b)) for b in buckets] for key, values in found.items()}


async def load_series(ctx: Context, level: str, key: EntityKey, args: SeriesArgs) -> Points:
    """One entity's series, batched with every entity of the level asking the same range."""

    def factory(c: Context) -> BatchLoader[EntityKey, Points]:
        async def fetch(keys: list[EntityKey]) -> Mapping[EntityKey, Points]:
            return await fetch_series(c, level, keys, args)

        return BatchLoader(fetch, missing=lambda: [(b, None) for b in args.buckets])

    loader = ctx.loader(f"metrics:{level}:{args!r}", factory)
    points: Points = await loader.load(key)
    return points
