"""Refused input values: graphql-core's explanation, without the value it refused.

graphql-core explains a refused variable well — which variable, where inside it, why, and
which enum value or field was probably meant — but it also repeats the value, and a variable
can hold a credential (the token in ``registerCluster``'s kubeconfig). Its errors also carry
the inner error as ``original_error``, which is what made them look like server faults.

So the message is rebuilt from its parts: the variable's name (from the definition node), the
path into the value (the text between graphql-core's fixed prefix and the inner reason), and
the reason with every representation of the refused value cut out. Names from the schema —
types, fields, enum values, "Did you mean" suggestions — stay, they are not the caller's data.
If a reason would still repeat part of the value, it is replaced by a plain one.

The same holds for values written into the document itself (literals) and for syntax errors,
which quote the string token they stopped at: ``refused_literal`` and ``refused_syntax`` cut
those out too, so a token pasted into the wrong argument is not repeated back or logged.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

from graphql import GraphQLError, GraphQLSyntaxError, ValueNode, VariableDefinitionNode, print_ast
from graphql.pyutils import Undefined, inspect
from graphql.utilities import value_from_ast_untyped

# graphql-core's ``print_path_list``: nothing, or " at " and steps such as ``.input[0].name``.
_PATH = re.compile(r"(?: at (?:\.[_A-Za-z][_0-9A-Za-z]*|\[[0-9]+\])+)?")
_PATH_STEP = re.compile(r"\.([_A-Za-z][_0-9A-Za-z]*)|\[([0-9]+)\]")
_VALUE = "\x00"  # stands for the cut-out value while the sentence around it is tidied
# Where graphql-core's reasons put the value, in the order they are tidied:
_TIDY = (
    (re.compile(f"[,;] found: {_VALUE}\\.$"), "."),  # "…to be an object, found: {…}."
    (re.compile(f" Found: {_VALUE}\\.$"), ""),  # "…Did you mean 'kubeconfig'? Found: {…}."
    (re.compile(f", found {_VALUE}(?=[.;])"), ""),  # "Expected value of type 'X', found 5."
    (re.compile(r", but encountered error '.*$", re.S), "."),  # a scalar's own exception text
    (re.compile(f": {_VALUE}(\\.?)$"), r"\1"),  # "Int cannot represent non-integer value: 'x'"
    (re.compile(f" ?{_VALUE}"), ""),  # "Value 'RUNNIN' does not exist in 'PodPhase' enum."
)
_PLAIN_REASON = "the value is not valid here."
_NOWHERE = object()
_WORD = "0-9A-Za-z_"


def refused_variable(
    error: GraphQLError, variables: Mapping[str, Any] | None
) -> GraphQLError | None:
    """The value-free twin of a variable coercion error, or None if ``error`` is not one."""
    node = error.nodes[0] if error.nodes else None
    inner = error.original_error
    if not isinstance(node, VariableDefinitionNode) or not isinstance(inner, GraphQLError):
        return None
    name = node.variable.name.value
    prefix = f"Variable '${name}' has invalid value"
    suffix = f": {inner.message}"
    path = error.message[len(prefix):len(error.message) - len(suffix)]
    shaped = error.message.startswith(prefix) and error.message.endswith(suffix)
    if not shaped or not _PATH.fullmatch(path):
        return GraphQLError(f"{prefix}: {_PLAIN_REASON}", nodes=error.nodes)
    value = _at(variables.get(name, Undefined) if variables else Undefined, path)
    reason = _PLAIN_REASON if value is _NOWHERE else reason_without_value(inner.message, value)
    return GraphQLError(f"{prefix}{path}: {reason}", nodes=error.nodes)


def refused_literal(error: GraphQLError) -> str:
    """The message of a validation error about a literal in the document, without the literal
    (graphql-core prints it with ``print_ast`` and the scalar repeats it with ``inspect``)."""
    node = error.nodes[0] if error.nodes else None
    if not isinstance(node, ValueNode):
        return error.message
    return reason_without_value(error.message, value_from_ast_untyped(node),
                                printed=print_ast(node))


# A syntax error ends with the token it stopped at; a string token's description quotes it.
_STRING_TOKEN = re.compile(r"\b(String|BlockString) .*\.$", re.S)


def refused_syntax(error: GraphQLError) -> str:
    """A syntax error's message, naming a string token by its kind only."""
    if not isinstance(error, GraphQLSyntaxError):
        return error.message
    return _STRING_TOKEN.sub(r"\1.", error.message)


def reason_without_value(reason: str, value: Any, *, printed: str | None = None) -> str:
    """``reason`` with ``value`` cut out (and ``printed``, the value as written in the
    document). Nothing to cut when nothing was given (``Undefined``) or null was ("…not to be
    None." names no data)."""
    if value is Undefined or value is None:
        return reason
    shown_forms = _representations(value) | ({printed} if printed else set())
    for shown in sorted(shown_forms, key=len, reverse=True):
        reason = re.sub(f"(?<![{_WORD}.]){re.escape(shown)}(?![{_WORD}])", _VALUE, reason)
    for pattern, replacement in _TIDY:
        reason = pattern.sub(replacement, reason)
    return _PLAIN_REASON if _repeats(reason, value) else reason


def _at(value: Any, path: str) -> Any:
    """The part of ``value`` that ``path`` (``.field[0].other``) points at, or ``_NOWHERE``
    if the path does not lead into it (then there is no telling what to cut, so nothing of
    the reason is kept)."""
    for field, index in _PATH_STEP.findall(path):
        if field and isinstance(value, Mapping) and field in value:
            value = value[field]
        elif index and isinstance(value, list) and int(index) < len(value):
            value = value[int(index)]
        else:
            return _NOWHERE
    return value


def _representations(value: Any) -> set[str]:
    """How graphql-core and the scalars print a value: ``inspect`` (truncated the same way),
    ``repr``, and for strings the bare-quoted forms enums and scalars use."""
    shown = {inspect(value), repr(value)}
    if isinstance(value, str):
        shown |= {f"'{value}'", f'"{value}"'}
    return {s for s in shown if s}


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def _repeats(message: str, value: Any) -> bool:
    """Whether ``message`` still shows a string of ``value``, whole or as the head or tail
    ``inspect`` keeps of a long one. Whole words only, so "RUNNIN" is not found in the
    suggestion "RUNNING"."""
    for text in _strings(value):
        if len(text) < 4:
            continue
        probes = [(text, True, True)]
        if len(text) > 8:
            probes += [(text[:8], True, False), (text[-8:], False, True)]
        for probe, left, right in probes:
            pattern = (f"(?<![{_WORD}])" if left else "") + re.escape(probe) + (
                f"(?![{_WORD}])" if right else "")
            if re.search(pattern, message):
                return True
    return False
