"""A namespace deleted and created again under the same name is two rows; each generation
lists only the pods created in its own lifetime."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from schema.relay import to_global_id
from tests.api import make_tenant
from tests.graph import rows
from tests.graph.rows import NOW

QUERY = """query($id: ID!) { node(id: $id) { ... on Namespace {
    pods(first: 10, filter: {includeDeleted: true}) { totalCount edges { node { name } } } } } }"""


async def test_each_namespace_generation_lists_its_own_pods(api: Any) -> None:
    tenant = await make_tenant(api.pool, "recreated")
    first_born, first_gone, second_born = (
        NOW - timedelta(days=3), NOW - timedelta(days=2), NOW - timedelta(days=1))
    async with api.pool.acquire() as conn:
        cid = await rows.cluster(conn, tenant.org_id, "c")
        old = await rows.namespace(conn, cid, "shop", created_at=first_born,
                                   deleted_at=first_gone)
        new = await rows.namespace(conn, cid, "shop", created_at=second_born)
        await rows.pod(conn, cid, "shop", "from-first", created_at=first_born + timedelta(hours=1),
                       deleted_at=first_gone)
        await rows.pod(conn, cid, "shop", "from-second",
                       created_at=second_born + timedelta(hours=1))
    token = tenant.tokens["viewer"]
    for ns_id, expected in ((old, ["from-first"]), (new, ["from-second"])):
        body = await api.gql(QUERY, {"id": to_global_id("Namespace", ns_id)}, token=token)
        pods = body["data"]["node"]["pods"]
        assert [e["node"]["name"] for e in pods["edges"]] == expected, body
        assert pods["totalCount"] == 1
