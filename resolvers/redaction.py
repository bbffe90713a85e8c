"""Redaction of Helm values: anything that looks like a secret becomes ``"***"``.

Charts put credentials anywhere (``postgresql.auth.password``, ``existingSecret``,
``ingress.tls[0].key``), so the test is on every key at every depth: a key is sensitive when one
of its words (split on case changes, ``_``, ``-`` and ``.``) is a secret-ish word, or it
contains one of the unmistakable stems. A sensitive key hides its whole value, nested or not.

Two shapes hide secrets behind innocent keys, and are handled too: Kubernetes-style
``{name: DB_PASSWORD, value: ...}`` pairs (``env`` lists), where the *name* says what the value
is; and URLs with credentials (``postgres://user:pass@host``), whose user-info is masked.
"""

from __future__ import annotations

import re
from typing import Any

REDACTED = "***"
_STEMS = ("password", "passwd", "secret", "token", "credential", "apikey", "privatekey")
_WORDS = frozenset({"key", "keys", "pwd", "pass", "dsn"})
_WORD_SPLIT = re.compile(r"[_\-.\s]+|(?<=[a-z0-9])(?=[A-Z])")
_URL_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)[^/@\s]+@")


def is_sensitive_key(key: str) -> bool:
    lowered = key.lower()
    if any(stem in lowered for stem in _STEMS):
        return True
    return any(word.lower() in _WORDS for word in _WORD_SPLIT.split(key) if word)


def _named_secret(value: dict[Any, Any]) -> bool:
    """A ``{name: ..., value: ...}`` pair whose name says the value is a secret."""
    name = value.get("name")
    return "value" in value and isinstance(name, str) and is_sensitive_key(name)


def redact(value: Any) -> Any:
    """A copy of ``value`` with every sensitive key's value replaced, at any depth."""
    if isinstance(value, dict):
        hide_value = _named_secret(value)
        return {
            k: REDACTED if is_sensitive_key(str(k)) or (hide_value and k == "value")
            else redact(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [redact(item) for item in value]
    if isinstance(value, str) and "@" in value:
        return _URL_USERINFO.sub(rf"\g<scheme>{REDACTED}@", value)
    return value
