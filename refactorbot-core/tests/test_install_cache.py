"""The install cache: a plugin command loads only its plugin, ``plugins list`` skips the metadata scan,
both follow installs, and a damaged cache never breaks a command.

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

    def cached_commands(self) -> dict[str, list[str]]:
        (path,) = self.cache_files()
        commands: dict[str, list[str]] = json.loads(path.read_text())["data"]
        return commands

    def listed(self) -> list[tuple[str, str | None, str]]:
        result = self("plugins", "list", "--json", "--all")
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
    assert cli.cached_commands() == {"hello": ["rb_cmds", "rb_cmds", "rb-cmds"]}

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
    assert cli.cached_commands() == {"hello": ["rb_cmds", "rb_cmds", "rb-cmds"]}
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
    assert cli.cached_commands() == {"hello": ["rb_cmds", "rb_cmds_v2", "rb-cmds"]}

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
    assert cli.cached_commands() == {"hello": ["rb_cmds", "rb_cmds", "rb-cmds"]}  # rewritten by the full scan
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
    source = ("x", "rb_x", "rb-x")
    _install_cache.store_commands({"x": source}, env, _install_cache.fingerprint())
    assert _install_cache.lookup_command("x", env) == source
    (site / "rb_y-1.0.dist-info").mkdir()
    assert _install_cache.lookup_command("x", env) is None


def test_plugins_list_reads_the_installed_plugins_from_the_cache(cli: Cli) -> None:
    assert cli.listed() == [("rb-cmds", "1.0", "ok"), ("rb-other", "1.0", "ok")]
    assert cli.cache_files("entry-points")
    again = cli("plugins", "list", python=("-X", "importtime"))
    assert again.returncode == 0 and "rb-other" in again.stdout
    imported = {line.rsplit("|", 1)[-1].strip() for line in again.stderr.splitlines() if "|" in line}
    assert "importlib.metadata" not in imported  # no distribution's metadata was read
    assert "pydantic" in imported  # the slice plugins themselves were loaded (-X importtime works)


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
    assert cli.listed() == expected
    assert [row for row in json.loads(path.read_text())["data"] if row[2].startswith("rb-")] == [
        ["rb_cmds", "rb_cmds", "rb-cmds", "1.0"],
        ["rb_other", "rb_other", "rb-other", "1.0"],
    ]
