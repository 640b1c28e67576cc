"""The install cache: a plugin command loads only its plugin (or only its module), ``plugins list``
reports from the cache or skips the metadata scan, all follow installs and edits, and a damaged
cache never breaks a command.

Every test runs the real ``refactorbot`` in a subprocess, with test distributions written into a
folder on ``PYTHONPATH`` (``distfactory``) and the cache in a temporary ``RB_CACHE_DIR``.
"""

from __future__ import annotations

import compileall
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from distfactory import GOOD, make_dist
from refactorbot import _install_cache

TESTS = Path(__file__).parent

HELLO = """
import click
from refactorbot import hookimpl

REFACTORBOT_API = 1


@hookimpl
def register_commands(cli):
    @cli.command()
    def hello():
        click.echo("{text}")
"""

#: A command defined at the top of its own module: the cache names ``rb_top_cli:greet``.
TOP_CLI = """
import os
from pathlib import Path

import click

Path(os.environ["RB_TEST_IMPORTS"]).open("a").write("rb_top_cli\\n")


@click.command()
def greet():
    click.echo("greetings")
"""

TOP_PLUGIN = """
import os
from pathlib import Path

from refactorbot import hookimpl

Path(os.environ["RB_TEST_IMPORTS"]).open("a").write("rb_top\\n")

REFACTORBOT_API = 1


@hookimpl
def register_commands(cli):
    from rb_top_cli import greet

    cli.add_command(greet)
"""

#: A slice plugin that writes its name to ``$RB_TEST_IMPORTS`` when it is imported.
RECORDED = (
    """
import os
from pathlib import Path

with Path(os.environ["RB_TEST_IMPORTS"]).open("a") as record:
    record.write("{module}\\n")
"""
    + GOOD
)


class Cli:
    """The real command with the plugins of ``site`` installed, a temporary home and cache."""

    def __init__(self, tmp_path: Path) -> None:
        self.site = tmp_path / "site"
        self.cache = tmp_path / "cache"
        self.imports = tmp_path / "imports.txt"
        self.cwd = tmp_path / "cwd"  # sys.path[0] of ``python -m``: a folder nothing else writes to
        self.cwd.mkdir()
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("RB_")}
        self.env.pop("PYTHONDONTWRITEBYTECODE", None)
        self.env.update(
            PYTHONPATH=os.pathsep.join([str(self.site), str(TESTS)]),
            RB_HOME=str(tmp_path / "home"),
            RB_CACHE_DIR=str(self.cache),
            RB_TEST_IMPORTS=str(self.imports),
            RB_LOAD_PLUGINS="rb-cmds,rb-other",  # hermetic: plugins installed next to the core stay out
        )

    def __call__(self, *args: str, python: tuple[str, ...] = (), **env: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, *python, "-m", "refactorbot", *args]
        return subprocess.run(
            command, capture_output=True, text=True, env={**self.env, **env}, cwd=self.cwd, timeout=120
        )

    def imported(self) -> list[str]:
        """Return the recorded plugin imports, and forget them."""
        if not self.imports.exists():
            return []
        names = self.imports.read_text().split()
        self.imports.unlink()
        return names

    def cache_files(self, kind: str = "commands") -> list[Path]:
        return sorted(self.cache.glob(f"{kind}-*.json"))

    def cached_commands(self) -> dict[str, tuple[list[str], str | None]]:
        (path,) = self.cache_files()
        data = json.loads(path.read_text())["data"]
        return {name: (entry["source"], entry["target"]) for name, entry in data.items()}

    def listed(self, **env: str) -> list[tuple[str, str | None, str]]:
        result = self("plugins", "list", "--json", "--all", **env)
        assert result.returncode == 0, result.stderr
        rows = json.loads(result.stdout)  # the plugins installed next to the core are listed too, blocked
        return [(row["name"], row["version"], row["status"]) for row in rows if row["name"].startswith("rb-")]


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    runner = Cli(tmp_path)
    make_dist(runner.site, "rb-cmds", "rb_cmds", HELLO.format(text="hello v1"))
    make_dist(runner.site, "rb-other", "rb_other", RECORDED.format(module="rb_other", cls="Other", sid="other"))
    # byte-compiled now, as an installer does: a first import creating site/__pycache__ would change
    # the folder's mtime, and so the cache's fingerprint, after the first run
    compileall.compile_dir(runner.site, quiet=1)
    # One run with a cache of its own, as a first command after an install does: in a new virtualenv
    # it writes the bytecode of site-packages' top-level modules (a new __pycache__ there changes
    # the folder's mtime once), so the runs the tests count see the installation as it then stays.
    warm = runner("hello", RB_CACHE_DIR=str(tmp_path / "warm-up-cache"))
    assert warm.returncode == 0, warm.stderr
    runner.imported()
    return runner


