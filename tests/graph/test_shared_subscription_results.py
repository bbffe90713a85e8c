"""Subscribers who would receive the same answer share one execution and one serialisation of
each event: same payload, operation text, variables, organization and role, whichever of the
two WebSocket protocols they speak. Anything that could change the answer gets its own
execution, and every subscriber still receives exactly its own answer, in its own frame."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import orjson
from graphql import ExecutionResult, GraphQLError, parse

from schema.relay import to_global_id
from schema.shared_results import STATS, SharedData, SharedResults, execute_shared
from tests.api import Tenant
from tests.graph import rows
from tests.graph.raw_sockets import Socket, all_live
from tests.graph.ws import change_health

SAME = "subscription { clusterHealth { clusterName status reason } }"
OTHER_SELECTION = "subscription { clusterHealth { status } }"
ONE_CLUSTER = "subscription($id: ID) { clusterHealth(clusterId: $id) { clusterName status } }"
Change = Callable[[str, str], Any]  # (status, reason): commit one health change


def _counts() -> tuple[int, int, int, int]:
    return STATS.executed, STATS.reused, STATS.serialised, STATS.express


async def _measured(sockets: list[Socket], change: Change, reason: str
                    ) -> tuple[tuple[int, int, int, int], list[str]]:
    """Once every socket is live: the frames one change brings each, and how many executions,
    reuses, serialisations and frames written by the hub's fan-out pass (``schema.express``:
    every socket here waits idle, so every frame is) it cost. The sockets are closed after."""
    try:
        await all_live(sockets, lambda: change("degraded", "warming up"))
        before = _counts()
        await change("critical", reason)
        frames = await asyncio.gather(*(s.frame() for s in sockets))
        after = _counts()
        return (after[0] - before[0], after[1] - before[1], after[2] - before[2],
                after[3] - before[3]), frames
    finally:
        for socket in sockets:
            await socket.ws.close()


def _health_of(frames: list[str]) -> list[Any]:
    return [orjson.loads(f)["payload"]["data"]["clusterHealth"] for f in frames]


async def test_fifty_identical_subscribers_get_one_execution_and_the_same_payload_bytes(
    api: Any, tenant: Tenant
) -> None:
    async with api.pool.acquire() as conn:
        cluster_id = await rows.cluster(conn, tenant.org_id, "fifty")
    token = tenant.tokens["viewer"]
    legacy = {f"s{i}" for i in range(0, 50, 10)}  # 5 of them speak the legacy protocol
    sockets = [await Socket.open(api.ws_url, token, SAME, f"s{i}", legacy=f"s{i}" in legacy)
               for i in range(50)]
    counts, frames = await _measured(sockets, lambda status, reason: change_health(
        api.pool, cluster_id, tenant.org_id, status, reason), "2/3 nodes NotReady")
    # One execution and one serialisation for the event; 49 subscribers reuse them, and the
    # hub's pass writes all 50 frames itself.
    assert counts == (1, 49, 1, 50)
    payload = orjson.dumps({"data": {"clusterHealth": {
        "clusterName": "fifty", "status": "CRITICAL", "reason": "2/3 nodes NotReady"}}}
    ).decode()
    for socket, frame in zip(sockets, frames, strict=True):
        envelope = (f'{{"type":"data","id":"{socket.id}","payload":' if socket.id in legacy
                    else f'{{"id":"{socket.id}","type":"next","payload":')
        assert frame == envelope + payload + "}"


async def test_roles_selections_and_variables_get_executions_of_their_own(
    api: Any, tenant: Tenant
) -> None:
    async with api.pool.acquire() as conn:
        cluster_id = await rows.cluster(conn, tenant.org_id, "shared")
    gid = str(to_global_id("Cluster", cluster_id))
    viewer, operator, admin = (tenant.tokens[r] for r in ("viewer", "operator", "admin"))
    sockets = [
        *[await Socket.open(api.ws_url, viewer, SAME, f"v{i}") for i in range(3)],
        await Socket.open(api.ws_url, viewer, OTHER_SELECTION, "selection"),
        await Socket.open(api.ws_url, viewer, ONE_CLUSTER, "variables", variables={"id": gid}),
        *[await Socket.open(api.ws_url, admin, SAME, f"a{i}") for i in range(2)],
        await Socket.open(api.ws_url, operator, SAME, "operator"),
    ]
    counts, frames = await _measured(sockets, lambda status, reason: change_health(
        api.pool, cluster_id, tenant.org_id, status, reason), "counted")
    # Executions: viewers, the other selection, the variables, admins, the operator (5);
    # reused: 2 more viewers and 1 more admin. Each shared answer serialised once.
    assert counts == (5, 3, 5, 8)
    full = {"clusterName": "shared", "status": "CRITICAL", "reason": "counted"}
    assert _health_of(frames) == [full, full, full, {"status": "CRITICAL"},
                                  {"clusterName": "shared", "status": "CRITICAL"},
                                  full, full, full]


async def test_two_organizations_never_share_an_answer(
    api: Any, tenant: Tenant, other: Tenant
) -> None:
    """Both tenants' clusters are called the same and change the same way, so a shared answer
    would be byte-identical and undetectable by content: the counts tell."""
    async with api.pool.acquire() as conn:
        mine = await rows.cluster(conn, tenant.org_id, "twin")
        theirs = await rows.cluster(conn, other.org_id, "twin")
    sockets = [*[await Socket.open(api.ws_url, tenant.tokens["viewer"], SAME, f"m{i}")
                 for i in range(2)],
               *[await Socket.open(api.ws_url, other.tokens["viewer"], SAME, f"t{i}")
                 for i in range(2)]]

    async def both(status: str, reason: str) -> None:
        await change_health(api.pool, mine, tenant.org_id, status, reason)
        await change_health(api.pool, theirs, other.org_id, status, reason)

    counts, frames = await _measured(sockets, both, "twins")
    assert counts == (2, 2, 2, 4)
    assert _health_of(frames) == [{"clusterName": "twin", "status": "CRITICAL",
                                   "reason": "twins"}] * 4


def _executor(payload: Any, *, organization: uuid.UUID, role: str = "viewer",
              query: str = SAME) -> Any:
    """The parts of a per-event executor that sharing reads."""
    document = parse(query)
    return SimpleNamespace(
        root_value=payload, operation=document.definitions[0],
        context_value=SimpleNamespace(principal=SimpleNamespace(organization_id=organization,
                                                                role=role)),
        variable_values=SimpleNamespace(coerced={}),
        is_awaitable=asyncio.iscoroutine,
    )


def test_one_payload_reached_from_two_organizations_is_executed_for_each() -> None:
    """Even if an event's payload reached another organization, its answer would not."""
    payload = SimpleNamespace(shared_results=SharedResults())
    ran: list[uuid.UUID] = []

    def execute_for(org: uuid.UUID) -> Callable[[], ExecutionResult]:
        def execute() -> ExecutionResult:
            ran.append(org)
            return ExecutionResult(data={"clusterHealth": {"org": str(org)}}, errors=None)
        return execute

    one, two = uuid.uuid4(), uuid.uuid4()
    first = execute_shared(_executor(payload, organization=one), execute_for(one))
    second = execute_shared(_executor(payload, organization=two), execute_for(two))
    again = execute_shared(_executor(payload, organization=one), execute_for(one))
    assert ran == [one, two]
    assert first.data == again.data == {"clusterHealth": {"org": str(one)}}
    assert second.data == {"clusterHealth": {"org": str(two)}}
    assert first is not again and first.data is again.data  # own result, shared data


