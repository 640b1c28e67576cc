import json
import os
import subprocess
import sys
import threading
from importlib.metadata import distributions

import pytest
import sample_plugins as sp
from distfactory import GOOD, make_dist
from refactorbot.errors import ConfigError, PluginError
from refactorbot.plugins import PluginHost

HOOK = "from refactorbot import hookimpl\nREFACTORBOT_API = 1\n"


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


# -- a plugin must not be able to stop the host -------------------------------------------------


@pytest.fixture
def release():
    """A fresh event hanging test plugins wait on; set at the end so their threads finish."""
    sp.release = threading.Event()
    yield sp.release
    sp.release.set()


def test_sys_exit_at_import_or_in_a_registration_hook_is_a_failure(tmp_path, monkeypatch):
    site = tmp_path / "site"
    make_dist(site, "rb-exit-import", "rb_exit_import", "import sys\nsys.exit(3)\n")
    make_dist(site, "rb-exit-bare", "rb_exit_bare", "raise SystemExit\n")
    exits = HOOK + "import sys\n@hookimpl\ndef register_slices(register):\n    sys.exit(4)\n"
    make_dist(site, "rb-exit-register", "rb_exit_register", exits)
    make_dist(site, "rb-good", "rb_good", GOOD.format(cls="Good", sid="good"))
    monkeypatch.syspath_prepend(str(site))
    host = PluginHost(env={})
    host.load_entrypoints(eps_in(site))
    assert {r.name: (r.status, r.error) for r in host.sorted_records()} == {
        "rb-exit-bare": ("failed", "called sys.exit() at import"),
        "rb-exit-import": ("failed", "called sys.exit(3) at import"),
        "rb-exit-register": ("failed", "register_slices called sys.exit(4)"),
        "rb-good": ("ok", None),
    }
    assert "rb_exit_import.py" in host.records["rb-exit-import"].traceback
    assert list(host.registry.slices) == ["good"]
    assert host.records["rb-exit-register"].hooks == []


def test_plugins_that_hang_are_reported_hung_and_the_rest_load(tmp_path, monkeypatch, release):
    site = tmp_path / "site"
    make_dist(site, "rb-a-good", "rb_a_good", GOOD.format(cls="Good", sid="good"))
    make_dist(site, "rb-hang-import", "rb_hang_import", "import sample_plugins\nsample_plugins.release.wait()\n")
    make_dist(
        site,
        "rb-hang-register",
        "rb_hang_register",
        HOOK + "import sample_plugins\n@hookimpl\ndef register_slices(register):\n    sample_plugins.release.wait()\n",
    )
    make_dist(site, "rb-late", "rb_late", GOOD.format(cls="Late", sid="late"))
    monkeypatch.syspath_prepend(str(site))
    host = PluginHost(env={"RB_PLUGIN_LOAD_TIMEOUT": "0.3"})
    host.load_entrypoints(eps_in(site))
    assert {r.name: r.status for r in host.sorted_records()} == {
        "rb-a-good": "ok",
        "rb-hang-import": "hung",
        "rb-hang-register": "hung",
        "rb-late": "ok",
    }
    importing = host.records["rb-hang-import"]
    assert importing.error == "import did not finish within 0.3s (RB_PLUGIN_LOAD_TIMEOUT); skipped"
    assert "rb_hang_import.py" in importing.traceback and "release.wait()" in importing.traceback
    registering = host.records["rb-hang-register"]
    assert registering.error == "register_slices did not return within 0.3s (RB_PLUGIN_LOAD_TIMEOUT); skipped"
    assert "rb_hang_register.py" in registering.traceback
    assert registering.hooks == [] and not host.pm.has_plugin("rb-hang-register")
    assert [r.name for r in host.failed] == ["rb-hang-import", "rb-hang-register"]
    assert sorted(host.registry.slices) == ["good", "late"]
    # once released, the abandoned work finishes unobserved and changes nothing
    workers = [t for t in threading.enumerate() if t.name.startswith("refactorbot-load:rb-hang")]
    assert len(workers) == 2 and all(t.daemon for t in workers)
    release.set()
    for worker in workers:
        worker.join(timeout=30)
    assert sorted(host.registry.slices) == ["good", "late"]
    assert host.records["rb-hang-register"].status == "hung"


@pytest.mark.parametrize(("hook", "arg"), [("register_commands", "cli"), ("register_routes", "router")])
def test_a_hung_registration_of_commands_or_routes_is_reported_and_the_others_run(release, hook, arg):
    from refactorbot import hookimpl

    calls = []

    class Stuck:
        REFACTORBOT_API = 1

        @hookimpl
        def register_commands(self, cli):
            release.wait()

        @hookimpl
        def register_routes(self, router):
            release.wait()

    class Good:
        REFACTORBOT_API = 1

        @hookimpl
        def register_commands(self, cli):
            calls.append(cli)

        @hookimpl
        def register_routes(self, router):
            calls.append(router)

    host = PluginHost(env={"RB_PLUGIN_LOAD_TIMEOUT": "0.2"})
    host.register(Stuck(), name="stuck")
    host.register(Good(), name="good")
    host.call_isolated(hook, **{arg: "ARG"})
    assert calls == ["ARG"]
    assert host.records["stuck"].status == "hung"
    assert host.records["stuck"].error.startswith(f"{hook} did not return within 0.2s")


