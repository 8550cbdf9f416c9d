"""Configuration that names its fix: a generated reference of every ``AGENTEXEC_*`` setting kept
in sync with ``Config``, one line for an invalid value, a warning for a misspelled variable."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from agentexec.config import Config, ConfigError, env_name, reference, unknown_variables

ROOT = Path(__file__).resolve().parents[1]
AGENTEXEC = Path(sys.executable).parent / "agentexec"


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTEXEC_")}
    return {**env, **extra}


def test_reference_page_is_generated_from_config() -> None:
    page = (ROOT / "docs" / "configuration.md").read_text()
    assert page == reference(), "docs/configuration.md is stale: run scripts/gen-config-reference"
    for field, info in Config.model_fields.items():
        assert info.description, f"Config.{field} has no description"
        assert f"| `{env_name(field)}` |" in page


def test_reference_page_is_linked_from_the_readme() -> None:
    assert "docs/configuration.md" in (ROOT / "README.md").read_text()


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("AGENTEXEC_NUM_WORKERS", "abc", "expected a whole number >= 1"),
        ("AGENTEXEC_LEASE_TIMEOUT", "0", "expected a number > 0"),
        ("AGENTEXEC_STRICT_PLUGINS", "maybe", "expected true or false"),
        ("AGENTEXEC_TIMEZONE", "Mars/Base", "expected an IANA timezone name"),
    ],
)
def test_an_invalid_value_exits_with_one_line(
    tmp_path: Path, variable: str, value: str, expected: str
) -> None:
    result = subprocess.run(
        [sys.executable, "-c", "import agentexec as ax\nax.CONF"], cwd=tmp_path,
        env=_env(**{variable: value}),
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"agentexec: {variable}={value!r} is invalid") and expected in lines[0]


def test_the_cli_with_an_invalid_value_prints_one_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [str(AGENTEXEC), "status"], cwd=tmp_path, env=_env(AGENTEXEC_NUM_WORKERS="abc"),
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "agentexec: AGENTEXEC_NUM_WORKERS='abc' is invalid (Input should be a valid integer, "
        "unable to parse string as an integer): expected a whole number >= 1"
    ]
    assert not (tmp_path / "agentexec.db").exists()


def test_config_error_is_catchable_as_value_error() -> None:
    assert issubclass(ConfigError, ValueError) and issubclass(ConfigError, SystemExit)


def test_a_misspelled_variable_warns_once_with_the_closest_setting(tmp_path: Path) -> None:
    code = "import agentexec, agentexec.config, importlib; print(agentexec.CONF.num_workers)"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path,
        env=_env(AGENTEXEC_NUM_WORKER="8", AGENTEXEC_REDIS_ULR="redis://x", AGENTEXEC_TEST_X="1"),
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "4"
    assert sorted(result.stderr.splitlines()) == [
        "agentexec.config:0: ConfigWarning: AGENTEXEC_NUM_WORKER is not an agentexec setting; "
        "did you mean AGENTEXEC_NUM_WORKERS?",
        "agentexec.config:0: ConfigWarning: AGENTEXEC_REDIS_ULR is not an agentexec setting; "
        "did you mean AGENTEXEC_REDIS_URL?",
    ]


def test_unknown_variables_ignores_settings_and_the_test_suites_own() -> None:
    environ = {"AGENTEXEC_QUEUE_NAME": "q", "AGENTEXEC_TEST_REDIS_URL": "x", "AGENTEXEC_ZZZ": "1",
               "PATH": "/bin"}
    assert unknown_variables(environ) == {"AGENTEXEC_ZZZ": None}
