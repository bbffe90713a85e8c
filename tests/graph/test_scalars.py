"""The custom scalars as codegen and clients meet them: described, ``@specifiedBy`` where a
specification exists, and with a wire format that loses nothing (Long and Decimal as strings,
DateTime as RFC 3339 with an offset)."""

from __future__ import annotations

import decimal
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from graphql import GraphQLError

from schema.scalars import (
    parse_datetime,
    parse_decimal,
    parse_long,
    serialize_datetime,
    serialize_decimal,
)
from tests.api import Tenant
from tests.graph import rows

BIG = 2**53 + 1  # the first integer a JSON number (an IEEE double) cannot hold


async def test_each_scalar_is_described_and_specified_where_a_spec_exists(api: Any) -> None:
    query = " ".join(f'{name}: __type(name: "{name}") {{ description specifiedByURL }}'
                     for name in ("DateTime", "Decimal", "Long", "JSON"))
    answer = (await api.gql(f"{{ {query} }}", token=api.a.tokens["viewer"]))["data"]
    assert {name: t["specifiedByURL"] for name, t in answer.items()} == {
        "DateTime": "https://datatracker.ietf.org/doc/html/rfc3339",
        "Decimal": None,
        "Long": None,
        "JSON": "https://datatracker.ietf.org/doc/html/rfc8259",
    }
    assert "RFC 3339" in answer["DateTime"]["description"]
    assert "sent as a string" in answer["Decimal"]["description"]
    assert "sent as a string of decimal digits" in answer["Long"]["description"]
    assert "RFC 8259" in answer["JSON"]["description"]


async def test_long_and_datetime_travel_as_exact_strings(api: Any, tenant: Tenant) -> None:
    created = datetime(2025, 3, 1, 12, 0, 1, 1, tzinfo=UTC)
    async with api.pool.acquire() as conn:
        cid = await rows.cluster(conn, tenant.org_id, "wire")
        await rows.node(conn, cid, "n", capacity_memory_bytes=BIG,
                        capacity_ephemeral_storage_bytes=2**63 - 1, created_at=created)
        await rows.pod(conn, cid, "default", "p", requests_memory_bytes=BIG)
    answer = await api.gql(
        "{ pods { nodes { requests { memoryBytes } limits { memoryBytes } } } "
        "clusters { nodes { nodes { nodes { createdAt "
        "capacity { memoryBytes ephemeralStorageBytes } } } } } }",
        token=tenant.tokens["viewer"])
    assert "errors" not in answer, answer
    assert answer["data"]["pods"]["nodes"] == [
        {"requests": {"memoryBytes": "9007199254740993"}, "limits": {"memoryBytes": None}}]
    assert answer["data"]["clusters"]["nodes"][0]["nodes"]["nodes"] == [{
        "createdAt": "2025-03-01T12:00:01.000001+00:00",
        "capacity": {"memoryBytes": "9007199254740993",
                     "ephemeralStorageBytes": "9223372036854775807"}}]


@pytest.mark.parametrize(("sent", "stored"), [
    ("1234.56", decimal.Decimal("1234.56")),
    (1234.5, decimal.Decimal("1234.50")),  # older clients send numbers; still accepted
])
async def test_decimal_input_is_read_as_its_digits(
    api: Any, tenant: Tenant, sent: object, stored: decimal.Decimal
) -> None:
    answer = await api.gql(
        'mutation($amount: Decimal!) { setBudget(scope: TEAM, scopeValue: "wire", '
        "amountMonthly: $amount) { scopeValue } }", {"amount": sent},
        token=tenant.tokens["admin"])
    assert answer == {"data": {"setBudget": {"scopeValue": "wire"}}}
    assert await api.pool.fetchval(
        "SELECT amount_monthly FROM k8s_budgets WHERE organization_id = $1", tenant.org_id
    ) == stored


def test_long_accepts_its_string_and_json_integers_within_64_bits() -> None:
    assert parse_long("9223372036854775807") == 2**63 - 1
    assert parse_long("-9223372036854775808") == -(2**63)
    assert parse_long(BIG) == BIG
    for refused, message in [
        ("9223372036854775808", "Long must fit in a signed 64-bit integer."),
        ("1.5", "Long must be an integer or a string of decimal digits."),
        (1.0, "Long must be an integer or a string of decimal digits."),
        (True, "Long must be an integer or a string of decimal digits."),
        (" 1", "Long must be an integer or a string of decimal digits."),
    ]:
        with pytest.raises(GraphQLError) as refusal:
            parse_long(refused)
        assert refusal.value.message == message, refused


def test_decimal_keeps_every_digit_and_refuses_what_is_not_a_finite_number() -> None:
    assert parse_decimal("0.10000000000000000001") == decimal.Decimal("0.10000000000000000001")
    assert serialize_decimal(decimal.Decimal("1E+2")) == "100"
    assert serialize_decimal(decimal.Decimal("0.03160000")) == "0.03160000"
    for refused in ("NaN", "Infinity", "ten", True, None, [1]):
        with pytest.raises(GraphQLError):
            parse_decimal(refused)


def test_datetime_is_rfc3339_with_an_offset_both_ways() -> None:
    plus_two = timezone(timedelta(hours=2))
    assert parse_datetime("2025-03-01T12:00:00Z") == datetime(2025, 3, 1, 12, tzinfo=UTC)
    assert parse_datetime("2025-03-01t12:00:00.5z") == datetime(2025, 3, 1, 12, 0, 0, 500000,
                                                                tzinfo=UTC)
    assert parse_datetime("2025-03-01 14:00:00+02:00") == datetime(2025, 3, 1, 14,
                                                                   tzinfo=plus_two)
    for refused, message in [
        ("2025-03-01T12:00:00", "DateTime must be an RFC 3339 date-time with an offset, "
                                "e.g. 2024-05-01T12:00:00Z."),
        ("2025-03-01", "DateTime must be an RFC 3339 date-time with an offset, "
                       "e.g. 2024-05-01T12:00:00Z."),
        ("2025-02-30T00:00:00Z", "DateTime is not a valid calendar date and time."),
    ]:
        with pytest.raises(GraphQLError) as refusal:
            parse_datetime(refused)
        assert refusal.value.message == message, refused
    assert serialize_datetime(datetime(2025, 3, 1, 12)) == "2025-03-01T12:00:00+00:00"
