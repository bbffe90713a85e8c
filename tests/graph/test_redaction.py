"""Redaction rules for Helm values beyond key names: env-style pairs and URL credentials."""

from __future__ import annotations

from resolvers.redaction import REDACTED, redact


def test_env_pairs_hide_the_value_when_the_name_says_secret() -> None:
    values = {"env": [{"name": "DB_PASSWORD", "value": "s3cr3t"},
                      {"name": "API_TOKEN", "value": "t0k"},
                      {"name": "PORT", "value": "5432"}]}
    assert redact(values) == {"env": [{"name": "DB_PASSWORD", "value": REDACTED},
                                      {"name": "API_TOKEN", "value": REDACTED},
                                      {"name": "PORT", "value": "5432"}]}


def test_url_credentials_are_masked_but_the_rest_of_the_url_stays() -> None:
    values = {"database": {"url": "postgres://app:hunter2@db.internal:5432/orders"},
              "mirrors": ["https://user:pw@mirror.example/charts", "https://plain.example/x"],
              "contact": "ops@example.com"}
    assert redact(values) == {
        "database": {"url": f"postgres://{REDACTED}@db.internal:5432/orders"},
        "mirrors": [f"https://{REDACTED}@mirror.example/charts", "https://plain.example/x"],
        "contact": "ops@example.com",
    }