def test_strict_mode_raises_for_a_hung_plugin(tmp_path, monkeypatch, release):
    site = tmp_path / "site"
    make_dist(site, "rb-hang-import", "rb_hang_import2", "import sample_plugins\nsample_plugins.release.wait()\n")
    monkeypatch.syspath_prepend(str(site))
    host = PluginHost(env={"RB_PLUGIN_LOAD_TIMEOUT": "0.2", "RB_STRICT_PLUGINS": "1"})
    with pytest.raises(PluginError, match="rb-hang-import: import did not finish within 0.2s"):
        host.load_entrypoints(eps_in(site))


@pytest.mark.parametrize("value", ["0", "-1", "soon", "nan", "inf"])
def test_load_timeout_must_be_a_positive_number(value):
    with pytest.raises(
        ConfigError, match=f"RB_PLUGIN_LOAD_TIMEOUT must be a positive number of seconds, got '{value}'"
    ):
        PluginHost(env={"RB_PLUGIN_LOAD_TIMEOUT": value})


@pytest.mark.asyncio
async def test_sys_exit_in_a_runtime_hook_is_an_error_and_the_host_goes_on(tmp_path):
    from refactorbot import ErrorType, hookimpl
    from refactorbot.testing import host_running

    class Quitter:
        REFACTORBOT_API = 1

        @hookimpl
        def startup(self, host):
            sys.exit(6)

        @hookimpl
        def before_operation(self, request):
            if request.operation == "noop":
                sys.exit(5)

        @hookimpl
        async def after_operation(self, request, response):
            sys.exit(8)

        @hookimpl
        def before_tool_call(self, call):
            sys.exit(7)

    async with host_running(tmp_path, [sp.echo_plugin, Quitter()]) as host:
        assert host.plugins.records["Quitter"].error == "startup: called sys.exit(6)"
        refused = await host.call("echo.noop")
        assert refused.error_type is ErrorType.REFUSED
        assert refused.error_message == "refused: before_operation hook of Quitter called sys.exit(5)"
        with pytest.raises(PluginError, match=r"^before_tool_call hook of Quitter called sys.exit\(7\)$"):
            await host.plugins.afirstresult("before_tool_call", call=None)
        assert (await host.call("echo.echo", text="still here")).success  # after_operation has called sys.exit by now
        assert host.running_slices() == ["echo"]


def _exiting_site(tmp_path):
    site = tmp_path / "site"
    make_dist(site, "rb-good", "rb_good", GOOD.format(cls="Good", sid="good"))
    make_dist(site, "rb-exit-import", "rb_exit_import", "import sys\nsys.exit(3)\n")
    make_dist(site, "rb-interrupt-import", "rb_interrupt_import", "raise KeyboardInterrupt\n")
    make_dist(
        site,
        "rb-exit-register",
        "rb_exit_register",
        HOOK + "import sys\n@hookimpl\ndef register_slices(register):\n    sys.exit(4)\n",
    )
    return site


def test_cli_keeps_working_when_plugins_call_sys_exit(tmp_path):
    site = _exiting_site(tmp_path)
    home = tmp_path / "home"
    env = {"RB_LOAD_PLUGINS": "rb-good,rb-exit-import,rb-interrupt-import,rb-exit-register"}
    doctor = _cli(site, home, "plugins", "doctor", env=env)
    assert doctor.returncode == 1, doctor.stderr
    assert "rb-exit-import 1.0 [failed]: called sys.exit(3) at import" in doctor.stderr
    assert "rb-interrupt-import 1.0 [failed]: KeyboardInterrupt at import" in doctor.stderr
    assert "rb-exit-register 1.0 [failed]: register_slices called sys.exit(4)" in doctor.stderr
    listing = _cli(site, home, "plugins", "list", "--json", env=env)
    assert listing.returncode == 0, listing.stderr
    assert {p["name"]: p["status"] for p in json.loads(listing.stdout)} == {
        "rb-exit-import": "failed",
        "rb-exit-register": "failed",
        "rb-good": "ok",
        "rb-interrupt-import": "failed",
    }
    call = _cli(site, home, "call", "good.ping", env=env)
    assert call.returncode == 0, call.stderr
    assert json.loads(call.stdout) == "pong"


def _hanging_site(tmp_path):
    site = tmp_path / "site"
    make_dist(site, "rb-good", "rb_good", GOOD.format(cls="Good", sid="good"))
    make_dist(site, "rb-spin-import", "rb_spin_import", "while True:\n    pass\n")
    make_dist(
        site,
        "rb-sleep-register",
        "rb_sleep_register",
        HOOK + "import time\n@hookimpl\ndef register_slices(register):\n    while True:\n        time.sleep(1)\n",
    )
    return site


def test_cli_plugins_list_and_doctor_complete_when_plugins_hang(tmp_path):
    site = _hanging_site(tmp_path)
    env = {"RB_PLUGIN_LOAD_TIMEOUT": "1", "RB_LOAD_PLUGINS": "rb-good,rb-spin-import,rb-sleep-register"}
    listing = _cli(site, tmp_path / "home", "plugins", "list", env=env)
    assert listing.returncode == 0, listing.stderr
    lines = {line.split()[0]: line for line in listing.stdout.splitlines()}
    assert "hung" in lines["rb-spin-import"]
    assert "import did not finish within 1s (RB_PLUGIN_LOAD_TIMEOUT); skipped" in lines["rb-spin-import"]
    assert "register_slices did not return within 1s" in lines["rb-sleep-register"]
    assert lines["rb-good"].split()[2] == "ok"
    doctor = _cli(site, tmp_path / "home", "plugins", "doctor", env=env)
    assert doctor.returncode == 1
    assert "rb-sleep-register 1.0 [hung]" in doctor.stderr and "time.sleep(1)" in doctor.stderr
    call = _cli(site, tmp_path / "home", "call", "good.ping", env=env)
    assert call.returncode == 0, call.stderr
