"""The command line: discoverable subcommands, clear errors for bad settings and misuse."""

from __future__ import annotations

from click.testing import CliRunner

from sfe.cli import main


def test_help_lists_the_subcommand_groups() -> None:
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    for group in ("stack", "db", "demo"):
        assert group in result.output


def test_bad_setting_fails_naming_the_variable() -> None:
    result = CliRunner().invoke(main, ["stack", "status"], env={"SFE_KAFKA_BOOTSTRAP": "nonsense"})
    assert result.exit_code == 2
    assert "SFE_KAFKA_BOOTSTRAP" in result.output


def test_misuse_says_what_to_type_instead() -> None:
    result = CliRunner().invoke(main, ["stack", "start"], prog_name="sfe")
    assert result.exit_code == 2
    assert "No such command 'start'" in result.output
    assert "Try 'sfe stack -h' for help" in result.output


def test_demo_offers_duration_rate_and_keep_running() -> None:
    result = CliRunner().invoke(main, ["demo", "--help"])
    assert result.exit_code == 0
    for option in ("--duration", "--rate", "--keep-running", "--report"):
        assert option in result.output
