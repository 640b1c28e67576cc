"""``refactorbot new``: names, destinations, template lookup, and generated plugins that pass their tests."""

from __future__ import annotations

import importlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import refactorbot
from click.testing import CliRunner
from refactorbot.cli import main
from refactorbot.plugins import PluginHost
from refactorbot.scaffold import ScaffoldError, create_plugin, find_template, next_steps, plugin_names

CORE = Path(refactorbot.__file__).resolve().parents[2]
TEMPLATE = find_template(CORE)


def new(*args: str) -> tuple[int, str]:
    """Run ``refactorbot new ARGS``; return the exit code and everything printed (stdout and stderr)."""
    result = CliRunner().invoke(main, ["new", *args])
    return result.exit_code, result.output


def all_files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def test_names_follow_the_conventions() -> None:
    names = plugin_names("slice", "my_notes")
    assert names.dist == "refactorbot-slice-my-notes"
    assert names.package == "refactorbot_slice_my_notes"
    assert names.class_prefix == "MyNotes"
    assert names.env_prefix == "RB_MY_NOTES_"


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("Notes", "lowercase"),
        ("2fa", "starting with a letter"),
        ("my-notes", "lowercase letters, digits and '_'"),
        ("", "lowercase"),
        ("class", "Python keyword"),
        ("x" * 41, "at most 40"),
    ],
)
def test_bad_names_are_refused_in_one_line(tmp_path: Path, name: str, reason: str) -> None:
    code, output = new("slice", name, "--dest", str(tmp_path))
    assert code == 1
    assert output.startswith("Error: invalid plugin name") and reason in output
    assert output.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


def test_unknown_kind_is_a_usage_error(tmp_path: Path) -> None:
    code, output = new("widget", "demo", "--dest", str(tmp_path))
    assert code == 2 and "'widget' is not one of" in output
    with pytest.raises(ScaffoldError, match="unknown plugin kind"):
        create_plugin("widget", "demo", tmp_path)


def test_existing_destination_is_refused(tmp_path: Path) -> None:
    (tmp_path / "refactorbot-slice-demo").mkdir()
    (tmp_path / "refactorbot-slice-demo" / "mine.txt").write_text("keep me")
    code, output = new("slice", "demo", "--dest", str(tmp_path))
    assert code == 1
    assert "refactorbot-slice-demo already exists" in output and output.count("\n") == 1
    assert all_files(tmp_path) == ["refactorbot-slice-demo/mine.txt"]


