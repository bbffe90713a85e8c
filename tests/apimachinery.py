"""apimachinery's own test tables (``tests/fixtures/apimachinery``, Apache-2.0), loaded for the
tests that hold our Kubernetes parsers to them."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

TABLES = Path(__file__).resolve().parent / "fixtures" / "apimachinery"


@functools.cache
def table(name: str) -> dict[str, Any]:
    """One fixture file (``quantity``, ``selector``, ``validation``) without its header."""
    data: dict[str, Any] = json.loads((TABLES / f"{name}.json").read_text(encoding="utf-8"))
    data.pop("_about")
    return data


def case_id(text: str) -> str:
    """A readable pytest id for an input that may be empty, long or full of whitespace."""
    shown = text if len(text) <= 40 else f"{text[:16]}…{text[-8:]}[{len(text)}]"
    return repr(shown)
