"""Test every distribution in its own virtualenv, then everything together.

nox                      # lint, core, every plugin and example, integration
nox -s "plugin(refactorbot-slice-memory)"
nox -s bench             # benchmarks (numbers go to docs/benchmarks.md)
"""

from __future__ import annotations

import pathlib
import tomllib

import nox

ROOT = pathlib.Path(__file__).parent
CORE = "refactorbot-core"

nox.options.default_venv_backend = "uv|virtualenv"
nox.options.reuse_existing_virtualenvs = False
nox.options.sessions = ["lint", "core", "plugin", "integration"]


def distributions() -> list[str]:
    """Return every distribution folder under plugins/ and examples/ (the template included)."""
    found = []
    for parent in ("plugins", "examples"):
        for pyproject in sorted((ROOT / parent).glob("*/pyproject.toml")):
            found.append(str(pyproject.parent.relative_to(ROOT)))
    return found


def _project(dist: str) -> dict:
    return tomllib.loads((ROOT / dist / "pyproject.toml").read_text())


def _extras(dist: str) -> str:
    extras = _project(dist).get("project", {}).get("optional-dependencies", {})
    return "[test]" if "test" in extras else ""


def _test_siblings(dist: str) -> list[str]:
    """Return sibling distributions a plugin's tests use (``[tool.refactorbot.test] siblings``).

    Only for tests: siblings are not published, so they cannot be test extras. The plugin's
    own runtime dependencies still install from its ``dependencies`` alone.
    """
    siblings = _project(dist).get("tool", {}).get("refactorbot", {}).get("test", {}).get("siblings", [])
    return [arg for sibling in siblings for arg in ("-e", f"{sibling}{_extras(sibling)}")]


@nox.session
def core(session: nox.Session) -> None:
    """Test refactorbot-core on its own."""
    session.install("-e", f"{CORE}[testing]")
    session.run("pytest", f"{CORE}/tests", *session.posargs)


@nox.session
@nox.parametrize("dist", distributions(), ids=[d.split("/")[-1] for d in distributions()])
def plugin(session: nox.Session, dist: str) -> None:
    """Test one plugin or example with only what it declares (plus the core)."""
    session.install("-e", f"{CORE}[testing]", "-e", f"{dist}{_extras(dist)}", *_test_siblings(dist))
    session.run("pytest", f"{dist}/tests", *session.posargs)


def _install_everything(session: nox.Session) -> None:
    args = ["-e", f"{CORE}[testing]"]
    for dist in distributions():
        if not dist.endswith("_template"):
            args += ["-e", f"{dist}{_extras(dist)}"]
    session.install(*args)


@nox.session
def integration(session: nox.Session) -> None:
    """Install every distribution together and run tests/."""
    _install_everything(session)
    session.run("pytest", "tests", "--ignore=tests/bench", *session.posargs)


#: Type stubs of the libraries the sources import that ship no types of their own.
STUBS = ["types-psutil", "types-jsonschema", "pandas-stubs"]


def typed_packages() -> list[str]:
    """Return the package folder of the core and of every distribution's ``src/`` (the template included).

    Each is a distinct top-level module (``refactorbot``, ``refactorbot_slice_agent``, ...), so one
    mypy run checks them all, each against the others' installed types.
    """
    found = [f"{CORE}/src/refactorbot"]
    for dist in distributions():
        found += sorted(str(init.parent.relative_to(ROOT)) for init in (ROOT / dist / "src").glob("*/__init__.py"))
    return found


@nox.session
def lint(session: nox.Session) -> None:
    """ruff (lint + format) everywhere, mypy --strict on the core and every plugin and example."""
    _install_everything(session)
    session.install("ruff", "mypy", *STUBS)
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    session.run("mypy", *typed_packages())


@nox.session
def bench(session: nox.Session) -> None:
    """Run the benchmarks and print their numbers (see docs/benchmarks.md)."""
    _install_everything(session)
    wanted = session.posargs  # e.g. `nox -s bench -- core agent` runs bench_core.py and bench_agent.py
    for script in sorted((ROOT / "tests" / "bench").glob("bench_*.py")):
        if not wanted or script.stem.removeprefix("bench_") in wanted:
            session.run("python", str(script))