def test_a_cached_command_loads_only_the_plugin_that_adds_it(cli: Cli) -> None:
    first = cli("hello")
    assert (first.returncode, first.stdout) == (0, "hello v1\n"), first.stderr
    assert cli.imported() == ["rb_other"]  # no cache yet: every plugin was loaded to find the command
    assert cli.cached_commands() == {"hello": (["rb_cmds", "rb_cmds", "rb-cmds"], None)}  # defined in the hook

    again = cli("hello", python=("-X", "importtime"))
    assert (again.returncode, again.stdout) == (0, "hello v1\n")
    assert cli.imported() == []  # the other plugin was not imported
    imported = {line.rsplit("|", 1)[-1].strip() for line in again.stderr.splitlines() if "|" in line}
    assert {"click", "refactorbot.plugins"} <= imported  # what the command needs (-X importtime works)
    assert not imported & {"pydantic", "asyncio", "importlib.metadata", "refactorbot.slice"}, imported


def test_help_lists_every_plugin_command_and_fills_the_cache(cli: Cli) -> None:
    listing = cli("--help")
    assert listing.returncode == 0 and "hello" in listing.stdout
    assert cli.imported() == ["rb_other"]
    assert cli.cached_commands() == {"hello": (["rb_cmds", "rb_cmds", "rb-cmds"], None)}
    assert cli("hello").stdout == "hello v1\n"
    assert cli.imported() == []


def test_the_cache_follows_upgrades_uninstalls_and_installs(cli: Cli) -> None:
    assert cli("hello").stdout == "hello v1\n"
    assert cli.cache_files()

    # an upgrade moves the command to another module; the old module stays importable
    shutil.rmtree(cli.site / "rb_cmds-1.0.dist-info")
    make_dist(cli.site, "rb-cmds", "rb_cmds_v2", HELLO.format(text="hello v2"), version="2.0", ep_name="rb_cmds")
    upgraded = cli("hello")
    assert (upgraded.returncode, upgraded.stdout) == (0, "hello v2\n"), upgraded.stderr
    assert cli.cached_commands() == {"hello": (["rb_cmds", "rb_cmds_v2", "rb-cmds"], None)}

    # uninstalled: the command is gone, though its module could still be imported
    shutil.rmtree(cli.site / "rb_cmds-2.0.dist-info")
    removed = cli("hello")
    assert removed.returncode == 2 and "No such command 'hello'" in removed.stderr
    assert cli.cached_commands() == {}

    # another distribution adds it again
    make_dist(cli.site, "rb-cmds", "rb_cmds_v3", HELLO.format(text="hello v3"), version="3.0", ep_name="rb_cmds")
    assert cli("hello").stdout == "hello v3\n"


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda data: b"\x00{not json", id="garbage"),
        pytest.param(lambda data: json.dumps({**data, "data": {"hello": 5}}).encode(), id="wrong-shape"),
        pytest.param(lambda data: json.dumps({**data, "version": "x"}).encode(), id="other-version"),
        pytest.param(
            lambda data: json.dumps({**data, "data": {"hello": ["rb_other", "rb_other", "rb-other"]}}).encode(),
            id="names-a-plugin-without-the-command",
        ),
        pytest.param(
            lambda data: json.dumps({**data, "data": {"hello": ["gone", "rb_gone", "rb-gone"]}}).encode(),
            id="names-a-module-that-is-gone",
        ),
    ],
)
def test_a_damaged_or_wrong_cache_never_breaks_a_command(cli: Cli, damage) -> None:  # noqa: ANN001
    assert cli("hello").returncode == 0
    (path,) = cli.cache_files()
    path.write_bytes(damage(json.loads(path.read_text())))
    cli.imported()

    result = cli("hello")
    assert (result.returncode, result.stdout, result.stderr) == (0, "hello v1\n", "")
    assert cli.cached_commands() == {"hello": (["rb_cmds", "rb_cmds", "rb-cmds"], None)}  # rewritten by the full scan
    assert cli("hello").stdout == "hello v1\n"


