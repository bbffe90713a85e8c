"""Kubernetes resource quantities ("250m", "128Mi", "1.5Gi"), read and written back the way
kube-apiserver does.

A real API server decodes every ``resource.Quantity`` and encodes it again, so what a client
reads back is the canonical form, not what was sent: ``1000m`` becomes ``1``, ``0.5`` becomes
``500m``, ``1.5Gi`` becomes ``1536Mi``, ``3.001n`` becomes ``4n``. A fake that echoes the raw
string hides every client bug that only canonical values trigger, so kubesim stores what the
server would (:func:`canonicalize_object`, called by the store on create, update and patch).

kubesim may import nothing of FleetGraph's, so this is its own reader of the grammar;
``sync.quantity`` is the sync engine's. The two are held to the same apimachinery tables
(``tests/fixtures/apimachinery/quantity.json``), which is what keeps them from drifting.
The simulator's arithmetic (summing requests, producing metrics-server style usage such as
``123456n`` and ``12345Ki``) uses the same reader.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator, MutableMapping
from dataclasses import dataclass
from decimal import MAX_EMAX, MAX_PREC, MIN_EMIN, ROUND_UP, Context, Decimal
from enum import StrEnum
from typing import Any

__all__ = [
    "Format",
    "Quantity",
    "QuantityError",
    "canonical",
    "canonicalize_json",
    "canonicalize_object",
    "cpu_nanocores",
    "format_cpu_usage",
    "format_memory_usage",
    "memory_bytes",
    "parse",
    "parse_quantity",
]

_EXACT = Context(prec=MAX_PREC, Emax=MAX_EMAX, Emin=MIN_EMIN)
_INT64_MAX = 2**63 - 1


class Format(StrEnum):
    """``resource.Format``: which family of suffix a quantity is written back with."""

    DECIMAL_EXPONENT = "DecimalExponent"  # 12e6
    BINARY_SI = "BinarySI"  # 12Mi
    DECIMAL_SI = "DecimalSI"  # 12M


_DECIMAL_EXPONENTS = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12,
                      "P": 15, "E": 18}
_DECIMAL_SUFFIXES = {exponent: suffix for suffix, exponent in _DECIMAL_EXPONENTS.items()}
_BINARY_EXPONENTS = {"Ki": 10, "Mi": 20, "Gi": 30, "Ti": 40, "Pi": 50, "Ei": 60}
_BINARY_SUFFIXES = {0: "", **{exponent: suffix for suffix, exponent in _BINARY_EXPONENTS.items()}}

# Sign, digits, "." digits, suffix letters, sign, digits: Go's parseQuantityString, whose
# parts each begin where the previous one's characters end, so greedy matching splits alike.
_SCANNER = re.compile(r"(?P<sign>[+-]?)(?P<num>[0-9]*)(?:\.(?P<denom>[0-9]*))?"
                      r"(?P<suffix>[eEinumkKMGTP]*[-+]?[0-9]*)")
# strings.TrimSpace: what UnmarshalJSON strips around a quoted quantity (unicode.IsSpace).
_GO_SPACE = "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008" \
            "\u2009\u200a\u2028\u2029\u202f\u205f\u3000"

FORMAT_WRONG = (
    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
)
NUMERIC_WRONG = "unable to parse numeric part of quantity"
SUFFIX_WRONG = "unable to parse quantity's suffix"


class QuantityError(ValueError):
    """Not a quantity; the message is the one kube-apiserver gives."""


@dataclass(frozen=True, slots=True)
class Quantity:
    """A parsed quantity: its exact value, its format, and the input string when Go's parser
    keeps it as the serialized form (it does when the input already looks canonical, which is
    why ``+1`` and ``1E3`` come back as sent)."""

    value: Decimal
    format: Format
    kept: str | None = None

    def __str__(self) -> str:
        return self.kept if self.kept is not None else canonical(self.value, self.format)


def _wrap32(value: int) -> int:
    """Exponent and scale arithmetic is int32 in Go, and wraps around."""
    return (value + 2**31) % 2**32 - 2**31


def _suffix(suffix: str) -> tuple[int, int, Format]:
    """``quantitySuffixer.interpret``: (base, exponent, format) of a suffix."""
    if suffix in _DECIMAL_EXPONENTS:
        return 10, _DECIMAL_EXPONENTS[suffix], Format.DECIMAL_SI
    if suffix in _BINARY_EXPONENTS:
        return 2, _BINARY_EXPONENTS[suffix], Format.BINARY_SI
    if len(suffix) > 1 and suffix[0] in "eE" and re.fullmatch(r"[+-]?[0-9]+", suffix[1:]):
        exponent = int(suffix[1:])  # strconv.ParseInt(…, 10, 64), then int32()
        if -(2**63) <= exponent <= _INT64_MAX:
            return 10, _wrap32(exponent), Format.DECIMAL_EXPONENT
    raise QuantityError(SUFFIX_WRONG)


def _kept(fmt: Format, digits: int, shifted: str, exponent: int, scale: int) -> bool:
    """Go reuses the input as the serialized string only on its int64 path, and only when it
    looks canonical by these (approximate) rules."""
    if fmt is Format.BINARY_SI:
        return exponent % 10 == 0 and digits & 0x07 != 0
    return scale % 3 == 0 and not shifted.endswith("000") and shifted[0] != "0"


def parse(text: str) -> Quantity:
    """``resource.ParseQuantity``: the value rounded up to a whole nano, binary values capped
    at 2^63-1, a non-zero binary value below 1 switched to DecimalSI."""
    if text == "":
        raise QuantityError(FORMAT_WRONG)
    if text == "0":
        return Quantity(Decimal(0), Format.DECIMAL_SI, "0")
    found = _SCANNER.fullmatch(text)
    if found is None:
        raise QuantityError(FORMAT_WRONG)
    raw_num, denom = found["num"], found["denom"] or ""
    negative = found["sign"] == "-"
    base, exponent, fmt = _suffix(found["suffix"])
    num = raw_num.lstrip("0") or "0"
    # The int64 path: at most 18 digits (binary: what fits after the shift) and no finer than
    # nano. It is also what reads a digitless "m" or "Ti" as zero.
    if base == 10:
        fits, scale = 18 - len(num) - len(denom) >= 0, _wrap32(exponent - len(denom))
    else:
        fits, scale = not denom and 15 - len(num) - exponent * 3 // 10 - 1 >= 0, 0
    if fits and scale >= -9:
        shifted = num + denom
        digits = int(shifted)
        magnitude = digits << exponent if base == 2 else digits
        if magnitude <= _INT64_MAX:
            value = Decimal(-magnitude if negative else magnitude).scaleb(scale, context=_EXACT)
            kept = text if _kept(fmt, digits, shifted, exponent, scale) else None
            return Quantity(value, fmt, kept)
    # The inf.Dec path: exact, then rounded up to nano and capped.
    if not raw_num + denom:
        raise QuantityError(NUMERIC_WRONG)
    amount = Decimal(int(raw_num + denom))
    if base == 10:
        amount = amount.scaleb(-_wrap32(len(denom) + _wrap32(-exponent)), context=_EXACT)
    else:
        amount = _EXACT.multiply(amount.scaleb(-len(denom), context=_EXACT), Decimal(2**exponent))
    amount = _round_up(amount, -9)
    if fmt is Format.BINARY_SI and amount > _INT64_MAX:
        amount = Decimal(_INT64_MAX)
    if fmt is Format.BINARY_SI and 0 < amount < 1:
        fmt = Format.DECIMAL_SI
    if amount == 0:
        return Quantity(Decimal(0), fmt)
    return Quantity(amount.copy_negate() if negative else amount, fmt)


def _round_up(value: Decimal, scale: int) -> Decimal:
    """Away from zero to a multiple of 10^scale; exact values are left alone (and so never
    expanded to all their digits)."""
    exponent = value.as_tuple().exponent
    if not isinstance(exponent, int) or exponent >= scale:
        return value
    return value.quantize(Decimal(1).scaleb(scale), rounding=ROUND_UP, context=_EXACT)


def canonical(value: Decimal, fmt: Format) -> str:
    """``Quantity.String()`` (``CanonicalizeBytes``): no fractional digits, the largest suffix
    that loses nothing; binary values below 1024 in magnitude, or not whole, are written
    DecimalSI. A DecimalSI value past the ``E`` suffix is written with an exponent, as
    upstream does since kubernetes/kubernetes#140459 (before it, 10^21 came out as "1")."""
    if value == 0:
        return "0"
    if fmt is Format.BINARY_SI:
        whole = _round_up(value, 0)
        if -1024 < value < 1024 or whole != value or whole.copy_abs() >= 2**70:
            fmt = Format.DECIMAL_SI
        else:
            mantissa, power = abs(int(whole)), 0
            while mantissa >= 1024 and mantissa % 1024 == 0:
                mantissa //= 1024
                power += 10
            if power in _BINARY_SUFFIXES:
                return f"{'-' if value < 0 else ''}{mantissa}{_BINARY_SUFFIXES[power]}"
            fmt = Format.DECIMAL_SI  # past Ei: only reachable for values no parse produces
    sign, digits, exponent = value.normalize(context=_EXACT).as_tuple()
    assert isinstance(exponent, int)  # a finite value
    coefficient = int("".join(map(str, digits)))
    shift = exponent % 3
    coefficient, exponent = coefficient * 10**shift, exponent - shift
    if fmt is Format.DECIMAL_SI and exponent in _DECIMAL_SUFFIXES:
        suffix = _DECIMAL_SUFFIXES[exponent]
    else:
        suffix = f"e{exponent}" if exponent else ""
    return f"{'-' if sign else ''}{coefficient}{suffix}"


