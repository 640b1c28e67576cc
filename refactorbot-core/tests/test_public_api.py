"""The public API: what plugins may import, and proof that the first-party ones import nothing else.

Three modules are public: ``refactorbot`` (its ``__all__``), ``refactorbot.cli`` for command plugins
and ``refactorbot.testing`` for tests. Every other module of the core is internal. The check walks
the source of every plugin, example and template of this repository (the core's tests run from the
checkout, so they are there) and fails on any import of an internal name.
"""

from __future__ import annotations

import ast
import importlib
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs" / "authoring.md"
PUBLIC_MODULES = ("refactorbot", "refactorbot.cli", "refactorbot.testing")


def public_names(module: str) -> set[str]:
    return set(importlib.import_module(module).__all__)


def plugin_sources() -> list[Path]:
    """Return every source file a plugin author's code lives in: plugins, examples, the template."""
    found: list[Path] = []
    for pattern in ("plugins/*/src/**/*.py", "examples/*/src/**/*.py", "plugins/_template/_variants/*/src/**/*.tmpl"):
        found += ROOT.glob(pattern)
    return sorted(found)


def _public_home(module: str) -> str | None:
    return module if module in PUBLIC_MODULES else None


def private_imports(source: str, filename: str = "<plugin>") -> list[str]:
    """Return one line per use of the core that is not the public API, in ``source``."""
    tree = ast.parse(source, filename)
    found: list[str] = []
    aliases: dict[str, str] = {}  # local name -> public module bound by ``import refactorbot...``

    def where(node: ast.AST) -> str:
        return f"{filename}:{getattr(node, 'lineno', '?')}"

    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            module = node.module
            if module != "refactorbot" and not module.startswith("refactorbot."):
                continue
            if _public_home(module) is None:
                names = ", ".join(a.name for a in node.names)
                found.append(f"{where(node)}: from {module} import {names} (not a public module)")
                continue
            for alias in node.names:
                if alias.name not in public_names(module):
                    found.append(f"{where(node)}: from {module} import {alias.name} (not in {module}.__all__)")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name != "refactorbot" and not alias.name.startswith("refactorbot."):
                    continue
                if _public_home(alias.name) is None:
                    found.append(f"{where(node)}: import {alias.name} (not a public module)")
                elif alias.asname:
                    aliases[alias.asname] = alias.name
                else:
                    aliases["refactorbot"] = "refactorbot"
        elif isinstance(node, ast.Call) and _calls_import(node) and node.args:
            target = node.args[0]
            if isinstance(target, ast.Constant) and isinstance(target.value, str):
                name = target.value
                if name.startswith("refactorbot.") and _public_home(name) is None:
                    found.append(f"{where(node)}: imports {name} by name (not a public module)")
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases:
            module = aliases[node.value.id]
            allowed = public_names(module) | ({"cli", "testing"} if module == "refactorbot" else set())
            if node.attr not in allowed:
                found.append(f"{where(node)}: {module}.{node.attr} (not in {module}.__all__)")
    return found


def private_host_access(source: str, filename: str = "<plugin>") -> list[str]:
    """Return one line per use of a host's private name (``host._slots``, ``ctx.host._state``) in ``source``.

    The host's internals have a leading underscore, pluggy-style; what a plugin may use is public
    and typed by the ``Host`` protocol (``slice_ids()``, ``resources()``, ``master_db()``, ...).
    """
    found: list[str] = []

    def is_host(node: ast.AST) -> bool:
        return (isinstance(node, ast.Name) and node.id == "host") or (
            isinstance(node, ast.Attribute) and node.attr == "host"
        )

    def private(name: object) -> bool:
        return isinstance(name, str) and name.startswith("_") and not name.startswith("__")

    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Attribute) and is_host(node.value) and private(node.attr):
            found.append(f"{filename}:{node.lineno}: {ast.unparse(node)} (a private name of the host)")
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in ("getattr", "setattr", "hasattr")
            and len(node.args) >= 2
            and is_host(node.args[0])
            and isinstance(node.args[1], ast.Constant)
            and private(node.args[1].value)
        ):
            found.append(f"{filename}:{node.lineno}: {ast.unparse(node)} (a private name of the host)")
    return found


def _calls_import(node: ast.Call) -> bool:
    func = node.func
    name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
    return name in ("import_module", "__import__")


# -- the check itself --------------------------------------------------------------------------


def test_the_repository_layout_is_there() -> None:
    sources = plugin_sources()
    dists = {path.relative_to(ROOT).parts[1] for path in sources}
    assert len(dists) >= 15, dists  # every plugin, the example and the template variants
    assert any(path.suffix == ".tmpl" for path in sources)


@pytest.mark.parametrize("path", plugin_sources(), ids=lambda p: str(p.relative_to(ROOT)))
def test_plugin_source_imports_only_the_public_api(path: Path) -> None:
    assert private_imports(path.read_text(), str(path.relative_to(ROOT))) == []


@pytest.mark.parametrize("path", plugin_sources(), ids=lambda p: str(p.relative_to(ROOT)))
def test_plugin_source_uses_no_private_name_of_the_host(path: Path) -> None:
    assert private_host_access(path.read_text(), str(path.relative_to(ROOT))) == []


@pytest.mark.parametrize(
    ("source", "problem"),
    [
        ("host._slots.get('notes')", "host._slots (a private name"),
        ("await self.ctx.host._state.flush()", "self.ctx.host._state (a private name"),
        ("getattr(host, '_allocator')", "getattr(host, '_allocator') (a private name"),
    ],
)
def test_a_private_host_access_is_caught(source: str, problem: str) -> None:
    found = private_host_access(source)
    assert len(found) == 1 and problem in found[0], found