def test_a_plugin_blocked_after_caching_is_not_reached_through_the_cache(cli: Cli) -> None:
    assert cli("hello").returncode == 0
    blocked = cli("hello", RB_DISABLE_PLUGINS="rb-cmds")
    assert blocked.returncode == 2 and "No such command 'hello'" in blocked.stderr
    assert cli("hello").stdout == "hello v1\n"


def test_a_cache_directory_that_cannot_be_written_only_costs_speed(cli: Cli, tmp_path: Path) -> None:
    occupied = tmp_path / "a-file"
    occupied.write_text("")
    for _ in range(2):
        result = cli("hello", RB_CACHE_DIR=str(occupied))
        assert (result.returncode, result.stdout, result.stderr) == (0, "hello v1\n", "")
        assert cli.imported() == ["rb_other"]  # no cache: a full scan each time


def test_the_fingerprint_changes_when_a_path_folder_gains_an_entry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = tmp_path / "site"
    site.mkdir()
    os.utime(site, ns=(1_000_000_000, 1_000_000_000))  # a past time: the next entry surely changes it
    monkeypatch.syspath_prepend(str(site))
    env = {"RB_CACHE_DIR": str(tmp_path / "cache")}
    entry = (("x", "rb_x", "rb-x"), "rb_x.cli:x")
    _install_cache.store_commands({"x": entry}, env, _install_cache.fingerprint())
    assert _install_cache.lookup_command("x", env) == entry
    (site / "rb_y-1.0.dist-info").mkdir()
    assert _install_cache.lookup_command("x", env) is None


def test_a_command_at_the_top_of_a_module_is_imported_without_its_plugin(cli: Cli) -> None:
    make_dist(cli.site, "rb-top", "rb_top", TOP_PLUGIN)
    (cli.site / "rb_top_cli.py").write_text(TOP_CLI)
    compileall.compile_dir(cli.site, quiet=1)
    first = cli("greet", RB_LOAD_PLUGINS="rb-cmds,rb-other,rb-top")
    assert (first.returncode, first.stdout) == (0, "greetings\n"), first.stderr
    assert cli.cached_commands()["greet"] == (["rb_top", "rb_top", "rb-top"], "rb_top_cli:greet")
    cli.imported()

    again = cli("greet", python=("-X", "importtime"), RB_LOAD_PLUGINS="rb-cmds,rb-other,rb-top")
    assert (again.returncode, again.stdout) == (0, "greetings\n"), again.stderr
    assert cli.imported() == ["rb_top_cli"]  # its module only: not the plugin, nor the other plugins
    imported = {line.rsplit("|", 1)[-1].strip() for line in again.stderr.splitlines() if "|" in line}
    assert {"click", "rb_top_cli"} <= imported  # -X importtime works and shows the command's module
    assert not imported & {"refactorbot.plugins", "pluggy"}, imported

    blocked = cli("greet", RB_LOAD_PLUGINS="rb-cmds,rb-other")  # the rule applies to the direct import too
    assert blocked.returncode == 2 and "No such command 'greet'" in blocked.stderr


def imported_by(result: subprocess.CompletedProcess[str]) -> set[str]:
    return {line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines() if "|" in line}


