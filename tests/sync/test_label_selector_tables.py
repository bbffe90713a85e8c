"""Both label-selector parsers against apimachinery's selector_test.go and validation_test.go.

``resolvers.label_selector`` (GraphQL filters, compiled to SQL over a jsonb column) and
``kubesim.selectors`` (the emulator's ``labelSelector``) are separate by the layering rules;
the same tables hold both to ``labels.Parse``. Matching is checked in Python for kubesim and in
real PostgreSQL for the SQL. Not applied: the lexer/lookahead/parseOperator token tables and
String()/Add/RequiresExactMatch/SafeSort/Equal/Nothing (Go API with no counterpart here; the
parse tables below exercise the same inputs through the public parsers), and
TestRequirementSelectorMatching's zero-value Requirement row.
"""

from __future__ import annotations

import re
from typing import Any

import asyncpg
import orjson
import pytest

import kubesim.selectors as sim
import resolvers.label_selector as gql
from kubesim.errors import ApiError
from resolvers.errors import BadUserInput
from resolvers.sql import Params
from tests.apimachinery import case_id, table

S = table("selector")
V = table("validation")
PARSERS = ("resolvers", "kubesim")

Parsed = list[list[Any]] | None  # [key, operator, values] per requirement; None: refused


def parse(parser: str, selector: str) -> Parsed:
    """The requirements as [key, operator, sorted values], in key order; None if refused."""
    if parser == "kubesim":
        try:
            return [[r.key, r.op, list(r.values)] for r in sim.parse_label_selector(selector)]
        except ApiError as exc:
            assert exc.code == 400
            return None
    try:
        found = gql.parse_label_selector(selector, field="filter.labelSelector")
    except BadUserInput as exc:
        assert exc.field == "filter.labelSelector"
        return None
    return [[r.key, r.operator, list(r.values)] for r in sorted(found, key=lambda r: r.key)]


def requirement_ok(parser: str, key: str, operator: str, values: list[str]) -> bool:
    try:
        if parser == "kubesim":
            sim.new_requirement(key, operator, values)
        else:
            gql.make_requirement(key, operator, values)
    except ValueError:
        return False
    return True


_SPELLING = {"=": "=", "==": "==", "!=": "!=", "gt": ">", "lt": "<"}


def restring(requirements: list[list[Any]]) -> str:
    """Requirement.String() as selector_test.go compares it (TestSelectorParse)."""
    parts = []
    for key, op, values in requirements:
        if op in ("exists", "!"):
            parts.append(("!" if op == "!" else "") + key)
        elif op in ("in", "notin"):
            parts.append(f"{key} {op} ({','.join(values)})")
        else:
            parts.append(f"{key}{_SPELLING[op]}{values[0]}")
    return ",".join(parts)


@pytest.mark.parametrize("parser", PARSERS)
@pytest.mark.parametrize("case", S["set_selector_parser"], ids=lambda c: case_id(c["input"]))
def test_set_selector_parser(parser: str, case: dict[str, Any]) -> None:
    got = parse(parser, case["input"])
    assert (got is not None) is case["valid"]
    if "requirements" in case:
        assert got == case["requirements"]


@pytest.mark.parametrize("parser", PARSERS)
@pytest.mark.parametrize("case", S["selector_parse"], ids=lambda c: case_id(c["input"]))
def test_selector_parse_and_restring(parser: str, case: dict[str, Any]) -> None:
    got = parse(parser, case["input"])
    assert (got is not None) is case["valid"]
    if got is not None:
        assert restring(got) == case["string"]


@pytest.mark.parametrize("parser", PARSERS)
@pytest.mark.parametrize("selector", S["also_valid"], ids=case_id)
def test_selectors_that_parse(parser: str, selector: str) -> None:
    assert parse(parser, selector) is not None


@pytest.mark.parametrize("parser", PARSERS)
@pytest.mark.parametrize("selector", S["invalid_from_set"], ids=case_id)
def test_a_value_past_63_characters_is_refused(parser: str, selector: str) -> None:
    assert parse(parser, selector) is None


@pytest.mark.parametrize("parser", PARSERS)
@pytest.mark.parametrize("pair", S["deterministic"], ids=lambda p: case_id(p[0]))
def test_parse_is_deterministic(parser: str, pair: list[str]) -> None:
    first, second = (parse(parser, s) for s in pair)
    assert first is not None and first == second


@pytest.mark.parametrize("parser", PARSERS)
@pytest.mark.parametrize("case", S["requirements"],
                         ids=lambda c: f"{case_id(c['key'])}-{c['operator']}")
def test_requirement_constructor(parser: str, case: dict[str, Any]) -> None:
    ok = requirement_ok(parser, case["key"], case["operator"], case["values"])
    assert ok is case["valid"]


def _validation_cases() -> list[Any]:
    """Label keys and values, and DNS-1123 subdomains as a key's prefix (``<prefix>/x``)."""
    cases = []
    for name, make in (
        ("label_keys", lambda s: (s, "exists", [])),
        ("label_values", lambda s: ("k", "=", [s])),
        ("dns1123_subdomains", lambda s: (f"{s}/x", "exists", [])),
    ):
        for valid in (True, False):
            for text in V[name]["valid" if valid else "invalid"]:
                for parser in PARSERS:
                    cases.append(pytest.param(parser, *make(text), valid,
                                              id=f"{parser}-{name}-{case_id(text)}"))
    return cases


