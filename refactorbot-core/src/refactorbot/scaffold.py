"""``refactorbot new``: create a plugin distribution from the template, names filled in.

The template (``plugins/_template`` in the repository, packaged as ``refactorbot/_template``) is a
working slice plugin named ``refactorbot-slice-example``. Other kinds swap in the files under
``_variants/<kind>/``, which mirror the template's layout (``.tmpl`` keeps them from being
imported or collected as they are).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import keyword
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path

from refactorbot.errors import RefactorbotError

KINDS = ("slice", "tool", "gateway", "channel")
TEMPLATE_DIST = "refactorbot-slice-example"
TEMPLATE_PACKAGE = "refactorbot_slice_example"
VARIANTS = "_variants"
VARIANT_SUFFIX = ".tmpl"
NAME_MAX = 40
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_SKIP_DIRS = {"__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache", ".nox", ".venv", "build", "dist"}


class ScaffoldError(RefactorbotError):
    """Raise when ``refactorbot new`` cannot create the plugin (bad name, existing folder, no template)."""


@dataclasses.dataclass(frozen=True)
class PluginNames:
    """Every name a new plugin needs, derived from its kind and short name."""

    kind: str
    name: str

    @property
    def family(self) -> str:
        """Return the naming family: ``tools`` for tool handlers, else the kind itself."""
        return "tools" if self.kind == "tool" else self.kind

    @property
    def dist(self) -> str:
        """Return the distribution name, ``refactorbot-<family>-<name>`` (``refactorbot-tools-<name>`` for a tool)."""
        return f"refactorbot-{self.family}-{self.name.replace('_', '-')}"

    @property
    def package(self) -> str:
        """Return the import name, ``refactorbot_<family>_<name>``."""
        return f"refactorbot_{self.family}_{self.name}"

    @property
    def class_prefix(self) -> str:
        """Return the CamelCase prefix of class names (``my_notes`` -> ``MyNotes``)."""
        return "".join(part.capitalize() for part in self.name.split("_"))

    @property
    def env_prefix(self) -> str:
        """Return the prefix of the plugin's ``RB_*`` variables."""
        return f"RB_{self.name.upper()}_"

    def render(self, text: str) -> str:
        """Return template text with the placeholder names replaced by this plugin's."""
        text = text.replace(TEMPLATE_DIST, self.dist).replace(TEMPLATE_PACKAGE, self.package)
        text = text.replace("RB_EXAMPLE_", self.env_prefix)
        text = re.sub(r"Example(?=[A-Z])", self.class_prefix, text)
        return re.sub(r"\bexample\b", self.name, text)


def plugin_names(kind: str, name: str) -> PluginNames:
    """Return the names of a new plugin, or raise ``ScaffoldError`` saying what is wrong with them."""
    if kind not in KINDS:
        raise ScaffoldError(f"unknown plugin kind {kind!r} (choose one of: {', '.join(KINDS)})")
    if not _NAME.match(name):
        raise ScaffoldError(
            f"invalid plugin name {name!r}: use lowercase letters, digits and '_', starting with a letter"
        )
    if len(name) > NAME_MAX:
        raise ScaffoldError(f"invalid plugin name {name!r}: at most {NAME_MAX} characters")
    if keyword.iskeyword(name):
        raise ScaffoldError(f"invalid plugin name {name!r}: it is a Python keyword")
    return PluginNames(kind, name)


def find_template(start: Path | None = None) -> Path:
    """Return the template folder: the repository's ``plugins/_template``, else the packaged copy."""
    here = (start or Path.cwd()).resolve()
    candidates = [folder / "plugins" / "_template" for folder in (here, *here.parents)]
    package_dir = Path(__file__).resolve().parent
    candidates.append(package_dir / "_template")  # installed from a wheel
    candidates.append(package_dir.parents[2] / "plugins" / "_template")  # editable install of a checkout
    for candidate in candidates:
        if (candidate / "pyproject.toml").is_file():
            return candidate
    raise ScaffoldError("no plugin template found: run inside the refactorbot repository or reinstall refactorbot-core")


def default_destination(cwd: Path | None = None) -> Path:
    """Return ``./plugins`` when it exists, else the current directory."""
    cwd = cwd or Path.cwd()
    plugins = cwd / "plugins"
    return plugins if plugins.is_dir() else cwd


