import json

import pytest
import sample_plugins as sp
from click.testing import CliRunner
from refactorbot.cli import main
from refactorbot.cli.commands import parse_payload


@pytest.fixture
def runner(monkeypatch, tmp_path):
    """A CLI with only the echo plugin installed, on a temporary home."""
    from refactorbot.plugins import PluginHost

    def loaded(self, entry_points=None):
        self.register(sp.echo_plugin, name="echo-plugin", version="1.0")

    monkeypatch.setattr(PluginHost, "load_entrypoints", loaded)
    for key in ("RB_HOME", "RB_CONFIG", "RB_LOAD_PLUGINS", "RB_DISABLE_PLUGINS"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("RB_HOME", str(tmp_path / "home"))
    return CliRunner()


def test_call_prints_json(runner):
    result = runner.invoke(main, ["call", "echo.echo", "text=hi", "times=2"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == {"text": "hihi"}
    result = runner.invoke(main, ["call", "echo.echo", "--json", '{"text": "yo"}'])
    assert json.loads(result.output) == {"text": "yo"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["call", "ghost.op"], "Error: unknown slice 'ghost' (installed and enabled: echo)"),
        (
            ["call", "echo.nope"],
            "Error: slice 'echo' has no operation 'nope' (available: announce, ask, boom, echo, noop, slow)",
        ),
        (["call", "echo.echo", "times=3"], "Error: invalid payload for echo.echo: text: Field required"),
        (["call", "echo.echo", "--json", "{bad"], "Error: --json is not valid JSON"),
        (["call", "echo.echo", "--json", "[1]"], "Error: --json must be a JSON object"),
        (["call", "echo.echo", "novalue"], "Error: expected key=value, got 'novalue'"),
        (["call", "echo"], "Error: TARGET must be SLICE.OPERATION, got 'echo'"),
        (["call", "echo.boom"], "Error: echo.boom raised RuntimeError: kaboom"),
    ],
)
def test_bad_input_gives_one_clear_line(runner, args, message):
    result = runner.invoke(main, args)
    assert result.exit_code != 0
    lines = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert len(lines) == 1 and lines[0].startswith(message), result.output
    assert "Traceback" not in result.output


def test_malformed_toml_is_one_line_and_debug_shows_traceback(runner, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    (home / "refactorbot.toml").write_text("[core\nhealth_interval = 1\n")
    result = runner.invoke(main, ["call", "echo.noop"])
    assert result.exit_code == 1
    assert result.output.startswith("Error: ") and "invalid TOML" in result.output
    assert len(result.output.strip().splitlines()) == 1
    debug = runner.invoke(main, ["--debug", "call", "echo.noop"])
    assert debug.exit_code == 1 and "Traceback" in debug.output


def test_unknown_config_key_is_reported(runner, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    (home / "refactorbot.toml").write_text("[core]\nhelth_interval = 1\n")
    result = runner.invoke(main, ["slices"])
    assert result.exit_code == 1
    assert "core.helth_interval: Extra inputs are not permitted" in result.output


def test_slices_table_and_plugins_list(runner):
    result = runner.invoke(main, ["slices"])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[1].split()[:3] == ["echo", "running", "healthy"]
    listing = runner.invoke(main, ["plugins", "list"])
    assert "echo-plugin" in listing.output and "ok" in listing.output


def test_plugin_commands_are_added(monkeypatch, tmp_path):
    import click
    from refactorbot import hookimpl
    from refactorbot.plugins import PluginHost

    class Commands:
        REFACTORBOT_API = 1

        @hookimpl
        def register_commands(self, cli):
            @cli.command()
            def hello():
                """Say hello."""
                click.echo("hello from a plugin")

    monkeypatch.setattr(PluginHost, "load_entrypoints", lambda self, eps=None: self.register(Commands(), name="cmds"))
    monkeypatch.setenv("RB_HOME", str(tmp_path))
    result = CliRunner().invoke(main, ["hello"])
    assert result.output == "hello from a plugin\n"
    main.commands.pop("hello", None)


def test_parse_payload_types():
    assert parse_payload(None, ("a=1", "b=true", "c=text", 'd={"x": 1}', "e=")) == {
        "a": 1,
        "b": True,
        "c": "text",
        "d": {"x": 1},
        "e": "",
    }
