import json
import os
import subprocess
import sys
from importlib.metadata import distributions

import pytest
import sample_plugins as sp
from distfactory import GOOD, make_dist
from refactorbot.errors import PluginError
from refactorbot.plugins import PluginHost


def eps_in(site):
    return [ep for d in distributions(path=[str(site)]) for ep in d.entry_points if ep.group == "refactorbot"]


@pytest.fixture
def site(tmp_path, monkeypatch):
    site = tmp_path / "site"
    make_dist(site, "rb-good", "rb_good", GOOD.format(cls="Good", sid="good"))
    make_dist(site, "rb-broken-import", "rb_broken_import", "import does_not_exist_anywhere\n")
    make_dist(site, "rb-old-api", "rb_old_api", "REFACTORBOT_API = 0\n")
    make_dist(
        site,
        "rb-raises",
        "rb_raises",
        "from refactorbot import hookimpl\nREFACTORBOT_API = 1\n"
        "@hookimpl\ndef register_slices(register):\n    raise RuntimeError('nope')\n",
    )
    make_dist(
        site,
        "rb-unknown-hook",
        "rb_unknown_hook",
        "from refactorbot import hookimpl\nREFACTORBOT_API = 1\n@hookimpl\ndef register_everything(register):\n    pass\n",
    )
    monkeypatch.syspath_prepend(str(site))
    return site


def test_each_failure_is_recorded_and_the_rest_load(site):
    host = PluginHost(env={})
    host.load_entrypoints(eps_in(site))
    status = {r.name: r.status for r in host.sorted_records()}
    assert status == {
        "rb-broken-import": "failed",
        "rb-good": "ok",
        "rb-old-api": "incompatible",
        "rb-raises": "failed",
        "rb-unknown-hook": "failed",
    }
    broken = host.records["rb-broken-import"]
    assert broken.version == "1.0"
    assert "does_not_exist_anywhere" in broken.error
    assert "Traceback" in broken.traceback
    assert "nope" in host.records["rb-raises"].error
    assert "register_everything" in host.records["rb-unknown-hook"].error
    assert "API [0]" in host.records["rb-old-api"].error
    assert list(host.registry.slices) == ["good"]
    assert host.records["rb-good"].hooks == ["register_slices"]


def test_strict_mode_raises(site):
    host = PluginHost(env={"RB_STRICT_PLUGINS": "1"})
    with pytest.raises(PluginError, match="rb-broken-import"):
        host.load_entrypoints(eps_in(site))


@pytest.mark.parametrize(
    ("env", "loaded"),
    [
        ({"RB_LOAD_PLUGINS": ""}, []),
        ({"RB_LOAD_PLUGINS": "rb_good"}, ["rb-good"]),
        ({"RB_DISABLE_PLUGINS": "rb-good,rb-raises"}, ["rb-broken-import", "rb-old-api", "rb-unknown-hook"]),
    ],
)
def test_allow_and_deny_lists_apply_before_import(site, env, loaded):
    host = PluginHost(env=env)
    host.load_entrypoints(eps_in(site))
    assert [r.name for r in host.sorted_records() if r.status != "blocked"] == loaded
    blocked = [r.name for r in host.sorted_records() if r.status == "blocked"]
    assert "rb_broken_import" not in sys.modules or "rb-broken-import" in loaded or "rb-broken-import" not in blocked


def test_blocked_plugin_is_never_imported(site):
    host = PluginHost(env={"RB_DISABLE_PLUGINS": "rb-broken-import"})
    sys.modules.pop("rb_broken_import", None)
    host.load_entrypoints(eps_in(site))
    assert "rb_broken_import" not in sys.modules
    assert host.records["rb-broken-import"].status == "blocked"


def test_name_collision_names_both_plugins():
    host = PluginHost(env={})
    host.register(sp.echo_plugin, name="first")
    record = host.register(sp.DuplicateEcho(), name="second")
    assert host.registry.slices["echo"].plugin == "first"
    assert "first" in record.error and "second" in record.error


def test_register_hook_rejects_objects_without_a_name():
    class NoId:
        REFACTORBOT_API = 1

        from refactorbot import hookimpl

        @hookimpl
        def register_tools(self, register):
            register(object())

    host = PluginHost(env={})
    record = host.register(NoId(), name="noid")
    assert record.status == "failed"
    assert "has no 'name'" in record.error


def test_isolated_call_records_a_raising_hook_and_calls_the_others():
    from refactorbot import hookimpl

    calls = []

    class Good:
        REFACTORBOT_API = 1

        @hookimpl
        def register_commands(self, cli):
            calls.append(cli)

    class Bad:
        REFACTORBOT_API = 1

        @hookimpl
        def register_commands(self, cli):
            raise KeyError("boom")

    host = PluginHost(env={})
    host.register(Bad(), name="bad")
    host.register(Good(), name="good")
    host.call_isolated("register_commands", cli="CLI")
    assert calls == ["CLI"]
    assert host.records["bad"].status == "failed"
    assert "register_commands" in host.records["bad"].error


def _cli(site, home, *args, env=None):
    environ = {k: v for k, v in os.environ.items() if not k.startswith("RB_")}
    environ.update({"PYTHONPATH": str(site), "RB_HOME": str(home), **(env or {})})
    return subprocess.run(
        [sys.executable, "-m", "refactorbot", *args], capture_output=True, text=True, env=environ, timeout=60
    )


def test_cli_plugins_list_json_is_sorted_and_stable(site, tmp_path):
    out = _cli(site, tmp_path / "home", "plugins", "list", "--json", env={"RB_DISABLE_PLUGINS": "rb-old-api"})
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    names = [p["name"] for p in data]
    assert names == sorted(names)
    assert "rb-old-api" not in names
    for row in data:
        assert list(row) == sorted(row)
        assert set(row) >= {"name", "version", "hooks", "status", "error"}
    assert {p["name"]: p["status"] for p in data}["rb-broken-import"] == "failed"
    shown = json.loads(
        _cli(
            site, tmp_path / "home", "plugins", "list", "--json", "--all", env={"RB_DISABLE_PLUGINS": "rb-old-api"}
        ).stdout
    )
    assert {p["name"]: p["status"] for p in shown}["rb-old-api"] == "blocked"
    again = _cli(site, tmp_path / "home", "plugins", "list", "--json", env={"RB_DISABLE_PLUGINS": "rb-old-api"})
    assert again.stdout == out.stdout


def test_cli_doctor_shows_tracebacks_and_exits_1(site, tmp_path):
    out = _cli(site, tmp_path / "home", "plugins", "doctor")
    assert out.returncode == 1
    assert "rb-broken-import" in out.stderr and "Traceback" in out.stderr
    assert "ModuleNotFoundError" in out.stderr
    clean = _cli(site, tmp_path / "home", "plugins", "doctor", env={"RB_LOAD_PLUGINS": "rb-good"})
    assert clean.returncode == 0, clean.stderr


def test_cli_slices_and_call_with_a_broken_plugin_installed(site, tmp_path):
    # Every plugin of the site (broken ones included), none of those installed beside the core.
    only_site = {"RB_LOAD_PLUGINS": "rb-good,rb-broken-import,rb-old-api,rb-raises,rb-unknown-hook"}
    out = _cli(site, tmp_path / "home", "call", "good.ping", env=only_site)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == "pong"
    table = _cli(site, tmp_path / "home", "slices", "--json", env=only_site)
    assert table.returncode == 0, table.stderr
    assert [(r["slice_id"], r["status"]) for r in json.loads(table.stdout)] == [("good", "running")]
