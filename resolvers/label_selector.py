"""Kubernetes label selectors (``app=web,tier!=db,env in (a,b),!legacy``) turned into SQL on a
jsonb ``labels`` column, so filtering happens in PostgreSQL with the same syntax kubectl takes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from resolvers.errors import BadUserInput
from resolvers.sql import Params

_NAME = r"[a-z0-9A-Z](?:[a-z0-9A-Z._-]{0,61}[a-z0-9A-Z])?"
_KEY = rf"(?:[a-z0-9A-Z](?:[a-z0-9A-Z._-]{{0,251}}[a-z0-9A-Z])?/)?{_NAME}"
_VALUE = r"(?:[a-z0-9A-Z](?:[a-z0-9A-Z._-]{0,61}[a-z0-9A-Z])?)?"
_SET = re.compile(rf"^\s*({_KEY})\s+(in|notin)\s+\(([^)]*)\)\s*$")
_BINARY = re.compile(rf"^\s*({_KEY})\s*(==|!=|=)\s*({_VALUE})\s*$")
_EXISTS = re.compile(rf"^\s*(!?)\s*({_KEY})\s*$")
_VALUE_ONLY = re.compile(rf"^{_VALUE}$")


@dataclass(frozen=True)
class Requirement:
    key: str
    operator: str  # "=", "!=", "in", "notin", "exists", "!exists"
    values: tuple[str, ...] = ()


def _split_terms(selector: str) -> list[str]:
    """Split on commas that are not inside a set's parentheses."""
    terms: list[str] = []
    current: list[str] = []
    depth = 0
    for ch in selector:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            terms.append("".join(current))
            current = []
        else:
            current.append(ch)
    terms.append("".join(current))
    return terms


def parse_label_selector(selector: str, *, field: str = "labelSelector") -> list[Requirement]:
    if len(selector) > 4096:
        raise BadUserInput(field, "selector is longer than 4096 characters")
    if not selector.strip():
        return []
    requirements = []
    for term in _split_terms(selector):
        if m := _SET.match(term):
            values = tuple(v.strip() for v in m.group(3).split(",") if v.strip())
            if not values or not all(_VALUE_ONLY.match(v) for v in values):
                raise BadUserInput(field, f"invalid value set in {term.strip()!r}")
            requirements.append(Requirement(m.group(1), m.group(2), values))
        elif m := _BINARY.match(term):
            op = "=" if m.group(2) in ("=", "==") else "!="
            requirements.append(Requirement(m.group(1), op, (m.group(3),)))
        elif m := _EXISTS.match(term):
            requirements.append(Requirement(m.group(2), "!exists" if m.group(1) else "exists"))
        else:
            raise BadUserInput(field, f"cannot parse requirement {term.strip()!r}")
    return requirements


def label_selector_sql(selector: str, column: str, params: Params, *, field: str) -> list[str]:
    """SQL clauses (ANDed by the caller) matching rows whose ``column`` satisfies ``selector``.

    Semantics follow Kubernetes: ``!=`` and ``notin`` also match objects without the key.
    """
    clauses = []
    for req in parse_label_selector(selector, field=field):
        key = params.add(req.key)
        value = f"{column} ->> {key}::text"
        if req.operator == "=":
            pair = f"jsonb_build_object({key}::text, {params.add(req.values[0])}::text)"
            clauses.append(f"{column} @> {pair}")
        elif req.operator == "!=":
            clauses.append(f"{value} IS DISTINCT FROM {params.add(req.values[0])}")
        elif req.operator == "in":
            clauses.append(f"{value} = ANY({params.add(list(req.values))}::text[])")
        elif req.operator == "notin":
            members = f"{value} = ANY({params.add(list(req.values))}::text[])"
            clauses.append(f"NOT COALESCE({members}, false)")
        elif req.operator == "exists":
            clauses.append(f"{column} ? {key}::text")
        else:
            clauses.append(f"NOT ({column} ? {key}::text)")
    return clauses
