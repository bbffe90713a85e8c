"""Label and field selectors, parsed the way kube-apiserver parses them.

Informers and kubectl lean on selectors (``app=web``, ``tier in (a,b)``, ``!canary``,
``x>1``, ``spec.nodeName=n1``), and a fake that ignores them makes sync bugs invisible; so they
are parsed strictly and an unknown field selector is a 400, as on a real server.

Label selectors follow ``k8s.io/apimachinery/pkg/labels`` token for token (its lexer, its
parser, ``NewRequirement``'s checks and ``content.IsLabelKey``/``IsLabelValue``), quirks
included: ``x in ()`` is the set holding the empty string, ``x=`` means an empty value, and
``x=a||y=b`` is one requirement whose value ``a||y`` is invalid. kubesim imports nothing of
FleetGraph's, so this is its own copy of the grammar; ``resolvers.label_selector`` compiles the
same grammar to SQL, and both are held to apimachinery's tables
(``tests/fixtures/apimachinery/selector.json``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from kubesim.errors import ApiError, bad_request

FIELD_PATHS: dict[str, Callable[[Mapping[str, Any]], str]] = {
    "metadata.name": lambda o: str(o.get("metadata", {}).get("name", "")),
    "metadata.namespace": lambda o: str(o.get("metadata", {}).get("namespace", "")),
    "spec.nodeName": lambda o: str((o.get("spec") or {}).get("nodeName", "")),
    "status.phase": lambda o: str((o.get("status") or {}).get("phase", "")),
}


# --- label selectors: k8s.io/apimachinery/pkg/labels.Parse ---------------------------------

# selection.Operator values.
EQUALS, DOUBLE_EQUALS, NOT_EQUALS = "=", "==", "!="
IN, NOT_IN, EXISTS, DOES_NOT_EXIST = "in", "notin", "exists", "!"
GREATER_THAN, LESS_THAN = "gt", "lt"
_BINARY_OPERATORS = (IN, NOT_IN, EQUALS, DOUBLE_EQUALS, NOT_EQUALS, GREATER_THAN, LESS_THAN)
_OPERATORS = (*_BINARY_OPERATORS, EXISTS, DOES_NOT_EXIST)

_LABEL_NAME = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
_DNS1123_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_GO_INT = re.compile(r"[+-]?[0-9]+")
_NAME_RULE = ("must consist of alphanumeric characters, '-', '_' or '.', and must start and end "
              "with an alphanumeric character")


def label_key_errors(key: str) -> list[str]:
    """``content.IsLabelKey``: an optional DNS-1123 subdomain prefix (at most 253 lowercase
    characters) and ``/``, then a name of at most 63 characters."""
    errs: list[str] = []
    parts = key.split("/")
    if len(parts) > 2:
        return [f"a valid label key {_NAME_RULE}, with an optional DNS subdomain prefix and '/'"]
    name = parts[-1]
    if len(parts) == 2:
        prefix = parts[0]
        if not prefix:
            errs.append("prefix part must be non-empty")
        else:
            if len(prefix.encode()) > 253:
                errs.append("prefix part must be no more than 253 bytes")
            if not _DNS1123_SUBDOMAIN.fullmatch(prefix):
                errs.append("prefix part a lowercase RFC 1123 subdomain must consist of lower case "
                            "alphanumeric characters, '-' or '.', and must start and end with an "
                            "alphanumeric character")
    if not name:
        errs.append("name part must be non-empty")
    elif len(name.encode()) > 63:
        errs.append("name part must be no more than 63 bytes")
    if not _LABEL_NAME.fullmatch(name):
        errs.append(f"name part {_NAME_RULE}")
    return errs


def label_value_errors(value: str) -> list[str]:
    """``content.IsLabelValue``: empty, or at most 63 characters shaped like a key's name."""
    errs: list[str] = []
    if len(value.encode()) > 63:
        errs.append("must be no more than 63 bytes")
    if value and not _LABEL_NAME.fullmatch(value):
        errs.append(f"a valid label must be an empty string or {_NAME_RULE}")
    return errs


def _go_int(text: str) -> int | None:
    """``strconv.ParseInt(text, 10, 64)``, or None where it fails."""
    if not _GO_INT.fullmatch(text):
        return None
    number = int(text)
    return number if -(2**63) <= number < 2**63 else None