def test_answers_with_errors_and_unfinished_executions_are_never_shared() -> None:
    payload = SimpleNamespace(shared_results=SharedResults())
    org = uuid.uuid4()
    runs = 0

    def failing() -> ExecutionResult:
        nonlocal runs
        runs += 1
        return ExecutionResult(data=None, errors=[GraphQLError("boom")])

    async def finish_later() -> ExecutionResult:
        return ExecutionResult(data={"clusterHealth": None}, errors=None)

    def unfinished() -> Any:
        nonlocal runs
        runs += 1
        return finish_later()

    for execute in (failing, failing, unfinished, unfinished):
        result = execute_shared(_executor(payload, organization=org), execute)
        if asyncio.iscoroutine(result):
            result.close()
        else:
            assert result.errors
    assert runs == 4


def test_a_shared_answer_is_read_only_and_serialised_once() -> None:
    shared = SharedData({"clusterHealth": {"status": "CRITICAL"}})
    before = STATS.serialised
    assert shared.payload_json == '{"data":{"clusterHealth":{"status":"CRITICAL"}}}'
    assert shared.payload_json is shared.payload_json
    assert STATS.serialised - before == 1
    for mutate in (lambda: shared.update(x=1), lambda: shared.pop("clusterHealth"),
                   lambda: shared.__setitem__("x", 1), lambda: shared.__ior__({"x": 1}),
                   shared.clear):
        try:
            mutate()
        except TypeError:
            continue
        raise AssertionError("a shared answer was changed")
    assert shared == {"clusterHealth": {"status": "CRITICAL"}}
