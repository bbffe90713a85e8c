"""Kubernetes quantities (``100m``, ``1.5Gi``, ``2e3``, ``129e6``, ``123456n``), parsed exactly.

Resource amounts arrive as strings in the ``resource.Quantity`` grammar. Floats would turn
``0.1`` CPU into ``0.1000000000000000055…`` and make sums drift, so everything goes through
:class:`~decimal.Decimal`: CPU is stored as cores in a ``numeric`` column (``100m`` is exactly
``0.1``), memory and storage as bytes in a ``bigint`` (rounded up, like ``Quantity.Value()``).
"""

from __future__ import annotations

import re
from decimal import ROUND_CEILING, Decimal, InvalidOperation

__all__ = ["QuantityError", "parse_quantity", "to_bytes", "to_cores", "to_count"]

_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "": Decimal(1),
    "k": Decimal("1e3"),
    "M": Decimal("1e6"),
    "G": Decimal("1e9"),
    "T": Decimal("1e12"),
    "P": Decimal("1e15"),
    "E": Decimal("1e18"),
}
# <signedNumber><suffix>, where suffix is binarySI, decimalSI or a decimal exponent (e/E).
_QUANTITY = re.compile(
    r"^(?P<number>[+-]?(?:\d+\.?\d*|\.\d+))"
    r"(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]|[eE][+-]?\d+)?$"
)
_BIGINT_MAX = 2**63 - 1


class QuantityError(ValueError):
    """A string that is not a Kubernetes quantity."""


def parse_quantity(text: str | int | float) -> Decimal:
    """The exact value of a quantity string (``"1.5Gi"`` → ``Decimal(1610612736)``)."""
    if isinstance(text, bool):
        raise QuantityError("a boolean is not a quantity")
    if isinstance(text, int):
        return Decimal(text)
    if isinstance(text, float):
        return Decimal(repr(text))
    match = _QUANTITY.match(text.strip()) if isinstance(text, str) else None
    if match is None:
        raise QuantityError(f"not a quantity: {str(text)[:40]!r}")
    try:
        number = Decimal(match["number"])
    except InvalidOperation:  # pragma: no cover - the pattern admits only valid decimals
        raise QuantityError(f"not a quantity: {text[:40]!r}") from None
    suffix = match["suffix"] or ""
    if suffix in _BINARY:
        return number * _BINARY[suffix]
    if suffix in _DECIMAL:
        return number * _DECIMAL[suffix]
    return number.scaleb(int(suffix[1:]))


def to_cores(text: str | int | float | None) -> Decimal | None:
    """CPU cores as an exact, normalized Decimal (``"250m"`` → ``0.25``); ``None`` stays None."""
    if text is None:
        return None
    value = parse_quantity(text)
    # normalize() drops trailing zeros but would write 1000 as 1E+3; quantize keeps it plain.
    normalized = value.normalize()
    if normalized == normalized.to_integral_value():
        return normalized.quantize(Decimal(1))
    return normalized


def to_bytes(text: str | int | float | None) -> int | None:
    """Bytes as an integer, rounded up (``"1.5Ki"`` → 1536, ``"1m"`` → 1)."""
    if text is None:
        return None
    value = int(parse_quantity(text).to_integral_value(rounding=ROUND_CEILING))
    if not -_BIGINT_MAX <= value <= _BIGINT_MAX:
        raise QuantityError("quantity does not fit in a bigint")
    return value


def to_count(text: str | int | float | None) -> int | None:
    """A count such as ``pods: "110"``, rounded up, clamped into a PostgreSQL integer."""
    if text is None:
        return None
    value = int(parse_quantity(text).to_integral_value(rounding=ROUND_CEILING))
    if not -(2**31) < value < 2**31:
        raise QuantityError("count does not fit in an integer")
    return value
