"""Kubernetes label selectors (``app=web,tier!=db,env in (a,b),!legacy,replicas>2``) turned into
SQL on a jsonb ``labels`` column, so filtering happens in PostgreSQL with the syntax kubectl
takes and the answers a Kubernetes API server would give.

The grammar is ``labels.Parse`` from ``k8s.io/apimachinery``, quirks included (``x in ()`` is
the set holding the empty string, ``x=`` an empty value, ``x>1`` compares integers), with keys
and values checked as ``content.IsLabelKey``/``IsLabelValue`` check them. The layering keeps
kubesim (which must import nothing of ours) from sharing this parser, so kubesim has its own;
both are held to apimachinery's own tables (``tests/fixtures/apimachinery/selector.json``).
Errors name the character where parsing stopped and the reason.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from resolvers.errors import BadUserInput
from resolvers.sql import Params

__all__ = [
    "Requirement",
    "SelectorError",
    "label_selector_sql",
    "make_requirement",
    "parse_label_selector",
]

MAX_SELECTOR_LENGTH = 4096

# selection.Operator values
_SET_OPERATORS = ("in", "notin")
_EXACT_OPERATORS = ("=", "==", "!=")
_INTEGER_OPERATORS = ("gt", "lt")
_BINARY_OPERATORS = ("in", "notin", "=", "==", "!=", "gt", "lt")
_UNARY_OPERATORS = ("exists", "!")

_NAME = re.compile(r"(?:[A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
_SUBDOMAIN = re.compile(r"[a-z0-9](?:[-a-z0-9]*[a-z0-9])?(?:\.[a-z0-9](?:[-a-z0-9]*[a-z0-9])?)*")
_INTEGER = re.compile(r"[+-]?[0-9]+")  # strconv.ParseInt(s, 10, 64), range checked apart
_INT64 = (-(2**63), 2**63 - 1)
_SHAPE = ("alphanumeric characters, '-', '_' or '.', starting and ending with an alphanumeric "
          "character")

# The lexer's alphabet: these symbols stand alone (== and != are one token each), whitespace
# separates, every other run of characters is one word; "in" and "notin" are keywords.
_SYMBOL = re.compile(r"==|!=|[=!(),><]")
_WORD = re.compile(r"[^ \t\r\n=!(),><]+")
_SPACE = frozenset(" \t\r\n")
_OPERATOR_OF = {"=": "=", "==": "==", "!=": "!=", ">": "gt", "<": "lt", "in": "in",
                "notin": "notin"}
END = ""  # the token at the end of the selector


class SelectorError(ValueError):
    """Why a selector was refused, and the character (1-based) where the parser stopped."""

    def __init__(self, position: int, reason: str) -> None:
        super().__init__(f"at character {position}: {reason}")
        self.position = position
        self.reason = reason


@dataclass(frozen=True)
class Requirement:
    key: str
    operator: str  # a selection.Operator: =, ==, !=, in, notin, exists, !, gt, lt
    values: tuple[str, ...] = ()


def _key_problem(key: str) -> str | None:
    """What ``content.IsLabelKey`` rejects: an optional DNS-1123 subdomain prefix of at most
    253 characters and ``/``, then a name of at most 63."""
    prefix, slash, name = key.rpartition("/")
    if "/" in prefix:
        return f"label key {key!r} has more than one '/'"
    if slash and not prefix:
        return f"label key {key!r} has an empty prefix"
    if slash and (len(prefix.encode()) > 253 or not _SUBDOMAIN.fullmatch(prefix)):
        return (f"label key prefix {prefix[:60]!r} is not a DNS subdomain of at most 253 "
                "lowercase alphanumeric characters, '-' or '.'")
    if len(name.encode()) > 63 or not _NAME.fullmatch(name):
        return f"label key name {name[:70]!r} must be 1 to 63 {_SHAPE}"
    return None


def _value_problem(value: str) -> str | None:
    if value and (len(value.encode()) > 63 or not _NAME.fullmatch(value)):
        return f"label value {value[:70]!r} must be empty or at most 63 {_SHAPE}"
    return None


def _integer(text: str) -> int | None:
    if not _INTEGER.fullmatch(text):
        return None
    number = int(text)
    return number if _INT64[0] <= number <= _INT64[1] else None


def make_requirement(key: str, operator: str, values: tuple[str, ...] | list[str]) -> Requirement:
    """``labels.NewRequirement``: raises ValueError saying what is wrong, else the requirement."""
    if problem := _key_problem(key):
        raise ValueError(problem)
    if operator not in _BINARY_OPERATORS + _UNARY_OPERATORS:
        raise ValueError(f"unsupported operator {operator!r}")
    if operator in _SET_OPERATORS and not values:
        raise ValueError(f"'{operator}' needs at least one value")
    if operator in _EXACT_OPERATORS + _INTEGER_OPERATORS and len(values) != 1:
        raise ValueError(f"'{operator}' takes exactly one value")
    if operator in _UNARY_OPERATORS and values:
        raise ValueError("exists and does-not-exist take no values")
    if operator in _INTEGER_OPERATORS and _integer(values[0]) is None:
        raise ValueError(f"'>' and '<' compare integers, and {values[0][:70]!r} is not one")
    for value in values:
        if problem := _value_problem(value):
            raise ValueError(problem)
    return Requirement(key, operator, tuple(values))


@dataclass(frozen=True)
class _Token:
    text: str  # END, a symbol, or a word (keywords included)
    start: int
    word: bool


def _tokens(selector: str) -> list[_Token]:
    # Go's reader returns 0 both at the end and for a NUL byte: a NUL ends the selector.
    text = selector.split("\x00", 1)[0]
    found: list[_Token] = []
    at = 0
    while True:
        while at < len(text) and text[at] in _SPACE:
            at += 1
        if at == len(text):
            found.append(_Token(END, at, False))
            return found
        token = _SYMBOL.match(text, at) or _WORD.match(text, at)
        assert token is not None  # every character is a symbol, a space or part of a word
        found.append(_Token(token.group(), at, token.re is _WORD))
        at = token.end()


class _Reader:
    """Walks the tokens as ``labels.Parser`` does: where a value may stand, ``in`` and
    ``notin`` are words like any other."""

    def __init__(self, selector: str) -> None:
        self._tokens = _tokens(selector)
        self._next = 0

    def peek(self) -> _Token:
        return self._tokens[self._next]

    def take(self) -> _Token:
        self._next += 1
        return self._tokens[self._next - 1]

    @staticmethod
    def error(token: _Token, reason: str) -> SelectorError:
        found = "the end of the selector" if token.text == END else f"'{token.text}'"
        return SelectorError(token.start + 1, f"found {found}, expected {reason}")

    def requirements(self) -> list[Requirement]:
        parsed: list[Requirement] = []
        while self.peek().text != END:
            first = self.peek()
            if not (first.word or first.text == "!"):
                raise self.error(first, "'!', a label key or the end of the selector")
            parsed.append(self.requirement())
            separator = self.take()
            if separator.text == END:
                break
            if separator.text != ",":
                raise self.error(separator, "',' or the end of the selector")
            following = self.peek()
            if not (following.word or following.text == "!"):
                raise self.error(following, "a label key after ','")
        return parsed

    def requirement(self) -> Requirement:
        negated = self.peek().text == "!"
        if negated:
            self.take()
        key = self.take()
        if not key.word:
            raise self.error(key, "a label key")
        if problem := _key_problem(key.text):
            raise SelectorError(key.start + 1, problem)
        if negated:
            return Requirement(key.text, "!")
        if self.peek().text in (END, ","):
            return Requirement(key.text, "exists")
        operator_token = self.take()
        operator = _OPERATOR_OF.get(operator_token.text)
        if operator is None:
            raise self.error(operator_token, "an operator (in, notin, =, ==, !=, >, <)")
        values = self.value_set() if operator in _SET_OPERATORS else self.exact_value(key)
        ordered = sorted(values)
        try:
            return make_requirement(key.text, operator, ordered)
        except ValueError as exc:
            blamed = next((values[v] for v in ordered if _value_problem(v)), key)
            if operator in _INTEGER_OPERATORS:
                blamed = values[ordered[0]]
            raise SelectorError(blamed.start + 1, str(exc)) from None

    def exact_value(self, key: _Token) -> dict[str, _Token]:
        if self.peek().text in (END, ","):
            return {"": key}  # "x=" and "x=,y": the empty value
        value = self.take()
        if not value.word:
            raise self.error(value, "a label value")
        return {value.text: value}

    def value_set(self) -> dict[str, _Token]:
        opening = self.take()
        if opening.text != "(":
            raise self.error(opening, "'('")
        values: dict[str, _Token] = {}
        if self.peek().text == ")":
            values[""] = self.take()  # "()" holds the empty string
            return values
        if not (self.peek().word or self.peek().text == ","):
            raise self.error(self.peek(), "',', ')' or a label value")
        while True:
            token = self.take()
            if token.word:
                values.setdefault(token.text, token)
                if self.peek().text not in (",", ")"):
                    raise self.error(self.peek(), "',' or ')'")
            elif token.text == ",":
                # "(,", ",," and ",)" each stand for the empty string
                if not values or self.peek().text in (",", ")"):
                    values.setdefault("", token)
            else:
                raise self.error(token, "',' or a label value")
            if self.peek().text == ")":
                self.take()
                return values


def parse_label_selector(selector: str, *, field: str = "labelSelector") -> list[Requirement]:
    """The requirements of ``selector`` (ANDed), as ``labels.Parse`` reads it; a selector it
    refuses is a BAD_USER_INPUT naming ``field``, the character and the reason."""
    if len(selector) > MAX_SELECTOR_LENGTH:
        raise BadUserInput(field, f"selector is longer than {MAX_SELECTOR_LENGTH} characters")
    try:
        return _Reader(selector).requirements()
    except SelectorError as exc:
        raise BadUserInput(field, str(exc)) from None


def _clause(req: Requirement, column: str, params: Params) -> str:
    key = f"{params.add(req.key)}::text"
    value = f"({column} ->> {key})"
    if req.operator in ("=", "=="):
        # containment, so the jsonb_path_ops index on cluster labels can answer it
        return f"{column} @> jsonb_build_object({key}, {params.add(req.values[0])}::text)"
    if req.operator == "!=":
        return f"{value} IS DISTINCT FROM {params.add(req.values[0])}::text"
    if req.operator == "in":
        return f"{value} = ANY({params.add(list(req.values))}::text[])"
    if req.operator == "notin":
        return f"NOT COALESCE({value} = ANY({params.add(list(req.values))}::text[]), false)"
    if req.operator == "exists":
        return f"{column} ? {key}"
    if req.operator == "!":
        return f"NOT ({column} ? {key})"
    # gt/lt: Kubernetes reads the label with strconv.ParseInt; a missing key, a value that is
    # not a base-10 integer or one beyond int64 matches neither way. CASE keeps the cast from
    # running on values that are not integers.
    compare = ">" if req.operator == "gt" else "<"
    bound = params.add(int(req.values[0]))
    return (f"CASE WHEN {value} ~ '^[+-]?[0-9]+$' THEN {value}::numeric {compare} {bound}::numeric"
            f" AND {value}::numeric BETWEEN {_INT64[0]} AND {_INT64[1]} ELSE false END")


def label_selector_sql(selector: str, column: str, params: Params, *, field: str) -> list[str]:
    """SQL clauses (ANDed by the caller) matching rows whose ``column`` satisfies ``selector``,
    with Kubernetes' semantics: ``!=`` and ``notin`` also match objects without the key."""
    return [_clause(req, column, params) for req in parse_label_selector(selector, field=field)]