def _canonical_text(text: str) -> str:
    return str(parse(text.strip(_GO_SPACE)))


# Stored objects repeat the same few quantities ("100m", "128Mi"); short ones are cached.
_canonical_short = functools.lru_cache(maxsize=8192)(_canonical_text)


def canonicalize_json(value: object) -> str:
    """What kube-apiserver sends back for a quantity it received as JSON ``value``: Go's
    ``UnmarshalJSON`` (whitespace trimmed, a number read as its text, null is zero) and then
    ``MarshalJSON``. A JSON number reaches us already decoded, so ``1e3`` is read as 1000.0;
    Go would have kept its text. Raises :class:`QuantityError`."""
    if value is None:
        return "0"
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise QuantityError(FORMAT_WRONG)
    text = value if isinstance(value, str) else repr(value)
    return _canonical_short(text) if len(text) <= 64 else _canonical_text(text)


# Where each stored kind holds quantities: paths of keys, "*" for every item of a list, and
# the last step a ResourceList (a map of resource name → quantity) or, with "=", one quantity.
_POD_SPEC = (
    ("containers", "*", "resources", "limits"),
    ("containers", "*", "resources", "requests"),
    ("initContainers", "*", "resources", "limits"),
    ("initContainers", "*", "resources", "requests"),
    ("ephemeralContainers", "*", "resources", "limits"),
    ("ephemeralContainers", "*", "resources", "requests"),
    ("overhead",),
    ("resources", "limits"),
    ("resources", "requests"),
    ("volumes", "*", "emptyDir", "=sizeLimit"),
    ("volumes", "*", "ephemeral", "volumeClaimTemplate", "spec", "resources", "limits"),
    ("volumes", "*", "ephemeral", "volumeClaimTemplate", "spec", "resources", "requests"),
)
_POD_STATUS = tuple(
    (statuses, "*", *field)
    for statuses in ("containerStatuses", "initContainerStatuses", "ephemeralContainerStatuses")
    for field in (("allocatedResources",), ("resources", "limits"), ("resources", "requests"))
)
QUANTITY_PATHS: dict[str, tuple[tuple[str, ...], ...]] = {
    "Pod": tuple(("spec", *p) for p in _POD_SPEC) + tuple(("status", *p) for p in _POD_STATUS),
    "Deployment": tuple(("spec", "template", "spec", *p) for p in _POD_SPEC),
    "ReplicaSet": tuple(("spec", "template", "spec", *p) for p in _POD_SPEC),
    "Node": (("status", "capacity"), ("status", "allocatable")),
    "ResourceQuota": (("spec", "hard"), ("status", "hard"), ("status", "used")),
    "PersistentVolumeClaim": (
        ("spec", "resources", "requests"), ("spec", "resources", "limits"),
        ("status", "capacity"),
    ),
    "PersistentVolume": (("spec", "capacity"),),
}