def test_plugins_list_reports_from_the_cache_until_a_plugin_changes(cli: Cli) -> None:
    first = cli("plugins", "list")
    assert first.returncode == 0 and "rb-other" in first.stdout
    assert cli.imported() == ["rb_other"]
    assert cli.cache_files("plugins")

    again = cli("plugins", "list", python=("-X", "importtime"))
    assert (again.returncode, again.stdout) == (0, first.stdout)
    assert cli.imported() == []  # reported from the cache: no plugin imported
    assert not imported_by(again) & {"pluggy", "pydantic", "importlib.metadata", "refactorbot.plugins"}

    module = cli.site / "rb_other.py"  # an edit to a plugin's source (as in an editable install)
    module.write_text(module.read_text().replace("Answer pong.", "Answer pong, edited."))
    os.utime(module, ns=(module.stat().st_mtime_ns + 10**9,) * 2)
    edited = cli("plugins", "list", python=("-X", "importtime"))
    assert (edited.returncode, edited.stdout) == (0, first.stdout)
    assert cli.imported() == ["rb_other"]  # loaded again: the report is refreshed
    assert "importlib.metadata" not in imported_by(edited)  # the entry points still came from the cache
    assert "pydantic" in imported_by(edited)  # the slice plugin itself was loaded (-X importtime works)


def test_plugins_list_follows_the_variables_that_steer_loading(cli: Cli) -> None:
    assert cli.listed() == [("rb-cmds", "1.0", "ok"), ("rb-other", "1.0", "ok")]
    cli.imported()
    narrowed = cli("plugins", "list", "--json", "--all", RB_LOAD_PLUGINS="rb-cmds")
    rows = {row["name"]: row["status"] for row in json.loads(narrowed.stdout)}
    assert (rows["rb-cmds"], rows["rb-other"]) == ("ok", "blocked")
    assert cli.listed() == [("rb-cmds", "1.0", "ok"), ("rb-other", "1.0", "ok")]


def test_a_failing_plugin_is_never_reported_from_the_cache(cli: Cli) -> None:
    assert cli.listed() == [("rb-cmds", "1.0", "ok"), ("rb-other", "1.0", "ok")]
    module = cli.site / "rb_other.py"
    good = module.read_text()
    module.write_text(good + "\nimport os\nif os.environ.get('RB_TEST_BREAK'):\n    raise RuntimeError('broken')\n")
    os.utime(module, ns=(module.stat().st_mtime_ns + 10**9,) * 2)
    assert ("rb-other", "1.0", "failed") in cli.listed(RB_TEST_BREAK="1")
    assert not cli.cache_files("plugins")  # a failure may come from what the cache cannot see
    assert ("rb-other", "1.0", "ok") in cli.listed()  # found again: it loads without the variable
    assert cli.cache_files("plugins")


def test_plugins_list_follows_installs_upgrades_and_uninstalls(cli: Cli) -> None:
    assert [name for name, _, _ in cli.listed()] == ["rb-cmds", "rb-other"]
    make_dist(cli.site, "rb-third", "rb_third", RECORDED.format(module="rb_third", cls="Third", sid="third"))
    assert cli.listed()[2] == ("rb-third", "1.0", "blocked")  # installed (RB_LOAD_PLUGINS keeps it out)
    shutil.rmtree(cli.site / "rb_other-1.0.dist-info")
    make_dist(cli.site, "rb-other", "rb_other", RECORDED.format(module="rb_other", cls="Other", sid="other"), "2.0")
    assert ("rb-other", "2.0", "ok") in cli.listed()
    shutil.rmtree(cli.site / "rb_third-1.0.dist-info")
    assert [name for name, _, _ in cli.listed()] == ["rb-cmds", "rb-other"]


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda data: b"[[", id="garbage"),
        pytest.param(
            lambda data: json.dumps({**data, "data": [["only", "three", "fields"]]}).encode(), id="wrong-shape"
        ),
        pytest.param(lambda data: json.dumps({**data, "data": {"not": "a list"}}).encode(), id="not-a-list"),
    ],
)
def test_a_damaged_entry_point_cache_is_rescanned(cli: Cli, damage) -> None:  # noqa: ANN001
    expected = cli.listed()
    (path,) = cli.cache_files("entry-points")
    path.write_bytes(damage(json.loads(path.read_text())))
    for report in cli.cache_files("plugins"):  # without the report, the plugins are loaded again
        report.unlink()
    assert cli.listed() == expected
    assert [row for row in json.loads(path.read_text())["data"] if row[2].startswith("rb-")] == [
        ["rb_cmds", "rb_cmds", "rb-cmds", "1.0"],
        ["rb_other", "rb_other", "rb-other", "1.0"],
    ]
