"""``refactorbot dashboard``: the command, its start-up checks and the plugin's import cost."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner
from refactorbot.cli import main
from refactorbot.testing import check_import_cost
from refactorbot_dashboard.launcher import ENTRY, dashboard_env, streamlit_command


def _invoke(home: Path, *args: str):  # noqa: ANN202
    return CliRunner().invoke(main, ["--home", str(home), *args], env={"RB_LOAD_PLUGINS": "refactorbot-dashboard"})


def test_without_a_server_it_says_how_to_start_one(tmp_path: Path) -> None:
    result = _invoke(tmp_path, "dashboard")
    assert result.exit_code == 1
    assert "No refactorbot server is running" in result.output
    assert "refactorbot serve" in result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_stale_server_file_is_not_a_server(tmp_path: Path) -> None:
    (tmp_path / "server.json").write_text('{"url": "http://127.0.0.1:9", "pid": 999999999}')
    (tmp_path / "api-token").write_text("token")
    result = _invoke(tmp_path, "dashboard")
    assert result.exit_code == 1 and "refactorbot serve" in result.output


def test_command_is_listed(tmp_path: Path) -> None:
    result = _invoke(tmp_path, "--help")
    assert result.exit_code == 0
    assert "dashboard" in result.output and "Open the Streamlit dashboard" in result.output


def test_module_entry_without_a_server(tmp_path: Path) -> None:
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "refactorbot_dashboard", "--home", str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 1
    assert "refactorbot serve" in out.stderr and "Traceback" not in out.stderr


def test_streamlit_serves_the_gated_app_on_loopback_and_is_told_where_the_api_is(tmp_path: Path) -> None:
    from streamlit.web.server.app_discovery import discover_asgi_app

    command = streamlit_command(8600)
    assert command[1:5] == ["-m", "streamlit", "run", str(ENTRY)]
    assert discover_asgi_app(ENTRY).import_string == "streamlit_entry:app"  # served as st.App with the gate
    pairs = list(zip(command[5::2], command[6::2], strict=True))
    assert dict(p for p in pairs if p[0] != "--server.allowedHosts") == {
        "--server.address": "127.0.0.1",
        "--server.port": "8600",
        "--server.headless": "true",
        "--browser.gatherUsageStats": "false",
        "--client.toolbarMode": "minimal",
        "--server.enableXsrfProtection": "true",
        "--server.enableCORS": "true",
        "--logger.hideWelcomeMessage": "true",
    }
    assert {v for k, v in pairs if k == "--server.allowedHosts"} == {"127.0.0.1", "localhost", "::1"}
    env = dashboard_env("http://127.0.0.1:1234", "tok", tmp_path, "logs", "login-secret")
    assert env["RB_DASHBOARD_API_URL"] == "http://127.0.0.1:1234"
    assert env["RB_DASHBOARD_API_TOKEN"] == "tok"
    assert env["RB_DASHBOARD_LOGIN_TOKEN"] == "login-secret"
    assert env["RB_DASHBOARD_START_PAGE"] == "logs"
    assert "tok" not in command and "login-secret" not in command  # secrets stay off the command line


def test_plugin_module_imports_fast_and_light() -> None:
    result = check_import_cost("refactorbot_dashboard.plugin")
    assert not result["heavy"], result
    assert result["ms"] < 50, result