_Slot = tuple[MutableMapping[str, Any], str, str]  # holder, key, the field's path for errors


def _slots(node: object, path: tuple[str, ...], where: str) -> Iterator[_Slot]:
    """(mapping, key, field path) for every quantity under ``node`` along ``path``."""
    if not path:
        if isinstance(node, MutableMapping):
            yield from ((node, key, f"{where}[{key}]") for key in list(node))
        return
    step, rest = path[0], path[1:]
    if step == "*":
        for i, item in enumerate(node if isinstance(node, list) else ()):
            yield from _slots(item, rest, f"{where}[{i}]")
    elif step.startswith("="):
        if isinstance(node, MutableMapping) and step[1:] in node:
            yield node, step[1:], f"{where}.{step[1:]}"
    elif isinstance(node, MutableMapping):
        yield from _slots(node.get(step), rest, f"{where}.{step}" if where else step)


def round_up_to_milli(canonical_text: str) -> str:
    """What ``SetDefaults_ResourceList`` does to every value of a ResourceList (requests,
    limits, quota hard and used, node capacity...): ``RoundUp(-3)``, so ``3.001n`` is stored
    as ``1m``. A value already whole to the milli is left as it was (Go keeps its string)."""
    quantity = parse(canonical_text)
    exponent = quantity.value.as_tuple().exponent
    if not isinstance(exponent, int) or exponent >= -3:
        return canonical_text
    return canonical(_round_up(quantity.value, -3), quantity.format)


