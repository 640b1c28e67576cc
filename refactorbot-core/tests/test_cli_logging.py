"""What the console shows, through the real ``refactorbot`` command in a subprocess."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from distfactory import make_dist

TESTS = Path(__file__).parent

BROKEN = """
import does_not_exist_anywhere
"""

NOISY = """
import logging
import sys

from refactorbot import AtomicSlice, hookimpl, operation

# a library that gives its logger a console handler of its own and lets records propagate too
third = logging.getLogger("ThirdParty")
third.addHandler(logging.StreamHandler(sys.stderr))


class Noisy(AtomicSlice):
    slice_id = "noisy"
    uses_database = False

    @operation
    async def talk(self) -> str:
        third.debug("third-party detail")
        third.warning("third-party warning")
        return "said"


@hookimpl
def register_slices(register):
    register(Noisy)
"""

STARTUP = """
from refactorbot import hookimpl


@hookimpl
async def startup(host):
    raise RuntimeError("widget could not reach its device")
"""


class Cli:
    def __init__(self, tmp_path: Path, plugins: str) -> None:
        site = tmp_path / "site"
        make_dist(site, "rb-broken", "rb_broken", BROKEN)
        make_dist(site, "rb-noisy", "rb_noisy", NOISY)
        make_dist(site, "rb-widget", "rb_widget", STARTUP)
        info = site / "rb_echo-1.0.dist-info"
        info.mkdir()
        (info / "METADATA").write_text("Metadata-Version: 2.1\nName: rb-echo\nVersion: 1.0\n")
        (info / "entry_points.txt").write_text("[refactorbot]\necho = sample_plugins:echo_plugin\n")
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("RB_")}
        self.env.update(
            {
                "PYTHONPATH": os.pathsep.join([str(site), str(TESTS)]),
                "RB_HOME": str(tmp_path / "home"),
                "RB_CACHE_DIR": str(tmp_path / "cache"),
                "RB_LOAD_PLUGINS": plugins,
            }
        )

    def __call__(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "refactorbot", *args],
            env={**self.env, **env},
            capture_output=True,
            text=True,
            timeout=60,
        )


@pytest.fixture
def cli(tmp_path):
    return Cli(tmp_path, "rb-echo")


def test_debug_shows_refactorbot_not_every_sql_statement(cli):
    debug = cli("--debug", "call", "echo.noop")
    assert debug.returncode == 0, debug.stderr
    assert "INFO refactorbot.master: started 1 of 1 slices" in debug.stderr
    assert "aiosqlite" not in debug.stderr
    opened = cli("--debug", "call", "echo.noop", RB_DEBUG_LOGGERS="aiosqlite")
    sql = [line for line in opened.stderr.splitlines() if " DEBUG aiosqlite: " in line]
    assert len(sql) > 10, opened.stderr
    everything = cli("--debug-all", "call", "echo.noop")
    assert everything.returncode == 0 and " DEBUG aiosqlite: " in everything.stderr
    quiet = cli("call", "echo.noop")
    assert (quiet.returncode, quiet.stdout, quiet.stderr) == (0, "null\n", "")


def test_a_library_with_its_own_console_handler_is_printed_once(tmp_path):
    cli = Cli(tmp_path, "rb-noisy")
    result = cli("call", "noisy.talk")
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("third-party warning") == 1, result.stderr
    assert "third-party detail" not in result.stderr
    debug = cli("--debug", "call", "noisy.talk", RB_DEBUG_LOGGERS="ThirdParty")
    assert debug.stderr.count("third-party detail") == 1, debug.stderr
    assert debug.stderr.count("third-party warning") == 1, debug.stderr


def test_a_failed_plugin_is_one_hint_per_command_and_in_full_in_plugins_commands(tmp_path):
    cli = Cli(tmp_path, "rb-echo,rb-broken")
    hint = "1 plugin failed to load (rb-broken); run `refactorbot plugins doctor`"
    called = cli("call", "echo.echo", "text=hi")
    assert (called.returncode, json.loads(called.stdout)) == (0, {"text": "hi"})
    assert called.stderr.splitlines() == [hint]
    failing = cli("call", "echo.nope")  # the hint comes with an error too, after it
    assert failing.stderr.splitlines()[-1] == hint and failing.stderr.startswith("Error: ")
    listing = cli("plugins", "list")
    assert hint not in listing.stderr
    assert "import failed: ModuleNotFoundError: No module named 'does_not_exist_anywhere'" in listing.stdout
    doctor = cli("plugins", "doctor")
    assert doctor.returncode == 1 and hint not in doctor.stderr
    assert "Traceback" in doctor.stderr and "does_not_exist_anywhere" in doctor.stderr
    debug = cli("--debug", "call", "echo.noop")  # --debug shows the raw error as well
    assert "ERROR refactorbot.plugins: plugin rb-broken failed: import failed" in debug.stderr
    assert debug.stderr.splitlines()[-1] == hint


def test_two_failed_plugins_are_one_line(tmp_path):
    cli = Cli(tmp_path, "rb-echo,rb-broken,rb-widget")
    cli.env["PYTHONPATH"] += os.pathsep + str(tmp_path / "more")
    make_dist(tmp_path / "more", "rb-also-broken", "rb_also_broken", "REFACTORBOT_API = 99\n")  # incompatible
    cli.env["RB_LOAD_PLUGINS"] += ",rb-also-broken"
    result = cli("call", "echo.noop")
    hints = [line for line in result.stderr.splitlines() if "failed to load" in line]
    assert hints == ["2 plugins failed to load (rb-also-broken, rb-broken); run `refactorbot plugins doctor`"]


def test_serve_lists_failed_plugins_in_full_and_prints_no_hint(tmp_path):
    cli = Cli(tmp_path, "rb-echo,rb-broken")
    proc = subprocess.Popen(
        [sys.executable, "-m", "refactorbot", "serve"],
        env=cli.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout.readline().startswith("refactorbot serving 1 slice(s)")
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    expected = (
        "  plugin rb-broken failed: import failed: ModuleNotFoundError: No module named 'does_not_exist_anywhere'"
    )
    assert expected in err.splitlines(), err
    assert "failed to load" not in err and err.count("does_not_exist_anywhere") == 1
    assert "INFO refactorbot.master: started 1 of 1 slices" in err  # a server's console has its info lines
    assert " DEBUG " not in err


def test_a_failed_startup_hook_says_why_on_one_line(tmp_path):
    cli = Cli(tmp_path, "rb-echo,rb-widget")
    result = cli("call", "echo.noop")
    assert result.returncode == 0 and result.stdout == "null\n"
    (line,) = result.stderr.splitlines()
    assert line.endswith(
        "ERROR refactorbot.master: startup hook of rb-widget failed: RuntimeError: widget could not reach its device"
    )
    debug = cli("--debug", "call", "echo.noop")
    assert "Traceback (most recent call last):" in debug.stderr  # the traceback is for --debug


def test_the_console_and_the_plugin_host_agree_on_the_failure_marker():
    from refactorbot.cli.main import PLUGIN_FAILURE as console
    from refactorbot.plugins import PLUGIN_FAILURE as host

    assert console == host


AUDIT_GONE = """
import sqlite3

from refactorbot import hookimpl


@hookimpl
def startup(host):
    with sqlite3.connect(host.home / "master.db") as db:  # the audit trail cannot be written any more
        db.execute("DROP TABLE operation_log")
"""


def test_call_without_a_server_prints_no_answer_its_audit_row_did_not_record(tmp_path):
    cli = Cli(tmp_path, "rb-echo")
    assert cli("call", "echo.echo", "text=logged").stdout == '{\n  "text": "logged"\n}\n'
    make_dist(tmp_path / "site", "rb-audit-gone", "rb_audit_gone", AUDIT_GONE)
    cli.env["RB_LOAD_PLUGINS"] = "rb-echo,rb-audit-gone"
    result = cli("call", "echo.echo", "text=lost")
    assert result.returncode == 1 and result.stdout == ""
    (error,) = [line for line in result.stderr.splitlines() if line.startswith("Error: ")]
    assert error == "Error: master.db: 1 rows not written: no such table: operation_log"
