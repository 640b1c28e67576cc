"""Test every distribution in its own virtualenv, then everything together.

nox                      # lint, core, every plugin and example, integration, coverage
nox -s "plugin(refactorbot-slice-memory)"
nox -s coverage          # one report over the data the core and plugin sessions left
nox -s bench             # benchmarks (numbers go to docs/benchmarks.md)

The core and each plugin session run their tests under coverage.py (configured in the root
pyproject.toml: subprocesses measured, fail under 85 %) with that distribution's ``src/`` as the
source, and leave their data in build/coverage/<distribution>/.
"""

from __future__ import annotations

import pathlib
import shutil
import tomllib

import nox

ROOT = pathlib.Path(__file__).parent
CORE = "refactorbot-core"

nox.options.default_venv_backend = "uv|virtualenv"
nox.options.reuse_existing_virtualenvs = False
nox.options.sessions = ["lint", "core", "plugin", "integration", "coverage"]

#: coverage.py 7.10 brought ``[run] patch = ["subprocess"]`` (measure every Python subprocess).
COVERAGE = "coverage>=7.10"
COVERAGE_DATA = ROOT / "build" / "coverage"


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


def _covered_tests(session: nox.Session, dist: str) -> None:
    """Run ``<dist>/tests`` under coverage.py with ``<dist>/src`` as the source; fail under the bar.

    The data files (the pytest process and every Python subprocess it starts) go to
    build/coverage/<name>/, emptied first, and are combined there into one ``.coverage`` file
    for ``nox -s coverage``. The path is absolute so subprocesses running elsewhere write there too.
    """
    data = COVERAGE_DATA / dist.split("/")[-1]
    shutil.rmtree(data, ignore_errors=True)
    data.mkdir(parents=True)
    env = {"COVERAGE_FILE": str(data / ".coverage")}
    source = f"--source={ROOT / dist / 'src'}"
    session.run("coverage", "run", source, "-m", "pytest", str(ROOT / dist / "tests"), *session.posargs, env=env)
    session.run("coverage", "combine", "--quiet", env=env)
    session.run("coverage", "report", env=env)  # fail_under (pyproject.toml) fails the session


@nox.session
def core(session: nox.Session) -> None:
    """Test refactorbot-core on its own, under coverage."""
    session.install("-e", f"{CORE}[testing]", COVERAGE)
    _covered_tests(session, CORE)


@nox.session
@nox.parametrize("dist", distributions(), ids=[d.split("/")[-1] for d in distributions()])
def plugin(session: nox.Session, dist: str) -> None:
    """Test one plugin or example with only what it declares (plus the core), under coverage."""
    session.install("-e", f"{CORE}[testing]", "-e", f"{dist}{_extras(dist)}", *_test_siblings(dist), COVERAGE)
    _covered_tests(session, dist)


@nox.session
def coverage(session: nox.Session) -> None:
    """Combine the data the core and plugin sessions left into one report.

    Terminal table, build/coverage/html/index.html and build/coverage/coverage.xml. It reads what
    the last run of each of those sessions left, so after `nox -s "plugin(X)"` alone the other
    distributions' rows are from their last run.
    """
    session.install(COVERAGE)
    files = sorted(str(path) for path in COVERAGE_DATA.glob("*/.coverage"))
    if not files:
        session.error("no coverage data under build/coverage/: run the core and plugin sessions first")
    env = {"COVERAGE_FILE": str(COVERAGE_DATA / ".coverage")}
    session.run("coverage", "combine", "--keep", "--quiet", *files, env=env)
    session.run("coverage", "html", "--quiet", env=env)
    session.run("coverage", "xml", "--quiet", env=env)
    session.run("coverage", "report", env=env)


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
