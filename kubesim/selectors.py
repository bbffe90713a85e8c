"""Label and field selectors, parsed the way kube-apiserver parses them.

Informers and kubectl lean on selectors (``app=web``, ``tier in (a,b)``, ``!canary``,
``spec.nodeName=n1``), and a fake that ignores them makes sync bugs invisible; so they are
parsed strictly and an unknown field selector is a 400, as on a real server.
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


@dataclass(frozen=True, slots=True)
class Requirement:
    """One clause: ``key op values`` where op is =, !=, in, notin, exists, !exists."""

    key: str
    op: str
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        if self.op == "exists":
            return present
        if self.op == "!exists":
            return not present
        if self.op in ("=", "in"):
            return present and labels[self.key] in self.values
        # "!=" and "notin" match objects that lack the key, as in Kubernetes.
        return not present or labels[self.key] not in self.values


_SET_CLAUSE = re.compile(r"^\s*([^\s!=(),]+)\s+(in|notin)\s*\(([^)]*)\)\s*$")
_KEY = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_./]*)?[A-Za-z0-9]$")


def _split_clauses(text: str) -> list[str]:
    """Split on commas that are not inside an ``in (...)`` value list."""
    clauses: list[str] = []
    depth = 0
    current: list[str] = []
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            clauses.append("".join(current))
            current = []
        else:
            current.append(char)
    clauses.append("".join(current))
    return [c for c in (c.strip() for c in clauses) if c]


def _check_key(key: str, selector: str) -> str:
    if not _KEY.match(key):
        raise bad_request(f'unable to parse requirement: invalid label key "{key}" in "{selector}"')
    return key


def parse_label_selector(text: str | None) -> list[Requirement]:
    """Parse ``a=b,c!=d,e in (f,g),h notin (i),j,!k`` into requirements."""
    if not text:
        return []
    requirements: list[Requirement] = []
    for clause in _split_clauses(text):
        set_match = _SET_CLAUSE.match(clause)
        if set_match:
            key, op, raw_values = set_match.groups()
            values = tuple(v.strip() for v in raw_values.split(",") if v.strip())
            requirements.append(Requirement(_check_key(key, text), op, values))
        elif "!=" in clause:
            key, value = clause.split("!=", 1)
            requirements.append(Requirement(_check_key(key.strip(), text), "!=", (value.strip(),)))
        elif "==" in clause or "=" in clause:
            key, value = clause.split("==", 1) if "==" in clause else clause.split("=", 1)
            requirements.append(Requirement(_check_key(key.strip(), text), "=", (value.strip(),)))
        elif clause.startswith("!"):
            requirements.append(Requirement(_check_key(clause[1:].strip(), text), "!exists"))
        else:
            requirements.append(Requirement(_check_key(clause, text), "exists"))
    return requirements


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
    "Requirement",
    "Selector",
    "parse_field_selector",
    "parse_label_selector",
]
