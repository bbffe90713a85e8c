"""``schema.graphql`` is what the server serves, so frontend code generation can trust it."""

from __future__ import annotations

from pathlib import Path

from app.settings import Settings
from schema import build_schema

SCHEMA_FILE = Path(__file__).resolve().parents[2] / "schema.graphql"


def test_committed_schema_file_matches_the_served_schema() -> None:
    served = build_schema(Settings()).as_str().strip()
    committed = SCHEMA_FILE.read_text().strip()
    assert committed == served, (
        "schema.graphql is stale: run `.venv/bin/fleetgraph schema > schema.graphql`"
    )
