"""Kubernetes quantities (``100m``, ``1.5Gi``, ``2e3``, ``129e6``, ``123456n``), read exactly as
``resource.ParseQuantity`` reads them.

Resource amounts arrive as strings in the ``resource.Quantity`` grammar. Floats would turn
``0.1`` CPU into ``0.1000000000000000055…`` and make sums drift, so everything is a
:class:`~decimal.Decimal` computed in an exact context (the default context keeps 28 digits
and stops at 10^999999, both of which a hostile quantity passes). CPU is stored as cores in a
``numeric`` column, memory and storage as bytes in a ``bigint``.

What Kubernetes does, and so what this does (``k8s.io/apimachinery/pkg/api/resource``; the
cases are apimachinery's own tables, ``tests/fixtures/apimachinery/quantity.json``):

- the scanner is looser than the documented grammar: ``1.``, ``.5``, ``-`` and a bare suffix
  such as ``m`` or ``Ki`` are quantities (zero; kubernetes/apimachinery#165), ``1.5.5``,
  ``1i``, `` 1`` and ``1 `` are not;
- every value is rounded *up* (away from zero) to a whole nano: ``3.001n`` is ``4n``;
- a value written with a binary suffix is capped at 2^63-1 in magnitude (``9Ei``); decimal
  values are not capped by Kubernetes at all (``1e30`` stays 1e30).

``Quantity.Value()`` then rounds up to a whole unit; past int64 it silently wraps around, which
is no figure anyone wants: :func:`to_bytes` refuses such values, or (for the mappers) saturates
and leaves fitting the result into a column to the writer, which reports each value it clamps.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from decimal import MAX_EMAX, MAX_PREC, MIN_EMIN, ROUND_UP, Context, Decimal

__all__ = [
    "EXACT",
    "QuantityError",
    "exact_sum",
    "parse_quantity",
    "round_up",
    "to_bytes",
    "to_cores",
    "to_count",
]

# Exact decimal arithmetic: no rounding to a precision, no overflow short of the module's limits.
EXACT = Context(prec=MAX_PREC, Emax=MAX_EMAX, Emin=MIN_EMIN)

# parseQuantityString as one pattern: sign, digits, "." and digits, then suffix letters, a sign
# and digits. Each part is greedy and starts with characters the part before cannot take, so the
# match splits a string exactly where the Go scanner does.
_SCAN = re.compile(r"([+-]?)([0-9]*)(?:\.([0-9]*))?([eEinumkKMGTP]*[-+]?[0-9]*)")
_DECIMAL_SI = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
_BINARY_SI = {"Ki": 10, "Mi": 20, "Gi": 30, "Ti": 40, "Pi": 50, "Ei": 60}
_INT64_MAX = 2**63 - 1
# int64Amount's fast path holds at most 18 decimal digits (maxInt64Factors).
_MAX_INT64_DIGITS = 18
_NANO = -9
# Past int64 the exact figure no longer matters, and 1e2000000000 must not become a
# two-billion-digit int: beyond this the integer results saturate (still visibly too big).
_SATURATED = 2**64
# PostgreSQL's numeric holds at most 131072 digits before the point, so a sum's term past that
# is the same to every column (the writer clamps it): it saturates at the first power of ten
# no column can hold, and the sum stays a few hundred kilobytes of digits at worst.
_SUM_DIGITS = 131_072
_SUM_SATURATED = Decimal(1).scaleb(_SUM_DIGITS + 1)
# Sums of saturated terms stay exact (2 of them are 2E+131073, not saturated again).
_SUM_HEADROOM = 20

_FORMAT_WRONG = (
    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
)
_NUMERIC = "unable to parse numeric part of quantity"
_SUFFIX = "unable to parse quantity's suffix"


class QuantityError(ValueError):
    """A string that is not a Kubernetes quantity."""


def _int32(value: int) -> int:
    """Go's int32 arithmetic wraps around; exponents and scales are int32 there."""
    return (value + 2**31) % 2**32 - 2**31


def _interpret(suffix: str) -> tuple[int, int] | None:
    """``(base, exponent)`` of a suffix: decimal SI, binary SI or ``e``/``E`` + an int64."""
    if suffix in _DECIMAL_SI:
        return 10, _DECIMAL_SI[suffix]
    if suffix in _BINARY_SI:
        return 2, _BINARY_SI[suffix]
    if len(suffix) > 1 and suffix[0] in "eE" and re.fullmatch(r"[+-]?[0-9]+", suffix[1:]):
        exponent = int(suffix[1:])
        if -(2**63) <= exponent <= _INT64_MAX:
            return 10, _int32(exponent)
    return None


def round_up(value: Decimal, scale: int = 0) -> Decimal:
    """``value`` rounded away from zero to a multiple of 10^scale, as ``Quantity.RoundUp``
    does (``9.01`` → ``10``, ``-9.01`` → ``-10``); already-exact values are returned as they
    are, so ``1E+2000000000`` is never written out digit by digit."""
    exponent = value.as_tuple().exponent
    if not isinstance(exponent, int) or exponent >= scale:
        return value
    return value.quantize(Decimal(1).scaleb(scale), rounding=ROUND_UP, context=EXACT)


