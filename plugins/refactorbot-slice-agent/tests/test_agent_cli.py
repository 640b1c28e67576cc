from __future__ import annotations

from click.testing import CliRunner
from refactorbot.cli.main import main


def test_commands_registered():
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    assert "chat" in result.output and "demo" in result.output


def test_demo_names_missing_plugins(tmp_path, monkeypatch):
    monkeypatch.setenv("RB_DISABLE_PLUGINS", "refactorbot-slice-session,refactorbot-gateway-litellm")
    result = CliRunner().invoke(main, ["--home", str(tmp_path), "demo"])
    assert result.exit_code == 1
    assert "refactorbot demo needs refactorbot-slice-session" in result.output
    assert "refactorbot-gateway-litellm" in result.output and "pip install refactorbot-slice-session" in result.output
    assert not (tmp_path / "slices").exists()
