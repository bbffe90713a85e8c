from decimal import Decimal

import pytest

from sync.quantity import QuantityError, parse_quantity, to_bytes, to_cores, to_count


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("100m", Decimal("0.1")),
        ("1.5Gi", Decimal(1610612736)),
        ("2e3", Decimal(2000)),
        ("129e6", Decimal(129000000)),
        ("1k", Decimal(1000)),
        ("123456n", Decimal("0.000123456")),
        ("12345Ki", Decimal(12345 * 1024)),
        ("1E3", Decimal(1000)),
        ("0", Decimal(0)),
        ("+1.5", Decimal("1.5")),
        (".5", Decimal("0.5")),
        ("5u", Decimal("0.000005")),
        ("1Ei", Decimal(2**60)),
        ("3M", Decimal(3_000_000)),
    ],
)
def test_quantities_parse_exactly(text: str, expected: Decimal) -> None:
    assert parse_quantity(text) == expected


def test_cpu_is_cores_and_memory_is_bytes_rounded_up() -> None:
    assert to_cores("250m") == Decimal("0.25")
    assert str(to_cores("2e3")) == "2000"
    assert to_bytes("1.5Ki") == 1536
    assert to_bytes("1m") == 1
    assert to_bytes("129e6") == 129_000_000
    assert to_count("110") == 110
    assert to_cores(None) is None


@pytest.mark.parametrize("text", ["", "abc", "1.5.5", "1Kii", "--1", "1 Gi", "0x10"])
def test_garbage_is_refused(text: str) -> None:
    with pytest.raises(QuantityError):
        parse_quantity(text)


def test_values_stay_exact_past_the_default_28_digits() -> None:
    digits = "123456789012345678901234567890123"
    assert parse_quantity(f"-{digits}.5") == Decimal(f"-{digits}.5")
    assert parse_quantity(f"{digits}k") == Decimal(int(digits) * 1000)
    assert parse_quantity(f"{digits}Ki") == 2**63 - 1  # binary: capped
    assert to_cores(f"{digits}000") == Decimal(f"{digits}000")


def test_huge_exponents_stay_short_and_bytes_past_int64_are_refused_or_saturated() -> None:
    # Kubernetes does not cap decimal values; nothing here may expand 10^2000000000.
    assert to_cores("1e2000000000") == Decimal("1E+2000000000")
    with pytest.raises(QuantityError):
        to_bytes("1e2000000000")
    assert to_bytes("1e2000000000", saturate=True) == 2**64
    assert to_bytes("-1e30", saturate=True) == -(2**64)
    assert to_bytes("9Ei") == 2**63 - 1  # capped by Kubernetes itself: a binary suffix
    assert to_count("1e12") == 10**12  # fitting into an integer column is the writer's job


def test_kubernetes_scanner_quirks_are_kept() -> None:
    # A bare suffix reads as zero on Kubernetes' int64 path (kubernetes/apimachinery#165) and
    # fails on its inf.Dec path, where Pi and Ei land; exponents wrap as Go's int32 does.
    assert parse_quantity("m") == 0
    assert parse_quantity("Ti") == 0
    with pytest.raises(QuantityError):
        parse_quantity("Pi")
    assert parse_quantity("1e4294967296") == 1
    assert to_bytes("-1.5") == -2  # rounded away from zero, as Quantity.RoundUp


def test_a_sum_is_exact_up_to_what_a_column_holds_and_saturates_past_it() -> None:
    """Adding 1E+2000000000 exactly to 1m would write out two billion digits (seconds and
    gigabytes for one pod); past PostgreSQL's 131072 digits a term saturates at 10^131073,
    which every column clamps the same way. Below that, sums stay exact."""
    from sync.quantity import EXACT, exact_sum

    huge, milli = Decimal("1E+2000000000"), Decimal("0.001")
    assert exact_sum([huge, milli]) == EXACT.add(Decimal("1E+131073"), milli)
    assert exact_sum([huge, huge]) == Decimal("2E+131073")  # saturated terms add exactly
    assert exact_sum([huge.copy_negate(), milli]) == EXACT.add(Decimal("-1E+131073"), milli)
    edge = Decimal("1E+131072")
    assert exact_sum([edge, milli]) == EXACT.add(edge, milli)  # exact, not saturated
    assert exact_sum([edge, milli]) != edge