def _parse(text: str) -> Decimal:
    if text == "":
        raise QuantityError(_FORMAT_WRONG)
    match = _SCAN.fullmatch(text)
    if match is None:
        raise QuantityError(f"{_FORMAT_WRONG}: {text[:40]!r}")
    sign, raw_num, raw_denom, suffix = match.groups()
    interpreted = _interpret(suffix)
    if interpreted is None:
        raise QuantityError(f"{_SUFFIX}: {text[:40]!r}")
    base, exponent = interpreted
    denom = raw_denom or ""
    num = raw_num.lstrip("0") or "0"
    negative = sign == "-"
    # Kubernetes' fast path (int64Amount) reads the digits it kept; it is the path that reads a
    # digitless string such as "m" or "Ti" as zero. Its slow path (inf.Dec) needs a digit.
    if base == 10:
        fast = _MAX_INT64_DIGITS - len(num) - len(denom) >= 0
        scale = _int32(exponent - len(denom))
    else:
        fast = bool(not denom and 15 - len(num) - exponent * 3 // 10 - 1 >= 0)
        scale = 0
    if fast and scale >= _NANO:
        unscaled = int(num + denom)
        if base == 2:
            unscaled <<= exponent
        if unscaled <= _INT64_MAX:
            # Exact and at least nano-sized: nothing to round, nothing to cap.
            return Decimal(-unscaled if negative else unscaled).scaleb(scale, context=EXACT)
    if not raw_num and not denom:
        raise QuantityError(f"{_NUMERIC}: {text[:40]!r}")
    magnitude = Decimal(int(raw_num + denom) if raw_num + denom else 0)
    if base == 10:
        magnitude = magnitude.scaleb(-_int32(len(denom) + _int32(-exponent)), context=EXACT)
    else:
        fraction = magnitude.scaleb(-len(denom), context=EXACT)
        magnitude = EXACT.multiply(fraction, Decimal(2**exponent))
    magnitude = round_up(magnitude, _NANO)
    if base == 2 and magnitude > _INT64_MAX:
        magnitude = Decimal(_INT64_MAX)
    if magnitude == 0:
        return Decimal(0)
    # copy_negate: unary minus would round to the default context's 28 digits
    return magnitude.copy_negate() if negative else magnitude


def parse_quantity(text: str | int | float) -> Decimal:
    """The value ``resource.ParseQuantity`` gives ``text`` (``"1.5Gi"`` → ``1610612736``,
    ``"3.001n"`` → ``4E-9``). A JSON number is read as the text it was written as."""
    if isinstance(text, bool):
        raise QuantityError("a boolean is not a quantity")
    if isinstance(text, int):
        return _parse(str(text))
    if isinstance(text, float):
        return _parse(repr(text))
    if not isinstance(text, str):
        raise QuantityError(f"a {type(text).__name__} is not a quantity")
    return _parse(text)


def exact_sum(values: Iterable[Decimal | int]) -> Decimal:
    """The exact sum: ``Decimal`` addition in the default context rounds at 28 digits and raises
    past 10^999999, both of which a sum of hostile quantities reaches.

    Exact up to what a column can hold; a term past that saturates first (see
    ``_SUM_SATURATED``), since adding ``1E+2000000000`` exactly to anything with a smaller
    exponent writes out two billion digits: seconds of one core and gigabytes, for one pod."""
    total = Decimal(0)
    for value in values:
        term = Decimal(value)
        if term.is_finite() and term and term.adjusted() > _SUM_DIGITS + _SUM_HEADROOM:
            term = _SUM_SATURATED if term > 0 else _SUM_SATURATED.copy_negate()
        total = EXACT.add(total, term)
    return total


def _saturated_int(value: Decimal) -> int:
    if value >= _SATURATED:
        return _SATURATED
    if value <= -_SATURATED:
        return -_SATURATED
    return int(value)


def to_cores(text: str | int | float | None) -> Decimal | None:
    """CPU cores as an exact, normalized Decimal (``"250m"`` → ``0.25``); ``None`` stays None."""
    if text is None:
        return None
    normalized = parse_quantity(text).normalize(context=EXACT)
    exponent = normalized.as_tuple().exponent
    # normalize() writes 1000 as 1E+3; a plain 1000 reads better in containers' JSON, but only
    # where the plain form is short (1E+2000000000 stays as it is).
    if isinstance(exponent, int) and 0 < exponent <= 24:
        return normalized.quantize(Decimal(1), context=EXACT)
    return normalized


def to_bytes(text: str | int | float | None, *, saturate: bool = False) -> int | None:
    """Bytes as an integer, rounded up like ``Quantity.Value()`` (``"1.5Ki"`` → 1536,
    ``"1m"`` → 1).

    Past int64 ``Value()`` wraps around; here the default is to refuse (QuantityError), for
    callers that store the figure as it is. ``saturate=True`` is for the mappers, whose rows
    go through the writer's fitting: the exact figure up to ±2^64, then ±2^64, so the writer
    sees it is too big, clamps it and reports the object."""
    if text is None:
        return None
    value = _saturated_int(round_up(parse_quantity(text)))
    if not saturate and not -_INT64_MAX - 1 <= value <= _INT64_MAX:
        raise QuantityError("quantity does not fit in a bigint")
    return value


def to_count(text: str | int | float | None) -> int | None:
    """A count such as ``pods: "110"``, rounded up and saturated like
    ``to_bytes(saturate=True)``: fitting it into an integer column is the writer's job."""
    return to_bytes(text, saturate=True)
