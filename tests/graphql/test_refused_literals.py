"""A value written into the document itself (a literal) is refused like a variable: the
error names where and why, never the value, in the answer and in the log. Syntax errors name
a string token by its kind only. A token pasted into the wrong place stays unseen."""

from __future__ import annotations

import logging
import uuid
from typing import Any

import pytest

SECRET = "kc-token-" + uuid.uuid4().hex
LONG = "kc-long-" + uuid.uuid4().hex * 12  # past graphql-core's 240-character inspect

CASES: dict[str, tuple[str, list[str]]] = {
    # name: (document holding SECRET or LONG, exact messages)
    "a token where an Int goes": (
        f'query {{ clusters(first: "{SECRET}") {{ totalCount }} }}',
        ["Int cannot represent non-integer value"]),
    "a token in an enum slot": (
        f'mutation {{ registerCluster(input: {{name: "x", provider: "{SECRET}", '
        'kubeconfig: "x"}) { __typename } }',
        ["Enum 'ClusterProvider' cannot represent non-enum value."]),
    "a kubeconfig written as an object": (
        f'mutation {{ registerCluster(input: {{name: "x", provider: K3S, '
        f'kubeconfig: {{token: "{SECRET}"}}}}) {{ __typename }} }}',
        ["String cannot represent a non string value"]),
    "a long token as a block string where an Int goes": (
        f'query {{ clusters(first: """{LONG}""") {{ totalCount }} }}',
        ["Int cannot represent non-integer value"]),
    "a stray string token": (
        f'query {{ clusters(first: 1) "{SECRET}" }}',
        ["Syntax Error: Expected Name, found String."]),
    "a stray block string": (
        f'query {{ clusters(first: 1) """{LONG}""" }}',
        ["Syntax Error: Expected Name, found BlockString."]),
}


@pytest.mark.parametrize("case", list(CASES))
async def test_a_refused_literal_is_bad_user_input_without_its_value(
    api: Any, caplog: pytest.LogCaptureFixture, case: str
) -> None:
    document, messages = CASES[case]
    caplog.set_level(logging.DEBUG)
    response = await api.http.post(
        "/graphql", json={"query": document},
        headers={"Authorization": f"Bearer {api.a.tokens['admin']}"})
    body = response.json()
    assert [e["message"] for e in body["errors"]] == messages
    assert {e["extensions"]["code"] for e in body["errors"]} == {"BAD_USER_INPUT"}
    for text in (SECRET, LONG[:16], LONG[-16:]):
        assert text not in response.text
        assert text not in caplog.text
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []
