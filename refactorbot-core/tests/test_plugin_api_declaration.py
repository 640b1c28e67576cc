"""``REFACTORBOT_API`` is a declaration, not a gate: only versions that exclude the host's refuse a plugin."""

import json
import os
import subprocess
import sys

import pytest
from distfactory import make_dist
from refactorbot import API_VERSION, AtomicSlice, operation
from refactorbot.errors import PluginError
from refactorbot.plugins import PluginHost
from refactorbot.testing import host_running, plugin_of


class PingSlice(AtomicSlice):
    slice_id = "ping"
    uses_database = False

    @operation
    async def ping(self) -> str:
        """Answer pong."""
        return "pong"


NO_API = f"declares no REFACTORBOT_API; assumed compatible with API {API_VERSION}"


@pytest.mark.asyncio
async def test_a_plugin_that_declares_nothing_loads_with_a_warning(tmp_path):
    plugin = plugin_of(slices=[PingSlice], api=None, name="minimal")
    async with host_running(tmp_path, [plugin]) as host:
        record = host.plugins.records["minimal"]
        assert (record.status, record.warning, record.error) == ("ok", NO_API, None)
        assert record.to_dict()["warning"] == NO_API
        assert (await host.call("ping.ping")).data == "pong"
        assert host.plugins.failed == []


@pytest.mark.parametrize(
    ("declared", "status", "error"),
    [
        (API_VERSION, "ok", None),
        ((API_VERSION, API_VERSION + 1), "ok", None),
        ([API_VERSION], "ok", None),
        (99, "incompatible", f"supports API [99], this host offers API {API_VERSION}"),
        ((0, 2), "incompatible", f"supports API [0, 2], this host offers API {API_VERSION}"),
        ("1", "incompatible", "REFACTORBOT_API must be an int or a tuple of ints, got '1'"),
        (True, "incompatible", "REFACTORBOT_API must be an int or a tuple of ints, got True"),
    ],
)
def test_declared_versions_that_exclude_the_host_refuse_the_plugin(declared, status, error):
    host = PluginHost({})
    record = host.register(plugin_of(slices=[PingSlice], api=declared), name="p")
    assert (record.status, record.error, record.warning) == (status, error, None)
    assert ("ping" in host.registry.slices) is (status == "ok")


def test_strict_mode_accepts_a_plugin_that_declares_nothing():
    host = PluginHost({"RB_STRICT_PLUGINS": "1"})
    assert host.register(plugin_of(slices=[PingSlice], api=None), name="p").status == "ok"
    with pytest.raises(PluginError, match="supports API \\[99\\]"):
        host.register(plugin_of(api=99), name="q")


MINIMAL = """
from refactorbot import hookimpl, AtomicSlice, operation

class Minimal(AtomicSlice):
    slice_id = "minimal"
    uses_database = False

    @operation
    async def ping(self) -> str:
        return "pong"

@hookimpl
def register_slices(register):
    register(Minimal)
"""


def test_plugins_list_shows_the_warning_and_the_plugin_works(tmp_path):
    site = tmp_path / "site"
    make_dist(site, "rb-minimal", "rb_minimal", MINIMAL)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RB_")}
    env.update({"PYTHONPATH": str(site), "RB_HOME": str(tmp_path / "home"), "RB_LOAD_PLUGINS": "rb-minimal"})

    def cli(*args):
        return subprocess.run(
            [sys.executable, "-m", "refactorbot", *args], env=env, capture_output=True, text=True, timeout=60
        )

    listing = cli("plugins", "list")
    assert listing.returncode == 0, listing.stderr
    (line,) = [line for line in listing.stdout.splitlines() if line.startswith("rb-minimal")]
    assert line.split()[:3] == ["rb-minimal", "1.0", "ok"]
    assert line.endswith(f"register_slices  (warning: {NO_API})")
    (row,) = json.loads(cli("plugins", "list", "--json").stdout)
    assert (row["status"], row["warning"]) == ("ok", NO_API)
    called = cli("call", "minimal.ping")
    assert (called.returncode, json.loads(called.stdout)) == (0, "pong"), called.stderr
    assert "warning" not in called.stderr.lower()  # shown by plugins list, not on every command
