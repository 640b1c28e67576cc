"""Against a real `refactorbot serve`: `slices show` and `call SLICE.OP --help` read the server's
capabilities, and `chat` loads only its own plugin and imports nothing heavy."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from refactorbot.testing.model_server import ModelServer
from serving import clean_env, cli, serve, write_config


class Served:
    """The CLI, run against the server of ``home`` from ``cwd``."""

    def __init__(self, home: Path, env: dict[str, str], cwd: Path) -> None:
        self.home, self.env, self.cwd = home, env, cwd

    def __call__(self, *args: str, importtime: bool = False) -> subprocess.CompletedProcess[str]:
        return cli(self.home, *args, env=self.env, cwd=self.cwd, python=("-X", "importtime") if importtime else ())


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    home = tmp_path / "home"
    cwd = tmp_path / "cwd"  # sys.path[0] of `python -m`: a folder nothing writes to during the test
    cwd.mkdir()
    env = clean_env("PYTHONDONTWRITEBYTECODE", RB_CACHE_DIR=str(tmp_path / "cache"))
    with ModelServer() as model:
        write_config(home, model=model)
        with serve(home, env=env, cwd=cwd):
            yield Served(home, env, cwd)


def test_operations_are_described_from_the_running_server(served: Served) -> None:
    # the server's capabilities are read: a slice it does not run is unknown, with the server's wording
    shown = served("slices", "show", "notes")
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith("notes ")
    assert "    title      string (min length 1, max length 200)  required" in shown.stdout
    as_json = json.loads(served("slices", "show", "agent", "--json").stdout)
    assert {op["name"] for op in as_json["operations"]} >= {"run", "stream_run"}
    ghost = served("slices", "show", "ghost")
    assert ghost.returncode == 1 and ghost.stderr.startswith("Error: unknown slice 'ghost' (installed and enabled:")

    helped = served("call", "memory.search", "--help")
    assert helped.returncode == 0, helped.stderr
    assert helped.stdout.splitlines()[0] == "Usage: refactorbot call memory.search [KEY=VALUE]... [--json '{...}']"
    assert "  user_id " in helped.stdout and "  limit " in helped.stdout
    missing = served("call", "memory.nope", "--help")
    assert missing.returncode == 1 and "has no operation 'nope'" in missing.stderr


def test_chat_against_the_server_loads_only_its_plugin_and_nothing_heavy(served: Served) -> None:
    first = served("chat", "hello")  # no command cache yet: every plugin is scanned, the cache written
    assert (first.returncode, first.stdout) == (0, "echo: hello\n"), first.stderr
    assert list((served.home.parent / "cache").glob("commands-*.json"))
    cached = served("chat", "again", importtime=True)
    assert (cached.returncode, cached.stdout) == (0, "echo: again\n")
    imported = {line.rsplit("|", 1)[-1].strip() for line in cached.stderr.splitlines() if "|" in line}
    assert {"refactorbot_slice_agent.cli", "socket"} <= imported
    heavy = {"pydantic", "asyncio", "litellm", "importlib.metadata", "refactorbot.slice", "refactorbot_slice_memory"}
    heavy |= {"urllib.request", "http.client", "ssl", "email.parser"}  # ServerClient speaks HTTP/1.1 on a socket
    heavy |= {"pluggy", "refactorbot.plugins", "refactorbot_slice_agent.plugin"}  # the command's module only
    assert not imported & heavy, imported & heavy
