"""Time series on every level of the graph: ``metrics(resource, from, to, step)``.

The field is made by ``metrics_field`` so that Cluster, Namespace, Deployment, Pod and
ClusterNode offer exactly the same arguments; only the level and the way an object names its
rows (see ``resolvers.metrics``) differ.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any

import strawberry
from strawberry.types import Info

from resolvers.context import Context
from resolvers.metrics import EntityKey, load_series, series_args
from schema.graph_enums import MetricAggregation, MetricResource


@strawberry.type
class MetricPoint:
    at: datetime = strawberry.field(description="Start of the bucket.")
    value: float | None = strawberry.field(description="null when the bucket has no samples.")


@strawberry.type(description="Samples bucketed into equal steps; one point per bucket.")
class MetricSeries:
    resource: MetricResource
    aggregation: MetricAggregation
    step_seconds: int
    from_: datetime = strawberry.field(name="from")
    to: datetime
    points: list[MetricPoint]


def metrics_field(level: str, key: Callable[[Any], EntityKey]) -> Any:
    """The ``metrics`` field for objects of ``level``; ``key`` names an object's rows."""

    async def resolve(
        root: Any,
        info: Info[Context, None],
        resource: MetricResource,
        from_: Annotated[datetime, strawberry.argument(name="from")],
        to: datetime,
        step: Annotated[int, strawberry.argument(description="Bucket width in seconds.")] = 300,
        aggregation: MetricAggregation | None = None,
    ) -> MetricSeries:
        args = series_args(resource.value, from_, to, step,
                           aggregation.value if aggregation else None)
        points = await load_series(info.context, level, key(root), args)
        return MetricSeries(
            resource=resource, aggregation=MetricAggregation(args.aggregation),
            step_seconds=args.step_seconds, from_=args.start, to=args.end,
            points=[MetricPoint(at=at, value=value) for at, value in points],
        )

    return strawberry.field(
        resolver=resolve,
        description="Resource usage over time, bucketed in PostgreSQL. At most 93 days and "
                    "1000 points.",
    )
