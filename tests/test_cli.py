"""The ``ivr`` command line: every group is reachable, errors are one line, ``history`` dispatches by word."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ivr.cli import build_parser, main

GROUPS = ("serve", "plugins", "db", "history", "customers", "call", "agents", "followups", "sms",
          "complaints", "report", "voices")


def test_python_m_ivr_cli_help_lists_every_command_group() -> None:
    result = subprocess.run([sys.executable, "-m", "ivr.cli", "--help"], capture_output=True, text=True,
                            env=os.environ.copy(), timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    listed = result.stdout.split("{", 1)[1].split("}", 1)[0].split(",")
    assert sorted(listed) == sorted(GROUPS)
    for group in GROUPS:
        assert f"\n    {group} " in result.stdout, group  # each with its help line


def test_a_configuration_error_is_one_line_and_exit_status_2(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plugins", "list", "--config", str(tmp_path / "missing.toml")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ivr: configuration error: ") and err.count("\n") == 1
    assert "missing.toml" in err and "Traceback" not in err


def test_plugins_list_shows_each_loaded_plugin_then_the_disabled_ones(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no ./plugins folder
    config = tmp_path / "ivr.toml"
    config.write_text('[plugins]\ndisable = ["ivr.plugins.customer_directory", "ivr.plugins.diagnostics"]\n',
                      encoding="utf-8")
    assert main(["plugins", "list", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert "ivr.plugins.demo_hotline\n  source: built-in\n" in out
    assert "ivr.plugins.contact_history\n  source: built-in (started by ivr serve)\n" in out
    disabled = out.split("ivr.plugins.customer_directory\n", 1)[1]
    assert disabled.startswith("  disabled by [plugins] disable\n")
    assert "ivr.plugins.diagnostics\n  disabled by [plugins] disable\n" in out
    assert "ivr.plugins.diagnostics\n  source" not in out


def test_history_help_names_the_subject_and_both_commands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(["history", "--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert "{SUBJECT,export,purge}" in out
    assert "ivr history export --since DATE" in out and "ivr history purge --older-than DAYS" in out


@pytest.mark.parametrize(("argv", "prog", "problem"), [
    (["history", "export", "--format", "csv"], "ivr history export", "--since"),
    (["history", "purge", "--older-than", "-1"], "ivr history purge", "is negative"),
    (["history", "+8613800138000", "--limit", "0"], "ivr history [show]", "is not 1 or more"),
    (["history"], "ivr history", "{SUBJECT,export,purge}"),
])
def test_history_arguments_are_checked_by_the_chosen_parser(
        argv: list[str], prog: str, problem: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"usage: {prog} ") and problem in err


def test_history_export_help_is_the_export_parsers(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["history", "export", "--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: ivr history export ") and "--since DATE" in out and "--output FILE" in out
