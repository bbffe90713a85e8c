"""Settings fail at start, clearly: each wrong value names its setting and what is expected in
one paragraph, and the command exits 2 without a traceback; an unreachable database is named
the same way, without its password."""

from __future__ import annotations

import pytest

from app.settings import SettingError, Settings
from app.vault import generate_key
from tests.ops.process import fleetgraph, free_port

WRONG = [
    ("FLEETGRAPH_STATEMENT_TIMEOUT_MS", "15s", "whole number of milliseconds"),
    ("FLEETGRAPH_STATEMENT_TIMEOUT_MS", "0", "at least 1"),
    ("FLEETGRAPH_METRICS_INTERVAL", "nan", "number of seconds"),
    ("FLEETGRAPH_POD_RETENTION_DAYS", "-3", "at least 1"),
    ("FLEETGRAPH_QUERY_COST_LIMIT", "lots", "cost units"),
    ("FLEETGRAPH_QUERY_COST_LIMIT_ADMIN", "1e9", "whole number"),
    ("FLEETGRAPH_REQUEST_DEADLINE", "0", "at least 0.1"),
    ("FLEETGRAPH_SYNC", "maybe", "true or false"),
    ("FLEETGRAPH_GRAPHIQL", "enabled", "true or false"),
    ("FLEETGRAPH_LOG_FORMAT", "xml", "json, text"),
    ("FLEETGRAPH_LOG_LEVEL", "verbose", "debug, info"),
    ("FLEETGRAPH_PROMETHEUS", "70000", "[HOST:]PORT"),
    ("FLEETGRAPH_PROMETHEUS", "on", "main"),
    ("FLEETGRAPH_CORS_ORIGINS", "ops.example.com", "origins such as"),
    ("FLEETGRAPH_GRAPHIQL_ASSETS", "/no/such/dir", "a directory that exists"),
    ("DATABASE_URL", "mysql://root:hunter2@db/fleet", "a PostgreSQL URL"),
]


@pytest.mark.parametrize(("name", "value", "expected"), WRONG)
def test_a_wrong_value_names_its_setting_and_what_is_expected(
    name: str, value: str, expected: str
) -> None:
    with pytest.raises(SettingError) as raised:
        Settings.from_env({name: value})
    message = str(raised.value)
    assert raised.value.setting == name and message.startswith(name)
    assert expected in message and "\n" not in message
    assert "hunter2" not in message


def test_right_values_are_parsed() -> None:
    settings = Settings.from_env({
        "FLEETGRAPH_SYNC": "OFF", "FLEETGRAPH_STATEMENT_TIMEOUT_MS": " 2500 ",
        "FLEETGRAPH_LOG_LEVEL": "warning", "FLEETGRAPH_LOG_FORMAT": "JSON",
        "FLEETGRAPH_PROMETHEUS": "127.0.0.1:9100", "FLEETGRAPH_QUERY_COST_LIMIT": "900",
        "FLEETGRAPH_QUERY_COST_LIMIT_ADMIN": "5000",
        "FLEETGRAPH_CORS_ORIGINS": "https://ops.example.com, http://localhost:3000",
    })
    assert settings.sync_enabled is False and settings.statement_timeout_ms == 2500
    assert (settings.log_level, settings.log_format) == ("WARNING", "json")
    assert settings.prometheus and settings.prometheus_listen == ("127.0.0.1", 9100)
    assert settings.query_cost_limits == {"viewer": 900, "operator": 900, "admin": 5000}
    assert settings.cors_origins == ("https://ops.example.com", "http://localhost:3000")
    assert Settings.from_env({"FLEETGRAPH_PROMETHEUS": "9100"}).prometheus_listen == (
        "0.0.0.0", 9100)
    assert Settings.from_env({"FLEETGRAPH_PROMETHEUS": "off"}).prometheus is False
    defaults = Settings.from_env({})
    assert defaults.prometheus and defaults.prometheus_listen is None
    assert defaults.log_format is None and defaults.log_level == "INFO"


@pytest.mark.parametrize("command", [["serve"], ["migrate"], ["cluster", "list"], ["schema"]])
def test_every_command_exits_2_naming_a_wrong_setting(command: list[str]) -> None:
    result = fleetgraph(*command, FLEETGRAPH_STATEMENT_TIMEOUT_MS="fifteen",
                        DATABASE_URL="postgresql://unused/")
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("error: FLEETGRAPH_STATEMENT_TIMEOUT_MS is 'fifteen'")
    assert "Traceback" not in result.stderr and result.stderr.count("\n") == 1


def test_a_bad_price_sheet_is_caught_at_start_not_at_the_first_cost_run() -> None:
    result = fleetgraph("schema", FLEETGRAPH_ONPREM_PRICING="{not json")
    assert result.returncode == 2 and "FLEETGRAPH_ONPREM_PRICING" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("command", [["serve", "--port", "0"], ["migrate"], ["cluster", "list"]])
def test_an_unreachable_database_is_named_without_its_password(command: list[str]) -> None:
    url = f"postgresql://fleet:hunter2@127.0.0.1:{free_port()}/fleetgraph"
    result = fleetgraph(*command, DATABASE_URL=url, BYOK_ENCRYPTION_KEY=generate_key())
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("error: DATABASE_URL: cannot use the database at "
                                    "postgresql://127.0.0.1:")
    assert "connection refused" in result.stderr
    assert "hunter2" not in result.stderr and "Traceback" not in result.stderr


def test_a_misspelt_setting_is_warned_about() -> None:
    result = fleetgraph("schema", FLEETGRAPH_LOG_LEVL="debug")
    assert result.returncode == 0
    assert "FLEETGRAPH_LOG_LEVL is not a FleetGraph setting" in result.stderr
    assert "did you mean FLEETGRAPH_LOG_LEVEL?" in result.stderr
