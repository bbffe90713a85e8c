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
