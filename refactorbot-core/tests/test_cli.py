import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from distfactory import GOOD, make_dist
from refactorbot.cli.commands import parse_payload

TESTS = Path(__file__).parent

COMMANDS = """
import click
from refactorbot import hookimpl

REFACTORBOT_API = 1


@hookimpl
def register_commands(cli):
    @cli.command()
    def hello():
        \"\"\"Say hello.\"\"\"
        click.echo("hello from a plugin")
"""


class Result:
    def __init__(self, done: subprocess.CompletedProcess[str]) -> None:
        self.exit_code = done.returncode
        self.output = done.stdout + done.stderr


class Cli:
    """Run the real ``refactorbot`` command with chosen plugins installed (a folder on PYTHONPATH)."""

    def __init__(self, site: Path, home: Path) -> None:
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("RB_")}
        self.env.update({"PYTHONPATH": os.pathsep.join([str(site), str(TESTS)]), "RB_HOME": str(home)})
        self.env["RB_LOAD_PLUGINS"] = "rb-echo,rb-cmds,rb-other"
        self.env["RB_CACHE_DIR"] = str(home.parent / "cache")  # the command cache stays in the test's folder

    def invoke(self, _main: object, args: list[str]) -> Result:
        command = [sys.executable, "-m", "refactorbot", *args]
        return Result(subprocess.run(command, capture_output=True, text=True, env=self.env, timeout=60))


@pytest.fixture
def runner(tmp_path):
    """The CLI with the echo plugin (``sample_plugins``) installed, on a temporary home."""
    site = tmp_path / "site"
    make_dist(site, "rb-cmds", "rb_cmds", COMMANDS)
    info = site / "rb_echo-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: rb-echo\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[refactorbot]\necho = sample_plugins:echo_plugin\n")
    return Cli(site, tmp_path / "home")


main = None  # the command runs in a subprocess; kept so calls read like click's CliRunner


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
    assert "rb-echo" in listing.output and "ok" in listing.output


def test_plugin_commands_are_added(runner):
    result = runner.invoke(main, ["hello"])
    assert result.output == "hello from a plugin\n"
    assert "hello" in runner.invoke(main, ["--help"]).output


def test_slices_show_lists_operations_with_fields_types_defaults(runner):
    result = runner.invoke(main, ["slices", "show", "echo"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "echo 0.1.0 - Echo text and count events."
    assert lines[1] == "requires: -"
    echo = lines.index("  echo.echo - Return the text repeated.")
    assert lines[echo + 1].split() == ["text", "string", "required", "what", "to", "echo"]
    assert lines[echo + 2].split() == ["times", "integer", "(>=", "1,", "<=", "10)", "default", "1"]
    assert lines[echo + 3].split() == ["returns", "EchoResult"]
    noop = lines.index("  echo.noop - Do nothing.")
    assert lines[noop + 1 : noop + 3] == ["    (no fields)", "    returns null"]
    as_json = json.loads(runner.invoke(main, ["slices", "show", "echo", "--json"]).output)
    assert as_json["slice_id"] == "echo" and {op["name"] for op in as_json["operations"]} >= {"echo", "noop", "ask"}
    assert "Error: unknown slice 'ghost' (installed: echo)" in runner.invoke(main, ["slices", "show", "ghost"]).output
    assert runner.invoke(main, ["slices", "--json"]).exit_code == 0  # the status table is still `slices`


def test_call_op_help_prints_the_operation_fields(runner):
    result = runner.invoke(main, ["call", "echo.echo", "--help"])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[:3] == [
        "Usage: refactorbot call echo.echo [KEY=VALUE]... [--json '{...}']",
        "",
        "echo.echo - Return the text repeated.",
    ]
    assert "times  integer (>= 1, <= 10)  default 1" in result.output
    general = runner.invoke(main, ["call", "-h"])
    assert general.exit_code == 0 and "refactorbot call [OPTIONS] [TARGET] [PAIRS]..." in general.output
    missing = runner.invoke(main, ["call", "echo.nope", "--help"])
    assert missing.exit_code == 1
    assert missing.output.strip() == (
        "Error: slice 'echo' has no operation 'nope' (available: announce, ask, boom, echo, noop, slow)"
    )
    assert runner.invoke(main, ["call"]).exit_code == 2


def test_a_one_shot_call_starts_only_the_target_and_what_it_requires(runner, tmp_path):
    make_dist(tmp_path / "site", "rb-other", "rb_other", GOOD.format(cls="Other", sid="other"))
    assert json.loads(runner.invoke(main, ["call", "other.ping"]).output) == "pong"
    # echo does not require `other`: calling it from echo finds it not started in this process
    result = runner.invoke(main, ["call", "echo.ask", "text=other.ping"])
    assert result.exit_code == 1
    assert result.output.startswith("Error: slice 'other' is not started: this one-shot host starts only echo")


def test_parse_payload_types():
    assert parse_payload(None, ("a=1", "b=true", "c=text", 'd={"x": 1}', "e=")) == {
        "a": 1,
        "b": True,
        "c": "text",
        "d": {"x": 1},
        "e": "",
    }


def test_the_console_script_imports_without_collection_and_runs_commands_collected(tmp_path):
    """``refactorbot._console.main`` imports the CLI with the collector off, freezes what the import
    made and turns the collector back on before the command runs (a server is collected as usual)."""
    probe = (
        "import gc, sys\n"
        "from refactorbot import _console\n"
        "import click\n"  # click is not the CLI: importing it here leaves the CLI's import to main()
        "assert 'refactorbot.cli.main' not in sys.modules\n"
        "sys.argv = ['refactorbot', '--version']\n"
        "try:\n"
        "    _console.main()\n"
        "except SystemExit as exit:\n"
        "    print('enabled', gc.isenabled(), 'frozen', gc.get_freeze_count(), 'code', exit.code)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("RB_")}
    env["RB_HOME"] = str(tmp_path / "home")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    version_line, probe_line = done.stdout.splitlines()
    assert version_line.startswith("refactorbot, version ")
    words = probe_line.split()
    assert words[:2] == ["enabled", "True"] and words[4:] == ["code", "0"]
    assert int(words[3]) > 1000  # the start-up state went to the permanent generation


def test_python_dash_m_runs_the_same_console_script(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("RB_")}
    done = subprocess.run(
        [sys.executable, "-m", "refactorbot", "--version"], capture_output=True, text=True, env=env, timeout=60
    )
    assert done.returncode == 0 and done.stdout.startswith("refactorbot, version "), done.stderr