@dataclass(frozen=True, slots=True)
class Requirement:
    """One clause of a label selector: ``key operator values`` (values sorted, as Go's set)."""

    key: str
    op: str
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        """``Requirement.Matches``: ``!=`` and ``notin`` match objects without the key; ``gt``
        and ``lt`` compare integers and match nothing whose value is not one."""
        if self.op == EXISTS:
            return self.key in labels
        if self.op == DOES_NOT_EXIST:
            return self.key not in labels
        if self.key not in labels:
            return self.op in (NOT_EQUALS, NOT_IN)
        value = labels[self.key]
        if self.op in (IN, EQUALS, DOUBLE_EQUALS):
            return value in self.values
        if self.op in (NOT_IN, NOT_EQUALS):
            return value not in self.values
        actual, wanted = _go_int(str(value)), _go_int(self.values[0])
        if actual is None or wanted is None:
            return False
        return actual > wanted if self.op == GREATER_THAN else actual < wanted


class RequirementError(ValueError):
    """``NewRequirement`` refused: ``field`` is ``key``, ``values``, ``values[i]`` or
    ``operator``."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


def new_requirement(key: str, op: str, values: list[str] | tuple[str, ...]) -> Requirement:
    """``labels.NewRequirement``: the key, the operator's value count, integers for gt/lt and
    every value are checked; the first failure is raised."""
    if errs := label_key_errors(key):
        raise RequirementError("key", f'Invalid value: "{key}": {"; ".join(errs)}')
    count = len(values)
    if op in (IN, NOT_IN) and count == 0:
        raise RequirementError("values", "for 'in', 'notin' operators, values set can't be empty")
    if op in (EQUALS, DOUBLE_EQUALS, NOT_EQUALS) and count != 1:
        raise RequirementError("values", "exact-match compatibility requires one single value")
    if op in (EXISTS, DOES_NOT_EXIST) and count:
        raise RequirementError("values", "values set must be empty for exists and does not exist")
    if op in (GREATER_THAN, LESS_THAN):
        if count != 1:
            raise RequirementError(
                "values", "for 'Gt', 'Lt' operators, exactly one value is required"
            )
        if _go_int(values[0]) is None:
            raise RequirementError(
                "values[0]", "for 'Gt', 'Lt' operators, the value must be an integer"
            )
    if op not in _OPERATORS:
        raise RequirementError(
            "operator", f'Unsupported value: "{op}": supported values: {", ".join(_OPERATORS)}'
        )
    for i, value in enumerate(values):
        if errs := label_value_errors(value):
            raise RequirementError(f"values[{i}][{key}]",
                                   f'Invalid value: "{value}": {"; ".join(errs)}')
    return Requirement(key, op, tuple(values))


class LabelSelectorError(ValueError):
    """A label selector ``labels.Parse`` refuses: the Go message, plus the character (1-based)
    where the parser stopped."""

    def __init__(self, position: int, reason: str) -> None:
        super().__init__(f"{reason} (at character {position})")
        self.position = position
        self.reason = reason


_END, _IDENTIFIER, _KEYWORDS = "end of string", "identifier", {"in": IN, "notin": NOT_IN}
_SYMBOLS = {"==": DOUBLE_EQUALS, "!=": NOT_EQUALS, "=": EQUALS, "!": DOES_NOT_EXIST,
            ">": GREATER_THAN, "<": LESS_THAN, "(": "(", ")": ")", ",": ","}
_SPECIAL = frozenset("=!(),><")
_WHITESPACE = frozenset(" \t\r\n")


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str  # _END, _IDENTIFIER, a keyword operator (in, notin) or a symbol's _SYMBOLS value
    text: str
    start: int


def _lex(selector: str) -> list[_Token]:
    """The Lexer: whitespace separates, ``=!(),><`` are symbols (the longest of ``==``/``!=``
    wins), anything else runs into an identifier. Go's reader returns 0 at the end of the
    string, so a NUL ends the selector there."""
    text = selector.split("\x00", 1)[0]
    tokens: list[_Token] = []
    i = 0
    while True:
        while i < len(text) and text[i] in _WHITESPACE:
            i += 1
        if i >= len(text):
            tokens.append(_Token(_END, "", i))
            return tokens
        if text[i] in _SPECIAL:
            symbol = text[i : i + 2] if text[i : i + 2] in ("==", "!=") else text[i]
            tokens.append(_Token(_SYMBOLS[symbol], symbol, i))
            i += len(symbol)
            continue
        start = i
        while i < len(text) and text[i] not in _SPECIAL and text[i] not in _WHITESPACE:
            i += 1
        word = text[start:i]
        tokens.append(_Token(_KEYWORDS.get(word, _IDENTIFIER), word, start))


class _Parser:
    """``labels.Parser``, one method per Go method: where a value may stand, ``in`` and
    ``notin`` are plain identifiers."""

    def __init__(self, selector: str) -> None:
        self.tokens = _lex(selector)
        self.position = 0

    def _kind(self, token: _Token, values: bool) -> str:
        return _IDENTIFIER if values and token.kind in (IN, NOT_IN) else token.kind

    def lookahead(self, *, values: bool = True) -> tuple[str, _Token]:
        token = self.tokens[self.position]
        return self._kind(token, values), token

    def consume(self, *, values: bool = True) -> tuple[str, _Token]:
        kind, token = self.lookahead(values=values)
        self.position += 1
        return kind, token

    def fail(self, token: _Token, reason: str, *, requirement: bool = False) -> LabelSelectorError:
        prefix = "unable to parse requirement: " if requirement else ""
        return LabelSelectorError(token.start + 1, prefix + reason)

    def parse(self) -> list[Requirement]:
        requirements: list[Requirement] = []
        while True:
            kind, token = self.lookahead()
            if kind == _END:
                return requirements
            if kind not in (_IDENTIFIER, DOES_NOT_EXIST):
                raise self.fail(token, f"found '{token.text}', expected: !, identifier, or "
                                       "'end of string'")
            requirements.append(self.requirement())
            kind, token = self.consume()
            if kind == _END:
                return requirements
            if kind != ",":
                raise self.fail(token, f"found '{token.text}', expected: ',' or 'end of string'")
            kind, token = self.lookahead()
            if kind not in (_IDENTIFIER, DOES_NOT_EXIST):
                raise self.fail(token, f"found '{token.text}', expected: identifier after ','")

    def requirement(self) -> Requirement:
        key_token, op = self.key_and_inferred_operator()
        values: dict[str, _Token] = {}
        if op not in (EXISTS, DOES_NOT_EXIST):
            op = self.operator()
            values = self.value_set() if op in (IN, NOT_IN) else self.exact_value(key_token)
        ordered = sorted(values)
        try:
            return new_requirement(key_token.text, op, ordered)
        except RequirementError as exc:
            at = key_token
            if exc.field.startswith("values["):
                at = values[ordered[int(exc.field[7 : exc.field.index("]")])]]
            raise self.fail(at, str(exc), requirement=True) from None

    def key_and_inferred_operator(self) -> tuple[_Token, str]:
        op = ""
        kind, token = self.consume()
        if kind == DOES_NOT_EXIST:
            op = DOES_NOT_EXIST
            kind, token = self.consume()
        if kind != _IDENTIFIER:
            raise self.fail(token, f"found '{token.text}', expected: identifier", requirement=True)
        if errs := label_key_errors(token.text):
            raise self.fail(token, f'invalid label key "{token.text}": {"; ".join(errs)}',
                            requirement=True)
        if self.lookahead()[0] in (_END, ",") and op != DOES_NOT_EXIST:
            op = EXISTS
        return token, op

    def operator(self) -> str:
        kind, token = self.consume(values=False)
        if kind in _BINARY_OPERATORS:
            return kind
        raise self.fail(token, f"found '{token.text}', expected: {', '.join(_BINARY_OPERATORS)}",
                        requirement=True)

    def value_set(self) -> dict[str, _Token]:
        kind, token = self.consume()
        if kind != "(":
            raise self.fail(token, f"found '{token.text}' expected: '('", requirement=True)
        kind, token = self.lookahead()
        if kind == ")":  # "()" is the set holding the empty string
            self.consume()
            return {"": token}
        if kind not in (_IDENTIFIER, ","):
            raise self.fail(token, f"found '{token.text}', expected: ',', ')' or identifier",
                            requirement=True)
        values = self.identifiers()
        kind, closing = self.consume()
        if kind != ")":
            raise self.fail(closing, f"found '{token.text}', expected: ')'", requirement=True)
        return values

    def identifiers(self) -> dict[str, _Token]:
        values: dict[str, _Token] = {}
        while True:
            kind, token = self.consume()
            if kind == _IDENTIFIER:
                values.setdefault(token.text, token)
                following, after = self.lookahead()
                if following == ")":
                    return values
                if following != ",":
                    raise self.fail(after, f"found '{after.text}', expected: ',' or ')'",
                                    requirement=True)
            elif kind == ",":  # "(,", ",," and ",)" each stand for the empty string
                following, _ = self.lookahead()
                if not values or following in (")", ","):
                    values.setdefault("", token)
                if following == ")":
                    return values
            else:
                raise self.fail(token, f"found '{token.text}', expected: ',', or identifier",
                                requirement=True)

    def exact_value(self, key: _Token) -> dict[str, _Token]:
        kind, token = self.lookahead()
        if kind in (_END, ","):
            return {"": key}
        kind, token = self.consume()
        if kind == _IDENTIFIER:
            return {token.text: token}
        raise self.fail(token, f"found '{token.text}', expected: identifier", requirement=True)


def parse_label_selector(text: str | None) -> list[Requirement]:
    """``labels.Parse``: the requirements of ``text`` sorted by key; a malformed selector is a
    400, as on kube-apiserver (``unable to parse requirement: …``)."""
    if not text:
        return []
    try:
        requirements = _Parser(text).parse()
    except LabelSelectorError as exc:
        raise bad_request(str(exc)) from None
    return sorted(requirements, key=lambda r: r.key)


def _split_clauses(text: str) -> list[str]:
    """Split a field selector on commas."""
    return [c for c in (c.strip() for c in text.split(",")) if c]


@dataclass(frozen=True, slots=True)
class FieldRequirement:
    path: str
    op: str  # "=" or "!="
    value: str

    def matches(self, obj: Mapping[str, Any]) -> bool:
        actual = FIELD_PATHS[self.path](obj)
        return (actual == self.value) if self.op == "=" else (actual != self.value)


def parse_field_selector(text: str | None, *, kind: str = "") -> list[FieldRequirement]:
    """Parse ``metadata.name=x,spec.nodeName!=y``; unsupported paths are a 400."""
    if not text:
        return []
    requirements: list[FieldRequirement] = []
    for clause in _split_clauses(text):
        if "!=" in clause:
            path, value = clause.split("!=", 1)
            op = "!="
        elif "==" in clause:
            path, value = clause.split("==", 1)
            op = "="
        elif "=" in clause:
            path, value = clause.split("=", 1)
            op = "="
        else:
            raise bad_request(f"invalid selector: '{text}'; can't understand '{clause}'")
        path = path.strip()
        if path not in FIELD_PATHS:
            raise bad_request(
                f'"{path}" is not a known field selector: only "metadata.name", '
                f'"metadata.namespace", "spec.nodeName", "status.phase"'
                + (f" (kind {kind})" if kind else "")
            )
        requirements.append(FieldRequirement(path, op, value.strip()))
    return requirements


@dataclass(frozen=True, slots=True)
class Selector:
    """A label selector plus a field selector, applied together to one object."""

    labels: tuple[Requirement, ...] = ()
    fields: tuple[FieldRequirement, ...] = ()

    @classmethod
    def parse(
        cls, *, label_selector: str | None = None, field_selector: str | None = None
    ) -> Selector:
        return cls(
            tuple(parse_label_selector(label_selector)),
            tuple(parse_field_selector(field_selector)),
        )

    @property
    def empty(self) -> bool:
        return not self.labels and not self.fields

    def matches(self, obj: Mapping[str, Any]) -> bool:
        labels = obj.get("metadata", {}).get("labels") or {}
        return all(r.matches(labels) for r in self.labels) and all(
            f.matches(obj) for f in self.fields
        )


__all__ = [
    "ApiError",
    "FieldRequirement",
    "LabelSelectorError",
    "Requirement",
    "RequirementError",
    "Selector",
    "label_key_errors",
    "label_value_errors",
    "new_requirement",
    "parse_field_selector",
    "parse_label_selector",
]
