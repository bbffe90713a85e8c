"""Free-text inputs of the registry refuse what does not belong in them (NUL, line breaks,
huge values, lone surrogates) with an error that names the field, and store nothing."""

from __future__ import annotations

from typing import Any

import pytest

from tests.api import Api
from tests.graphql.registry_helpers import REGISTER, cluster_input

HUGE = "r" * 500_000


@pytest.mark.parametrize(("overrides", "field"), [
    ({"region": "us-east-1\x00"}, "region"),
    ({"region": "us-east-1\r\nX-Injected: 1"}, "region"),
    ({"region": "us-east-1\n"}, "region"),
    ({"region": HUGE}, "region"),
    ({"name": "web\n"}, "name"),
    ({"labels": {"team": "a\nb"}}, "labels.team"),
    ({"labels": {"team\n": "a"}}, "labels.team\n"),
], ids=["nul", "crlf", "trailing-newline", "500-kb", "name-newline", "label-value-newline",
        "label-key-newline"])
async def test_bad_free_text_is_refused_naming_the_field(
    api: Api, overrides: dict[str, Any], field: str
) -> None:
    name = overrides.pop("name", "hygiene")
    body = await api.gql(REGISTER, {"input": cluster_input(name, **overrides)},
                         token=api.a.tokens["admin"])
    answer = body["data"]["registerCluster"]
    assert answer["__typename"] == "InvalidInput", answer
    assert [e["field"] for e in answer["fieldErrors"]] == [field]
    stored = await api.pool.fetchval(
        "SELECT count(*) FROM k8s_clusters WHERE organization_id = $1 AND name = $2",
        api.a.org_id, name)
    assert stored == 0


async def test_a_lone_surrogate_never_reaches_the_database(api: Api) -> None:
    # JSON cannot carry one to a str (the body is refused); a document literal neither.
    raw = b'{"query": "{ __typename }", "variables": {"x": "\\ud800"}}'
    response = await api.http.post("/graphql", content=raw, headers={
        "Content-Type": "application/json", "Authorization": f"Bearer {api.a.tokens['admin']}"})
    assert response.status_code == 400
    assert response.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    literal = await api.gql('{ clusters(filter: {search: "\\ud800"}) { totalCount } }',
                            token=api.a.tokens["admin"])
    assert literal["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