def create_plugin(kind: str, name: str, dest: str | Path | None = None, *, template: Path | None = None) -> Path:
    """Create ``<dest>/<names.dist>`` (``refactorbot-slice-<name>``, ``refactorbot-tools-<name>``, ...); return its path."""
    names = plugin_names(kind, name)
    base = Path(dest) if dest is not None else default_destination()
    target = base / names.dist
    if target.exists():
        raise ScaffoldError(f"{target} already exists; choose another name or --dest")
    source = template or find_template()
    files = dict(template_files(source, kind))
    base.mkdir(parents=True, exist_ok=True)
    # Render into a sibling folder, then rename it: a failure never leaves half a plugin behind.
    staging = Path(tempfile.mkdtemp(prefix=f".{names.dist}-", dir=base))
    try:
        shutil.copymode(source, staging)  # mkdtemp makes it private; give it the template's mode
        for relative, origin in sorted(files.items()):
            out = staging / names.render(relative)
            out.parent.mkdir(parents=True, exist_ok=True)
            _copy_rendered(origin, out, names)
        os.replace(staging, target)
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise ScaffoldError(f"cannot create {target}: {exc}") from exc
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def template_files(template: Path, kind: str) -> Iterator[tuple[str, Path]]:
    """Yield ``(relative path, source file)`` of the plugin ``kind`` built from ``template``.

    Variant files replace (or add to) the template's files at the same relative path; kinds
    other than ``slice`` have no database, so the template's migrations are left out.
    """
    chosen: dict[str, Path] = {}
    for path in _walk(template):
        relative = path.relative_to(template).as_posix()
        if relative.split("/")[0] == VARIANTS:
            continue
        if kind != "slice" and "/migrations/" in f"/{relative}":
            continue
        chosen[relative] = path
    if kind != "slice":
        variant = template / VARIANTS / kind
        if not variant.is_dir():
            raise ScaffoldError(f"the template at {template} has no {kind} variant ({VARIANTS}/{kind})")
        for path in _walk(variant):
            relative = path.relative_to(variant).as_posix()
            chosen[relative.removesuffix(VARIANT_SUFFIX)] = path
    yield from chosen.items()


def _walk(folder: Path) -> Iterator[Path]:
    for root, dirs, filenames in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if d not in _SKIP_DIRS and not d.endswith(".egg-info"))
        for filename in sorted(filenames):
            if not filename.endswith((".pyc", ".pyo")):
                yield Path(root) / filename


def _copy_rendered(origin: Path, out: Path, names: PluginNames) -> None:
    data = origin.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        out.write_bytes(data)  # not text: copied as it is
    else:
        out.write_text(names.render(text), encoding="utf-8", newline="")
    shutil.copymode(origin, out)


def next_steps(
    target: Path,
    *,
    python: str | None = None,
    environ: Mapping[str, str] | None = None,
    has_pip: bool | None = None,
) -> str:
    """Return the shell command installing the plugin at ``target`` with its tests, then running them.

    It installs into the environment of ``python`` (default: the one running refactorbot), where
    ``refactorbot-core`` is already installed; that matters because the core is not published,
    so no index could provide it elsewhere. ``pip``/``pytest`` are written bare only when ``PATH``
    reaches that environment's scripts before any other ``pip``/``pytest``; otherwise
    ``python -m pip`` (or ``uv pip --python`` when the environment has no pip) and
    ``python -m pytest`` name it. ``has_pip`` says whether the environment has pip (default: looked
    up when ``python`` is this interpreter).
    """
    python = python or sys.executable
    environ = os.environ if environ is None else environ
    if has_pip is None:
        has_pip = python == sys.executable and importlib.util.find_spec("pip") is not None
    search = environ.get("PATH", "")
    scripts = Path(python).parent
    prefix = scripts.parent

    def ours(command: str) -> bool:
        for folder in filter(None, search.split(os.pathsep)):
            if _same(Path(folder), scripts):
                return True
            if shutil.which(command, path=folder):
                return False
        return False

    py = _quote(python)
    if has_pip:
        install = "pip install" if ours("pip") else f"{py} -m pip install"
    elif shutil.which("uv", path=search):
        venv = environ.get("VIRTUAL_ENV")
        install = "uv pip install" if venv and _same(Path(venv), prefix) else f"uv pip install --python {py}"
    else:
        install = f"{py} -m ensurepip && {py} -m pip install"
    run = "pytest" if ours("pytest") else f"{py} -m pytest"
    return f"{install} -e {_quote(f'{target}[test]')} && {run} {_quote(str(target / 'tests'))}"


def _same(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except OSError:
        return False


def _quote(argument: str) -> str:
    return subprocess.list2cmdline([argument]) if os.name == "nt" else shlex.quote(argument)
