"""`sfe worker` and `sfe churn run` refuse bad starts with a message saying what to do."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from sfe.cli import main


@pytest.fixture
def empty_registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SFE_MODEL_DIR", str(tmp_path / "models"))
    monkeypatch.setenv("SFE_STATE_DIR", str(tmp_path / "state"))
    return tmp_path


def test_a_worker_without_promoted_models_says_how_to_get_them(empty_registry: Path) -> None:
    result = CliRunner().invoke(main, ["worker", "--role", "leads"])
    assert result.exit_code == 2
    assert "needs a promoted 'lead' model" in result.output
    assert "run: sfe train --all" in result.output


def test_an_unknown_role_lists_the_roles(empty_registry: Path) -> None:
    result = CliRunner().invoke(main, ["worker", "--role", "sales"])
    assert result.exit_code == 2
    assert "'leads', 'opportunities', 'onboarding', 'accounts'" in result.output


def test_churn_run_with_a_bad_date_shows_one_that_works(empty_registry: Path) -> None:
    result = CliRunner().invoke(main, ["churn", "run", "--as-of", "yesterday"])
    assert result.exit_code == 2
    assert "sfe churn run --as-of 2026-11-26" in result.output


def test_a_bad_churn_schedule_fails_naming_the_variable(
    empty_registry: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SFE_CHURN_SCHEDULE", "every night")
    result = CliRunner().invoke(main, ["churn", "run"])
    assert result.exit_code == 2
    assert "SFE_CHURN_SCHEDULE" in result.output