def test_public_host_access_passes() -> None:
    source = (
        "host.slice_ids(); host.resources(); db = await host.master_db(); host.__class__\n"
        "ctx.host.instance('notes'); target.host.startswith('x'); getattr(host, 'serving')\n"
    )
    assert private_host_access(source) == []


def test_the_host_keeps_its_internals_private(tmp_path: Path) -> None:
    from refactorbot import MasterCore, PluginHost, load_settings

    host = MasterCore(load_settings(tmp_path, env={}), PluginHost({}), env={})
    internals = {"state", "slots", "allocator", "order", "gateways", "subset_ids", "inflight", "observers"}
    assert internals.isdisjoint(dir(host)), internals & set(dir(host))
    assert {"_state", "_slots", "_allocator", "_order"} <= set(dir(host))
    assert host.slice_ids() == [] and host.resources() == {} and host.slice_class("notes") is None


@pytest.mark.parametrize(
    ("source", "problem"),
    [
        ("from refactorbot.config import EnvVarName", "from refactorbot.config import EnvVarName (not a public"),
        ("from refactorbot.cli.main import Env", "from refactorbot.cli.main import Env (not a public module)"),
        ("from refactorbot.testing.host import build_host", "from refactorbot.testing.host import build_host"),
        ("from refactorbot import _LAZY", "from refactorbot import _LAZY (not in refactorbot.__all__)"),
        ("from refactorbot import hookspecs", "from refactorbot import hookspecs (not in refactorbot.__all__)"),
        ("from refactorbot.cli import plugin_host", "from refactorbot.cli import plugin_host (not in"),
        ("import refactorbot.master", "import refactorbot.master (not a public module)"),
        ("import refactorbot\nhost = refactorbot.master.MasterCore", "refactorbot.master (not in refactorbot.__all__)"),
        ("import refactorbot as rb\nrb.slice.Host", "refactorbot.slice (not in refactorbot.__all__)"),
        ("def f():\n    from refactorbot.llm import provider_key_envs", "from refactorbot.llm import provider_key"),
        ("import importlib\nimportlib.import_module('refactorbot.state')", "imports refactorbot.state by name"),
    ],
)
def test_a_private_import_is_caught(source: str, problem: str) -> None:
    found = private_imports(source)
    assert len(found) == 1 and problem in found[0], found


def test_public_imports_pass() -> None:
    source = (
        "import refactorbot\nimport refactorbot.testing\n"
        "from refactorbot import AtomicSlice, EnvVarName, Host, hookimpl\n"
        "from refactorbot.cli import Env, echo_json, fail, run\n"
        "from refactorbot.testing import ModelServer, plugin_of\n"
        "version = refactorbot.__version__, refactorbot.testing.host_running\n"
        "import refactorbot_slice_tools.models\nfrom refactorbot_example_notes import plugin\n"
    )
    assert private_imports(source) == []


# -- the public modules ------------------------------------------------------------------------


@pytest.mark.parametrize("module", PUBLIC_MODULES)
def test_every_public_name_resolves(module: str) -> None:
    loaded = importlib.import_module(module)
    missing = [name for name in loaded.__all__ if getattr(loaded, name, None) is None]
    assert missing == []
    assert set(loaded.__all__) <= set(dir(loaded))
    assert all(not name.startswith("_") or name == "__version__" for name in loaded.__all__)


def test_importing_refactorbot_stays_cheap() -> None:
    code = (
        "import sys; import refactorbot; "
        "print(sorted(m for m in sys.modules if m.startswith('refactorbot')));"
        "print('pydantic' in sys.modules, 'pluggy' in sys.modules);"
        "refactorbot.hookimpl; print('pluggy' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split("\n")
    assert out[0] == "['refactorbot', 'refactorbot._version']"
    assert out[1] == "False False"  # not even pluggy, until a plugin asks for ``hookimpl``
    assert out[2] == "True"


def test_hookspecs_import_nothing_but_pluggy() -> None:
    code = (
        "import sys; before = set(sys.modules); import refactorbot.hookspecs; print(sorted(set(sys.modules) - before))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    loaded = {name.split(".")[0] for name in ast.literal_eval(out)}
    assert loaded <= {"refactorbot", "pluggy", "importlib_metadata"} | set(sys.stdlib_module_names), loaded


# -- the docs ----------------------------------------------------------------------------------


def documented(section: str) -> Iterator[tuple[str, str]]:
    """Yield ``(module, name)`` for every name in the tables of docs/authoring.md's public API section."""
    module = "refactorbot"
    for line in section.splitlines():
        heading = re.match(r"^###+ `(refactorbot(?:\.\w+)?)`", line)
        if heading:
            module = heading.group(1)
        elif line.startswith("| ") and not line.startswith("| name") and not line.startswith("|--"):
            for name in re.findall(r"`(\w+)`", line.split("|")[1]):
                yield module, name


def test_docs_list_the_whole_public_api_and_nothing_else() -> None:
    text = DOCS.read_text()
    section = text.split("\n## The public API\n", 1)[1].split("\n## ", 1)[0]
    listed: dict[str, set[str]] = {}
    for module, name in documented(section):
        listed.setdefault(module, set()).add(name)
    for module in PUBLIC_MODULES:
        names = public_names(module)
        assert listed.get(module, set()) == names, (
            f"{module}: undocumented {sorted(names - listed.get(module, set()))}, "
            f"documented but not exported {sorted(listed.get(module, set()) - names)}"
        )