def test_default_destination_is_plugins_when_present(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert create_plugin("slice", "first") == tmp_path / "refactorbot-slice-first"
    (tmp_path / "plugins").mkdir()
    assert create_plugin("slice", "second") == tmp_path / "plugins" / "refactorbot-slice-second"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plugins", "refactorbot-slice-first"]


def test_slice_plugin_is_renamed_throughout(tmp_path: Path) -> None:
    code, output = new("slice", "my_notes", "--dest", str(tmp_path))
    assert code == 0, output
    root = tmp_path / "refactorbot-slice-my-notes"
    assert f"Created {root}" in output
    assert all_files(root) == [
        "README.md",
        "pyproject.toml",
        "src/refactorbot_slice_my_notes/__init__.py",
        "src/refactorbot_slice_my_notes/migrations/0001_initial.sql",
        "src/refactorbot_slice_my_notes/plugin.py",
        "src/refactorbot_slice_my_notes/py.typed",
        "tests/test_plugin.py",
    ]
    for path in root.rglob("*"):
        if path.is_file():
            assert "example" not in path.read_text().lower(), path
    pyproject = (root / "pyproject.toml").read_text()
    assert 'name = "refactorbot-slice-my-notes"' in pyproject
    assert 'my_notes = "refactorbot_slice_my_notes.plugin"' in pyproject
    assert 'packages = ["src/refactorbot_slice_my_notes"]' in pyproject
    plugin = (root / "src/refactorbot_slice_my_notes/plugin.py").read_text()
    assert "class MyNotesSlice(AtomicSlice)" in plugin and 'slice_id = "my_notes"' in plugin
    assert "RB_MY_NOTES_MAX_ITEMS" in (root / "README.md").read_text()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "staging folder left behind"


@pytest.mark.parametrize(
    ("kind", "registry", "class_name"),
    [("tool", "tools", "WcTool"), ("gateway", "gateways", "WcGateway"), ("channel", "channels", "WcChannel")],
)
def test_variants_render_and_import(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str, registry: str, class_name: str
) -> None:
    root = create_plugin(kind, "wc", tmp_path)
    package = f"refactorbot_{'tools' if kind == 'tool' else kind}_wc"
    assert all_files(root) == [
        "README.md",
        "pyproject.toml",
        f"src/{package}/__init__.py",
        f"src/{package}/plugin.py",
        f"src/{package}/py.typed",
        "tests/test_plugin.py",
    ]
    for path in root.rglob("*"):
        if path.is_file():
            assert "example" not in path.read_text().lower(), path
    compile((root / "tests/test_plugin.py").read_text(), "test_plugin.py", "exec")
    monkeypatch.syspath_prepend(str(root / "src"))
    module = importlib.import_module(f"{package}.plugin")
    host = PluginHost({})
    record = host.register(module, name=f"refactorbot-{kind}-wc")
    assert record.status == "ok", record.error
    registered = host.registry.of(registry)["wc"]
    assert registered.obj.__name__ == class_name and registered.obj.__module__ == f"{package}.plugin"


def test_template_is_found_from_inside_a_repository(tmp_path: Path) -> None:
    template = tmp_path / "repo" / "plugins" / "_template"
    template.mkdir(parents=True)
    (template / "pyproject.toml").write_text("")
    deep = tmp_path / "repo" / "a" / "b"
    deep.mkdir(parents=True)
    assert find_template(deep) == template
    assert find_template(tmp_path) == TEMPLATE  # outside any repository: the core's own template


def test_build_leftovers_are_not_copied(tmp_path: Path) -> None:
    template = tmp_path / "template"
    shutil.copytree(TEMPLATE, template)
    for junk in ("__pycache__", ".pytest_cache", "src/refactorbot_slice_example.egg-info", "tests/__pycache__"):
        (template / junk).mkdir(parents=True, exist_ok=True)
        (template / junk / "leftover").write_text("x")
    (template / "src/refactorbot_slice_example/plugin.cpython-311.pyc").write_bytes(b"\x00\x01")
    root = create_plugin("slice", "clean", tmp_path / "out", template=template)
    files = all_files(root)
    assert not [f for f in files if "leftover" in f or f.endswith(".pyc")], files
    assert "src/refactorbot_slice_clean/plugin.py" in files


def executable(folder: Path, name: str) -> Path:
    """Create an executable file ``folder/name`` (what ``PATH`` lookups find)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text("#!/bin/sh\n")
    path.chmod(0o755)
    return path


@pytest.fixture
def venv_bin(tmp_path: Path) -> Path:
    """Return the scripts folder of a virtualenv-like layout, with its python."""
    scripts = tmp_path / "env" / "bin"
    executable(scripts, "python")
    return scripts


def test_next_steps_in_an_activated_venv_with_pip(tmp_path: Path, venv_bin: Path) -> None:
    executable(venv_bin, "pip")
    environ = {"PATH": f"{venv_bin}{os.pathsep}{tmp_path / 'usr'}", "VIRTUAL_ENV": str(venv_bin.parent)}
    target = tmp_path / "plugins" / "refactorbot-slice-demo"
    command = next_steps(target, python=str(venv_bin / "python"), environ=environ, has_pip=True)
    assert command == f"pip install -e '{target}[test]' && pytest {target}/tests"


def test_next_steps_name_the_interpreter_when_path_finds_another(tmp_path: Path, venv_bin: Path) -> None:
    other = tmp_path / "elsewhere"
    executable(other, "pip")
    executable(other, "pytest")
    python = str(venv_bin / "python")
    target = tmp_path / "my plugins" / "refactorbot-tools-wc"
    command = next_steps(target, python=python, environ={"PATH": f"{other}{os.pathsep}{venv_bin}"}, has_pip=True)
    assert command == f"{python} -m pip install -e '{target}[test]' && {python} -m pytest '{target}/tests'"


def test_next_steps_without_pip_use_uv_for_that_environment(tmp_path: Path, venv_bin: Path) -> None:
    tools = tmp_path / "tools"
    executable(tools, "uv")
    python = str(venv_bin / "python")
    target = tmp_path / "refactorbot-gateway-demo"
    search = f"{venv_bin}{os.pathsep}{tools}"
    activated = next_steps(
        target, python=python, environ={"PATH": search, "VIRTUAL_ENV": str(venv_bin.parent)}, has_pip=False
    )
    assert activated == f"uv pip install -e '{target}[test]' && pytest {target}/tests"
    other_venv = next_steps(target, python=python, environ={"PATH": tools.as_posix()}, has_pip=False)
    assert other_venv == f"uv pip install --python {python} -e '{target}[test]' && {python} -m pytest {target}/tests"
    bare = next_steps(target, python=python, environ={"PATH": str(venv_bin)}, has_pip=False)
    assert bare.startswith(f"{python} -m ensurepip && {python} -m pip install -e '{target}[test]' && pytest ")


def test_printed_commands_install_and_pass_in_a_fresh_venv(tmp_path: Path) -> None:
    """Follow what ``refactorbot new`` prints, in a fresh venv holding only the core from this checkout.

    Every kind installs with its test extra and passes its own tests with deprecation warnings as
    errors (about 40 s: one venv, four installs).
    """
    uv = shutil.which("uv")
    assert uv is not None, "uv is needed on PATH to build the fresh virtualenv (pip install uv)"
    checkout_core = Path(__file__).resolve().parents[1]
    environ = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTEST_ADDOPTS")}
    venv = tmp_path / "venv"
    subprocess.run([uv, "venv", "-q", "--seed", "--python", sys.executable, str(venv)], check=True, env=environ)
    scripts = venv / ("Scripts" if os.name == "nt" else "bin")
    # A regular (not editable) install of the core, as the README's `pip install .` does: the
    # template then comes from the wheel.
    core = subprocess.run(
        [uv, "pip", "install", "-q", "--python", str(scripts / "python"), str(checkout_core)],
        capture_output=True,
        text=True,
        env=environ,
        check=False,
    )
    assert core.returncode == 0, core.stderr
    activated = {**environ, "VIRTUAL_ENV": str(venv), "PATH": f"{scripts}{os.pathsep}{environ.get('PATH', '')}"}
    dest = tmp_path / "plugins"
    for kind, dist in [
        ("slice", "refactorbot-slice-demo"),
        ("tool", "refactorbot-tools-demo"),
        ("gateway", "refactorbot-gateway-demo"),
        ("channel", "refactorbot-channel-demo"),
    ]:
        created = subprocess.run(
            [str(scripts / "refactorbot"), "new", kind, "demo", "--dest", str(dest)],
            capture_output=True,
            text=True,
            env=activated,
            cwd=tmp_path,
            check=False,
        )
        assert created.returncode == 0, created.stderr
        plugin = dest / dist
        assert created.stdout.splitlines()[0] == f"Created {plugin}"
        command = created.stdout.splitlines()[1].removeprefix("Next: ")
        assert command == f"pip install -e '{plugin}[test]' && pytest {plugin}/tests"
        ran = subprocess.run(
            ["sh", "-c", command],
            capture_output=True,
            text=True,
            env={**activated, "PYTEST_ADDOPTS": "-W error::DeprecationWarning"},
            cwd=tmp_path,
            check=False,
        )
        assert ran.returncode == 0, ran.stdout[-4000:] + ran.stderr[-2000:]
        summary = ran.stdout.strip().splitlines()[-1]
        assert " passed" in summary and "failed" not in summary and "warning" not in summary, summary

    listed = subprocess.run(
        [str(scripts / "refactorbot"), "--home", str(tmp_path / "home"), "plugins", "list", "--json"],
        capture_output=True,
        text=True,
        env=activated,
        check=False,
    )
    assert listed.returncode == 0, listed.stderr
    statuses = {p["name"]: p["status"] for p in json.loads(listed.stdout)}
    assert statuses == {f"refactorbot-{family}-demo": "ok" for family in ("slice", "tools", "gateway", "channel")}