@pytest.mark.parametrize(("parser", "key", "operator", "values", "valid"), _validation_cases())
def test_label_key_and_value_validation(
    parser: str, key: str, operator: str, values: list[str], valid: bool
) -> None:
    assert requirement_ok(parser, key, operator, values) is valid


MATCHES = [pytest.param(c, id=f"{case_id(c['selector'])}-{orjson.dumps(c['labels']).decode()}")
           for c in S["matches"]]


@pytest.mark.parametrize("case", MATCHES)
def test_kubesim_matches_like_kubernetes(case: dict[str, Any]) -> None:
    selector = sim.Selector.parse(label_selector=case["selector"])
    assert selector.matches({"metadata": {"labels": case["labels"]}}) is case["match"]


async def sql_matches(pool: asyncpg.Pool, selector: str, labels: dict[str, str]) -> bool:
    params = Params(orjson.dumps(labels).decode())
    clauses = gql.label_selector_sql(selector, "t.labels", params, field="labelSelector")
    where = " AND ".join(f"({c})" for c in clauses) or "true"
    query = f"SELECT {where} FROM (SELECT $1::text::jsonb AS labels) t"
    return bool(await pool.fetchval(query, *params.values))


@pytest.mark.parametrize("case", MATCHES)
async def test_sql_matches_like_kubernetes(db_pool: asyncpg.Pool, case: dict[str, Any]) -> None:
    assert await sql_matches(db_pool, case["selector"], case["labels"]) is case["match"]


# Our own cases, where SQL could drift from Go's Requirement.Matches: integers are parsed as
# strconv.ParseInt does (sign, leading zeros; int64 only), a missing key matches != and notin.
OURS = [
    ("x>1", {"x": "+2"}, True),
    ("x>1", {"x": "007"}, True),
    ("x<1", {"x": "-5"}, True),
    ("x>1", {"x": "2.5"}, False),
    ("x>1", {"x": " 2"}, False),
    ("x>1", {"x": ""}, False),
    ("x>1", {"x": "99999999999999999999"}, False),  # past int64: ParseInt fails
    ("x<1", {"x": "-99999999999999999999"}, False),
    ("x>9223372036854775806", {"x": "9223372036854775807"}, True),
    ("x>1", {}, False),
    ("x<1", {}, False),
    ("x!=a", {}, True),
    ("x notin (a)", {}, True),
    ("x notin (a)", {"x": "a"}, False),
    ("x in ()", {"x": ""}, True),
    ("x=", {"x": ""}, True),
    ("x=", {}, False),
    ("!x", {}, True),
    ("x in (a,b),y", {"x": "b", "y": "1"}, True),
]


OURS_IDS = [f"{case_id(s)}-{orjson.dumps(labels).decode()}" for s, labels, _ in OURS]


@pytest.mark.parametrize(("selector", "labels", "match"), OURS, ids=OURS_IDS)
async def test_sql_and_kubesim_agree_on_integers_and_missing_keys(
    db_pool: asyncpg.Pool, selector: str, labels: dict[str, str], match: bool
) -> None:
    assert sim.Selector.parse(label_selector=selector).matches(
        {"metadata": {"labels": labels}}) is match
    assert await sql_matches(db_pool, selector, labels) is match


@pytest.mark.parametrize(
    ("selector", "position", "reason"),
    [
        ("x==a==b", 5, "found '=='"),
        ("app=web,Example.com/abc", 9, "prefix"),
        ("x in (a", 8, "end of the selector"),
        ("x<a", 3, "integers"),
        ("tier in (a,-b)", 12, "label value '-b'"),
    ],
)
def test_graphql_errors_name_the_character_and_the_reason(
    selector: str, position: int, reason: str
) -> None:
    with pytest.raises(BadUserInput) as caught:
        gql.parse_label_selector(selector, field="filter.labelSelector")
    message = str(caught.value)
    assert message.startswith(f"filter.labelSelector: at character {position}: ")
    assert reason in message


def test_kubesim_errors_carry_the_go_message_and_the_character() -> None:
    with pytest.raises(ApiError) as caught:
        sim.parse_label_selector("x=a||y=b")
    assert caught.value.code == 400
    assert caught.value.message.startswith("unable to parse requirement: values[0][x]: ")
    assert re.search(r"\(at character 3\)$", caught.value.message)


def test_the_tables_are_all_there() -> None:
    assert {k: len(v) for k, v in S.items()} == {
        "set_selector_parser": 37, "selector_parse": 14, "matches": 31, "requirements": 19,
        "also_valid": 10, "deterministic": 1, "invalid_from_set": 1,
    }
    assert {k: (len(v["valid"]), len(v["invalid"])) for k, v in V.items()} == {
        "label_keys": (17, 10), "label_values": (7, 8), "dns1123_subdomains": (41, 60),
    }
