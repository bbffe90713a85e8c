"""Root mutation fields: the cluster registry."""

from __future__ import annotations

import strawberry
from strawberry.types import Info

from resolvers import cluster_mutations as writes
from resolvers.context import Context
from schema.cluster_types import (
    Cluster,
    ClusterResult,
    ConnectionTest,
    DeletedCluster,
    FieldError,
    InvalidInput,
    PricingInput,
    RegisterClusterInput,
    UpdateClusterInput,
)
from schema.cost_types import CostMutation
from schema.relay import expect_global_id, to_global_id


def _pricing(p: PricingInput | None) -> dict[str, object] | None:
    if p is None:
        return None
    return {k: v for k, v in vars(p).items() if v is not None}


def _invalid(exc: writes.InvalidInputError) -> InvalidInput:
    return InvalidInput(
        message="the input was refused; nothing was changed",
        field_errors=[FieldError(field=p.field, message=p.message) for p in exc.problems],
    )


@strawberry.type
class Mutation(CostMutation):
    @strawberry.mutation(description="Register a cluster (admin). It starts as PENDING.")
    async def register_cluster(
        self, info: Info[Context, None], input: RegisterClusterInput
    ) -> ClusterResult:
        args = writes.ClusterInputArgs(
            name=input.name, provider=input.provider.value, kubeconfig=input.kubeconfig,
            context=input.context, region=input.region, labels=input.labels,
            pricing=_pricing(input.pricing),  # type: ignore[arg-type]
        )
        try:
            return Cluster.from_row(await writes.register_cluster(info.context, args))
        except writes.InvalidInputError as exc:
            return _invalid(exc)

    @strawberry.mutation(description="Change a cluster's name, region, labels, prices or "
                                     "enabled state (admin).")
    async def update_cluster(
        self, info: Info[Context, None], id: strawberry.ID, input: UpdateClusterInput
    ) -> ClusterResult:
        args = writes.ClusterInputArgs(
            name=input.name, region=input.region, labels=input.labels,
            pricing=_pricing(input.pricing), enabled=input.enabled,  # type: ignore[arg-type]
        )
        try:
            row = await writes.update_cluster(info.context, expect_global_id(id, "Cluster"), args)
            return Cluster.from_row(row)
        except writes.InvalidInputError as exc:
            return _invalid(exc)

    @strawberry.mutation(description="Replace a cluster's kubeconfig (admin).")
    async def rotate_cluster_credentials(
        self, info: Info[Context, None], id: strawberry.ID, kubeconfig: str,
        context: str | None = None,
    ) -> ClusterResult:
        try:
            row = await writes.rotate_credentials(
                info.context, expect_global_id(id, "Cluster"), kubeconfig, context
            )
            return Cluster.from_row(row)
        except writes.InvalidInputError as exc:
            return _invalid(exc)

    @strawberry.mutation(description="Delete a cluster and everything stored under it (admin).")
    async def delete_cluster(self, info: Info[Context, None], id: strawberry.ID) -> DeletedCluster:
        deleted = await writes.delete_cluster(info.context, expect_global_id(id, "Cluster"))
        return DeletedCluster(id=to_global_id("Cluster", deleted))

    @strawberry.mutation(description="Reach the cluster's API server now (operator).")
    async def test_cluster_connection(
        self, info: Info[Context, None], id: strawberry.ID
    ) -> ConnectionTest:
        probe = await writes.test_connection(info.context, expect_global_id(id, "Cluster"))
        return ConnectionTest(reachable=probe.reachable, server_version=probe.server_version,
                              latency_ms=probe.latency_ms, error=probe.error)

    @strawberry.mutation(description="Force a full relist of the cluster (operator).")
    async def trigger_sync(self, info: Info[Context, None], cluster_id: strawberry.ID) -> Cluster:
        row = await writes.trigger_sync(info.context, expect_global_id(cluster_id, "Cluster"))
        return Cluster.from_row(row)
