"""What a client gets for a mistake, and what the server log keeps of it.

A refused variable is the caller's mistake: BAD_USER_INPUT with graphql-core's explanation —
variable, path into it, reason, "Did you mean" — and never the value itself, which can be a
credential. The log records the refusal at INFO without a traceback, and without the value.
``node(id)`` follows Relay: null for any ID that names nothing the caller may see.
"""

from __future__ import annotations

import base64
import logging
import uuid
from typing import Any

import pytest

from schema.variable_errors import reason_without_value
from tests.api import Tenant
from tests.graph import rows
from tests.graphql.registry_helpers import kubeconfig

SECRET = "kc-token-" + uuid.uuid4().hex
LONG_SECRET = "kc-long-" + uuid.uuid4().hex * 12  # past graphql-core's 240-character inspect
FIRST = "query($first: Int!) { clusters(first: $first) { totalCount } }"
PHASES = "query($phase: [PodPhase!]) { pods(filter: {phase: $phase}) { totalCount } }"
REGISTER = ("mutation($input: RegisterClusterInput!) { registerCluster(input: $input) "
            "{ __typename } }")
WINDOW = "query($from: DateTime!) { costs(window: {from: $from}) { __typename } }"
BUDGET = ('mutation($amount: Decimal!) { setBudget(scope: TEAM, scopeValue: "a", '
          "amountMonthly: $amount) { scopeValue } }")
INPUT = "Variable '$input' has invalid value"

CASES: dict[str, tuple[str, dict[str, Any], list[str], list[str]]] = {
    # name: (document, variables, exact messages, text that must appear nowhere)
    "a string for an Int": (
        FIRST, {"first": "abc"},
        ["Variable '$first' has invalid value: Int cannot represent non-integer value"],
        ["abc"]),
    "a missing required variable": (
        FIRST, {},
        ["Variable '$first' has invalid value: Expected a value of non-null type 'Int!' to be "
         "provided."],
        []),
    "an enum typo, with the suggestion": (
        PHASES, {"phase": ["RUNNING", "RUNNIN"]},
        ["Variable '$phase' has invalid value at [1]: Value does not exist in 'PodPhase' enum. "
         "Did you mean the enum value 'RUNNING'?"],
        ["'RUNNIN'"]),
    "a mistyped input field beside a kubeconfig": (
        REGISTER, {"input": {"name": "x", "provider": "K3S",
                             "kubeconfg": kubeconfig(token=SECRET)}},
        [f"{INPUT}: Expected value of type 'RegisterClusterInput' to include required field "
         "'kubeconfig'.",
         f"{INPUT}: Expected value of type 'RegisterClusterInput' not to include unknown field "
         "'kubeconfg'. Did you mean 'kubeconfig'?"],
        [SECRET]),
    "a wrong leaf beside a kubeconfig": (
        REGISTER, {"input": {"name": 5, "provider": "K3S",
                             "kubeconfig": kubeconfig(token=SECRET)}},
        [f"{INPUT} at .name: String cannot represent a non string value"],
        [SECRET]),
    "a kubeconfig sent as an object": (
        REGISTER, {"input": {"name": "x", "provider": "K3S", "kubeconfig": {"token": SECRET}}},
        [f"{INPUT} at .kubeconfig: String cannot represent a non string value"],
        [SECRET]),
    "a token in an enum slot": (
        REGISTER, {"input": {"name": "x", "provider": SECRET, "kubeconfig": "x"}},
        [f"{INPUT} at .provider: Value does not exist in 'ClusterProvider' enum."],
        [SECRET]),
    "a long token, which graphql-core would print truncated": (
        REGISTER, {"input": {"provider": "K3S", "kubeconfig": kubeconfig(token=LONG_SECRET)}},
        [f"{INPUT}: Expected value of type 'RegisterClusterInput' to include required field "
         "'name'."],
        [LONG_SECRET[:16], LONG_SECRET[-16:]]),
    "a DateTime without an offset": (
        WINDOW, {"from": "2025-03-01T12:00:00"},
        ["Variable '$from' has invalid value: DateTime must be an RFC 3339 date-time with an "
         "offset, e.g. 2024-05-01T12:00:00Z."],
        ["2025-03-01"]),
    "a Decimal that is not a number": (
        BUDGET, {"amount": "lots"},
        ["Variable '$amount' has invalid value: Decimal must be a string such as \"0.0316\"."],
        ["lots"]),
}