def canonicalize_object(kind: str, obj: MutableMapping[str, Any]) -> None:
    """Rewrite, in place, every quantity of ``obj`` in the form kube-apiserver stores;
    raises :class:`QuantityError` naming the field when one is not a quantity."""
    for path in QUANTITY_PATHS.get(kind, ()):
        resource_list = not path[-1].startswith("=")
        for holder, key, where in _slots(obj, path, ""):
            try:
                text = canonicalize_json(holder[key])
            except QuantityError as exc:
                raise QuantityError(f"{where}: {exc}") from None
            holder[key] = _milli_short(text) if resource_list else text


_milli_short = functools.lru_cache(maxsize=8192)(round_up_to_milli)


def parse_quantity(value: str | int | float) -> Decimal:
    """The exact value in base units (cores, bytes), as kube-apiserver reads it."""
    if isinstance(value, bool):
        raise QuantityError(FORMAT_WRONG)
    if isinstance(value, str):
        return parse(value.strip(_GO_SPACE)).value
    return parse(repr(value) if isinstance(value, float) else str(value)).value


def _whole(value: Decimal, per_unit: int) -> int:
    """Rounded up to a whole unit; the simulator's arithmetic saturates at int64 (so a planted
    ``1e2000000000`` is not expanded to all its digits)."""
    scaled = _round_up(_EXACT.multiply(value, Decimal(per_unit)), 0)
    return int(max(Decimal(-_INT64_MAX), min(Decimal(_INT64_MAX), scaled)))


@functools.lru_cache(maxsize=4096)
def cpu_nanocores(value: str | int | float) -> int:
    """CPU quantity in nanocores ("250m" -> 250_000_000); exact, since quantities are whole
    nanos."""
    return _whole(parse_quantity(value), 1_000_000_000)


@functools.lru_cache(maxsize=4096)
def memory_bytes(value: str | int | float) -> int:
    """Memory quantity in bytes, rounded up like ``Quantity.Value()`` ("128Mi" -> 134_217_728)."""
    return _whole(parse_quantity(value), 1)


def format_cpu_usage(nanocores: int) -> str:
    """CPU usage as metrics-server writes it: a quantity of nanocores
    (``NewScaledQuantity(n, Nano)``), in canonical form ("123456n", or "2m" when it is whole
    milli)."""
    return canonical(Decimal(max(0, int(nanocores))).scaleb(-9), Format.DECIMAL_SI)


def format_memory_usage(num_bytes: int) -> str:
    """Memory usage as metrics-server writes it: the kubelet's working set, whole 4 KiB pages,
    as a BinarySI quantity in canonical form ("12345Ki", or "96Mi" when it is whole
    mebibytes), as the real one answered in tests/realk8s."""
    return canonical(Decimal(max(0, int(num_bytes)) // 4096 * 4096), Format.BINARY_SI)

