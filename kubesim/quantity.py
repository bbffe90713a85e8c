"""Kubernetes resource quantities ("250m", "128Mi", "1.5Gi") as plain numbers.

The simulator has to add up requests and turn load into metrics-server style usage
("123456n" nanocores, "12345Ki" memory); a tiny parser here keeps that arithmetic honest
without pulling in a client library model.
"""

from __future__ import annotations

import functools
from decimal import Decimal, InvalidOperation

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


def parse_quantity(value: str | int | float) -> Decimal:
    """Return the quantity as a Decimal in base units (cores, bytes)."""
    if isinstance(value, int | float):
        return Decimal(str(value))
    text = value.strip()
    for suffix, factor in _BINARY.items():
        if text.endswith(suffix):
            return Decimal(text[: -len(suffix)]) * factor
    try:
        # Plain numbers and exponent forms ("1e3") are valid quantities.
        return Decimal(text)
    except InvalidOperation:
        pass
    suffix = text[-1]
    if suffix not in _DECIMAL:
        raise ValueError(f"not a Kubernetes quantity: {value!r}")
    return Decimal(text[:-1]) * _DECIMAL[suffix]


@functools.lru_cache(maxsize=4096)
def cpu_nanocores(value: str | int | float) -> int:
    """CPU quantity in nanocores ("250m" -> 250_000_000)."""
    return int(parse_quantity(value) * 1_000_000_000)


@functools.lru_cache(maxsize=4096)
def memory_bytes(value: str | int | float) -> int:
    """Memory quantity in bytes ("128Mi" -> 134_217_728)."""
    return int(parse_quantity(value))


def format_nanocores(nanocores: int) -> str:
    """The form metrics-server uses for CPU usage: "123456n"."""
    return f"{max(0, int(nanocores))}n"


def format_kibibytes(num_bytes: int) -> str:
    """The form metrics-server uses for memory usage: "12345Ki"."""
    return f"{max(0, int(num_bytes)) // 1024}Ki"