@pytest.mark.parametrize("case", list(CASES))
async def test_a_refused_variable_is_bad_user_input_without_its_value(
    api: Any, caplog: pytest.LogCaptureFixture, case: str
) -> None:
    document, variables, messages, unseen = CASES[case]
    caplog.set_level(logging.DEBUG)
    response = await api.http.post(
        "/graphql", json={"query": document, "variables": variables},
        headers={"Authorization": f"Bearer {api.a.tokens['admin']}"})
    body = response.json()
    assert body["data"] is None
    assert [e["message"] for e in body["errors"]] == messages
    assert {e["extensions"]["code"] for e in body["errors"]} == {"BAD_USER_INPUT"}
    for text in unseen:
        assert text not in response.text
        assert text not in caplog.text
    refusals = [r for r in caplog.records if r.name == "fleetgraph.graphql"]
    assert [(r.levelname, r.exc_info) for r in refusals] == [("INFO", None)] * len(messages)
    assert [r.getMessage() for r in refusals] == [
        f"request refused (BAD_USER_INPUT) at None: {m}" for m in messages]
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


async def test_node_is_null_for_any_id_that_names_nothing_the_caller_may_see(
    api: Any, tenant: Tenant, other: Tenant
) -> None:
    async with api.pool.acquire() as conn:
        mine = await rows.namespace(conn, await rows.cluster(conn, tenant.org_id, "mine"), "a")
        theirs = await rows.namespace(conn, await rows.cluster(conn, other.org_id, "theirs"), "b")

    def global_id(text: str) -> str:
        return base64.b64encode(text.encode()).decode()

    query = "query($id: ID!) { node(id: $id) { id ... on Namespace { name } } }"
    found = await api.gql(query, {"id": global_id(f"Namespace:{mine}")},
                          token=tenant.tokens["viewer"])
    assert found == {"data": {"node": {"id": global_id(f"Namespace:{mine}"), "name": "a"}}}
    nothing = {
        "missing": global_id(f"Namespace:{uuid.uuid4()}"),
        "another organization's": global_id(f"Namespace:{theirs}"),
        "the right row under another type": global_id(f"Deployment:{mine}"),
        "an unknown type": global_id(f"Widget:{mine}"),
        "not base64": "!!!",
        "no UUID inside": global_id("Namespace:not-a-uuid"),
    }
    for why, node_id in nothing.items():
        answer = await api.gql(query, {"id": node_id}, token=tenant.tokens["viewer"])
        assert answer == {"data": {"node": None}}, why


def test_a_reason_that_would_still_show_the_value_gives_way_to_a_plain_one() -> None:
    """The safety net under the rebuild: a scalar that words its refusal its own way (the value
    bare, or only the head of it) must not get the value through."""
    assert reason_without_value(f"the scalar said {SECRET} is bad", SECRET) == (
        "the value is not valid here.")
    assert reason_without_value(f"starts with {LONG_SECRET[:20]}…", LONG_SECRET) == (
        "the value is not valid here.")
    # Schema text that merely contains the value is not the value: the suggestion stays.
    assert reason_without_value(
        "Value 'RUNNIN' does not exist in 'PodPhase' enum. Did you mean the enum value "
        "'RUNNING'?", "RUNNIN") == ("Value does not exist in 'PodPhase' enum. Did you mean the "
                                    "enum value 'RUNNING'?")
