"""Both quantity readers against apimachinery's own quantity_test.go tables.

``sync.quantity`` (what the sync stores) and ``kubesim.quantity`` (what the emulator serves)
are separate by the layering rules; these tables are what keeps them, and us, equal to
``resource.ParseQuantity`` and ``Quantity.String()``. Every table of the Go test that is about
parsing, rounding or the canonical string is applied; the ones about Go's arithmetic API
(Add/Sub/Mul/Neg/Cmp, AsApproximateFloat64, AsInt64's int64-vs-inf.Dec representation) and
the two rows built with an invalid Format are not, having no counterpart here.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest

import kubesim.quantity as sim_quantity
import sync.quantity as sync_quantity
from tests.apimachinery import case_id, table

Q = table("quantity")
SIGNS = (("", 1), ("-", -1), ("+", 1))


def _sync_value(text: str) -> Decimal:
    return sync_quantity.parse_quantity(text)


def _sim_value(text: str) -> Decimal:
    return sim_quantity.parse(text).value


READERS: dict[str, Callable[[str], Decimal]] = {"sync": _sync_value, "kubesim": _sim_value}
ERRORS: tuple[type[Exception], ...] = (sync_quantity.QuantityError, sim_quantity.QuantityError)


def _signed(cases: list[dict[str, Any]]) -> list[Any]:
    """TestQuantityParse also parses every input with a leading "-" and "+"."""
    return [
        pytest.param(reader, sign + c["input"],
                     Decimal(c["value"]).copy_negate() if factor < 0 else Decimal(c["value"]),
                     c["format"],
                     id=f"{reader}-{case_id(sign + c['input'])}")
        for reader in READERS
        for c in cases
        for sign, factor in SIGNS
    ]


@pytest.mark.parametrize(("reader", "text", "value", "fmt"), _signed(Q["parse"]))
def test_parse_gives_kubernetes_value_rounded_up_to_nano_and_capped(
    reader: str, text: str, value: Decimal, fmt: str
) -> None:
    assert READERS[reader](text) == value
    if reader == "kubesim":
        assert sim_quantity.parse(text).format == fmt


@pytest.mark.parametrize("reader", READERS)
@pytest.mark.parametrize("text", Q["invalid"], ids=case_id)
def test_strings_kubernetes_refuses_are_refused(reader: str, text: str) -> None:
    with pytest.raises(ERRORS):
        READERS[reader](text)


@pytest.mark.parametrize("reader", READERS)
@pytest.mark.parametrize("case", Q["scanner"], ids=lambda c: case_id(c["input"]))
def test_scanner_splits_and_the_parts_rebuild_the_same_value(
    reader: str, case: dict[str, Any]
) -> None:
    """TestParseQuantityString's splits, checked the way TestQuantityParse uses them: sign,
    digits, fraction and suffix put back together parse to the same value."""
    parse = READERS[reader]
    value = parse(case["input"])
    rebuilt = ("" if case["positive"] else "-") + case["num"]
    rebuilt += ("." + case["denom"]) if case["denom"] else ""
    assert parse(rebuilt + case["suffix"]) == value
    assert value >= 0 if case["positive"] else value <= 0


@pytest.mark.parametrize("case", Q["parse_canonical"], ids=lambda c: case_id(c["input"]))
def test_big_decimals_parse_exactly_and_serialize_canonically(case: dict[str, Any]) -> None:
    value = Decimal(case["value"])
    assert sync_quantity.parse_quantity(case["input"]) == value
    parsed = sim_quantity.parse(case["input"])
    assert parsed.value == value
    assert str(parsed) == case["canonical"]


@pytest.mark.parametrize("case", Q["round_up"], ids=lambda c: f"{c['input']}@{c['scale']}")
def test_round_up_goes_away_from_zero(case: dict[str, Any]) -> None:
    value = sync_quantity.parse_quantity(case["input"])
    rounded = sync_quantity.round_up(value, case["scale"])
    assert rounded == Decimal(case["value"])
    assert (rounded == value) is case["exact"]
    if case["scale"] == 0:  # what both readers give as whole bytes
        assert sync_quantity.to_bytes(case["input"]) == int(case["value"])
        assert sim_quantity.memory_bytes(case["input"]) == int(case["value"])


@pytest.mark.parametrize("case", Q["scaled_value"], ids=lambda c: f"{c['from']}to{c['to']}")
def test_scaled_value_is_rounded_up(case: dict[str, Any]) -> None:
    one = Decimal(1).scaleb(case["from"])
    scaled = sync_quantity.round_up(one, case["to"]).scaleb(-case["to"])
    assert scaled == case["expected"]


@pytest.mark.parametrize("case", Q["string"], ids=lambda c: f"{c['value']}-{c['format']}")
def test_canonical_string_and_its_round_trips(case: dict[str, Any]) -> None:
    """TestQuantityString: the canonical form of each value, that parsing it keeps the input
    as the serialized string, that an alternate spelling re-serializes to it, and that the
    negative value prints with a "-"."""
    value, fmt = Decimal(case["value"]), sim_quantity.Format(case["format"])
    assert sim_quantity.canonical(value, fmt) == case["expect"]
    assert sim_quantity.parse(case["expect"]).kept == case["expect"]
    assert sync_quantity.parse_quantity(case["expect"]) == value
    if case["alternate"]:
        alternate = sim_quantity.parse(case["alternate"])
        assert alternate.kept is None
        assert str(alternate) == case["expect"]
        assert sync_quantity.parse_quantity(case["alternate"]) == value
    if value != 0:
        assert sim_quantity.canonical(value.copy_negate(), fmt) == "-" + case["expect"]


@pytest.mark.parametrize("case", Q["parse_emit"], ids=lambda c: case_id(c["input"]))
def test_parse_then_emit(case: dict[str, Any]) -> None:
    assert str(sim_quantity.parse(case["input"])) == case["expect"]
    assert str(sim_quantity.parse("-" + case["input"])) == "-" + case["expect"]
    assert sync_quantity.parse_quantity(case["input"]) == sync_quantity.parse_quantity(
        case["expect"]
    )


@pytest.mark.parametrize("case", Q["new"], ids=lambda c: f"{c['source']}-{c['value']}")
def test_constructed_quantities_print_canonically_and_read_back(case: dict[str, Any]) -> None:
    """TestMilliNewSet / TestNewSet / TestNewScaledSet: String() of a constructed quantity,
    and (their round-trip half) that parsing that string gives the value back."""
    value = Decimal(case["value"])
    text = sim_quantity.canonical(value, sim_quantity.Format(case["format"]))
    assert text == case["expect"]
    assert sync_quantity.parse_quantity(text) == value


@pytest.mark.parametrize("case", Q["json_whitespace"], ids=lambda c: case_id(c["json"]))
def test_json_whitespace_and_numbers_on_the_write_path(case: dict[str, Any]) -> None:
    """TestJSONWhitespace: what the API server stores for a quantity sent as this JSON."""
    assert sim_quantity.canonicalize_json(json.loads(case["json"])) == case["expect"]


def test_the_tables_are_all_there() -> None:
    """Counts per table as carried over from quantity_test.go, so a lost case shows."""
    assert {k: len(v) for k, v in Q.items()} == {
        "parse": 96, "invalid": 12, "scanner": 6, "round_up": 12, "string": 42,
        "parse_emit": 9, "parse_canonical": 72, "json_whitespace": 8, "new": 21,
        "scaled_value": 17,
    }
