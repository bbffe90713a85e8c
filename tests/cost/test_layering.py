"""The cost engine is a domain package of its own: it may import ``app`` (the database side)
and nothing else of ours, so ``sync`` (the scheduler's host) and ``resolvers`` (the graph's
reads) can both depend on it without an arrow pointing backwards (DESIGN.md, "Layout").

Read from the source with ``ast`` rather than from ``sys.modules``, so an import hidden in a
function body (a lazy import) is caught too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import cost

OURS = {"app", "cost", "kubesim", "resolvers", "schema", "sync", "tests", "bench"}
ALLOWED = {"app", "cost"}


def _imported_top_levels(path: Path) -> set[str]:
    """Top-level package names of every absolute import in ``path``."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_cost_imports_only_app_of_ours() -> None:
    package = Path(cost.__file__).parent
    modules = sorted(package.rglob("*.py"))
    assert len(modules) >= 6  # the engine's modules are really being read
    offending = {
        str(path.relative_to(package.parent)): sorted((_imported_top_levels(path) & OURS)
                                                      - ALLOWED)
        for path in modules
    }
    assert {path: bad for path, bad in offending.items() if bad} == {}


def test_the_check_sees_a_backwards_import(tmp_path: Path) -> None:
    """The checker itself would notice ``cost`` reaching into ``sync`` or ``schema``."""
    module = tmp_path / "m.py"
    module.write_text("import asyncpg\nfrom sync.health import x\n"
                      "def f():\n    import schema.scalars\n")
    assert _imported_top_levels(module) & OURS == {"sync", "schema"}
