"""Requests that cannot be parsed get a JSON 400 with a code, the way every other GraphQL
failure is reported, never a plain-text or 500 answer."""

from __future__ import annotations

from typing import Any

import pytest

DEEP = b'{"query": "{ __typename }", "variables": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"


@pytest.mark.parametrize(("body", "content_type"), [
    (b'{"query": "{ clusters { totalCount } }\xff\xfe"}', "application/json"),
    (DEEP, "application/json"),
    (b'{"query": ', "application/json"),
    (b"not json at all", "application/json"),
    (b'{"variables": {}}', "application/json"),
    (b"query=%7B__typename%7D", "text/plain"),
], ids=["invalid-utf8", "nested-100k-deep", "truncated", "not-json", "no-query",
        "unsupported-content-type"])
async def test_unparsable_request_is_a_json_400_with_a_code(
    api: Any, body: bytes, content_type: str
) -> None:
    response = await api.http.post("/graphql", content=body, headers={
        "Content-Type": content_type, "Authorization": f"Bearer {api.a.tokens['viewer']}"})
    assert response.status_code == 400
    assert response.headers["content-type"].startswith("application/json")
    (error,) = response.json()["errors"]
    assert error["extensions"] == {"code": "BAD_USER_INPUT"}
    assert error["message"] in {"Unable to parse request body as JSON",
                                "No GraphQL query found in the request",
                                "Unsupported content type"}


async def test_variables_in_a_get_query_string_that_are_not_json_get_a_json_400(api: Any) -> None:
    response = await api.http.get("/graphql", params={"query": "{ __typename }",
                                                      "variables": "{nope"})
    assert response.status_code == 400
    assert response.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
