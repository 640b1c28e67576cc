"""git with its configuration isolated from everything a workspace can plant.

A repository's own configuration (``.git/config`` and what it includes) can name commands git
runs by itself: filters on ``add``/``checkout``, textconv and external diff drivers, merge
drivers, hooks, an fsmonitor, a pager, a work tree somewhere else. ``exec_run`` therefore runs
git with:

- no system or global configuration (``GIT_CONFIG_NOSYSTEM``, ``GIT_CONFIG_GLOBAL=/dev/null``,
  ``GIT_ATTR_NOSYSTEM``, ``HOME`` = the workspace);
- the repository found by us, inside the workspace (``GIT_DIR`` and ``GIT_WORK_TREE`` set, so
  ``core.worktree`` is ignored; ``GIT_CEILING_DIRECTORIES`` so nothing above the workspace is
  ever taken for a repository; a ``.git`` file, ``commondir`` or alternates pointing outside is
  refused);
- command-scope settings (``GIT_CONFIG_COUNT``/``KEY``/``VALUE``, which win over every
  configuration file) that switch off what could run a program or reach outside: the fixed
  ``FIXED`` list, plus, for every such key the repository's effective configuration defines
  (listed with ``git config --list --name-only``), a neutral value (``neutral``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
from pathlib import Path

from refactorbot import PathOutsideWorkspace, ToolError, Workspace

#: Settings given to every git command; the command line wins over any configuration file.
FIXED: tuple[tuple[str, str], ...] = (
    ("core.hooksPath", "/dev/null"),  # no hooks
    ("core.fsmonitor", "false"),  # no fsmonitor hook
    ("core.pager", "cat"),
    ("core.editor", "true"),
    ("sequence.editor", "true"),
    ("core.attributesFile", "/dev/null"),
    ("core.excludesFile", "/dev/null"),
    ("core.sshCommand", "false"),
    ("core.askPass", ""),
    ("credential.helper", ""),  # an empty value clears the list of helpers
    ("protocol.allow", "never"),  # no transport at all, ext:: and file:// included
    ("safe.bareRepository", "explicit"),  # a bare repository is never used unless named
    ("submodule.recurse", "false"),
    ("gc.auto", "0"),  # no background gc / maintenance
    ("maintenance.auto", "false"),
    ("init.templateDir", ""),  # git init copies no templates (hooks included)
    ("commit.gpgSign", "false"),
    ("tag.gpgSign", "false"),
    ("log.showSignature", "false"),
    ("gpg.format", "openpgp"),
    # no signing or verifying: gpg would read its own configuration from HOME (the workspace)
    ("gpg.program", "false"),
    ("gpg.openpgp.program", "false"),
    ("gpg.x509.program", "false"),
    ("gpg.ssh.program", "false"),
    ("interactive.diffFilter", "cat"),
)

#: Keys (lower case) a repository may set that name a program or a file outside: their neutral value.
_EXACT = {
    "diff.external": "",  # an empty external diff fails instead of running; git diff gets --no-ext-diff
    "commit.template": "/dev/null",
    "mailmap.file": "/dev/null",
    "diff.orderfile": "/dev/null",
    "blame.ignorerevsfile": "",  # an empty value clears the list
    "core.gitproxy": "",
    "core.alternaterefscommand": "",
    "gpg.ssh.defaultkeycommand": "",
    "gpg.ssh.allowedsignersfile": "/dev/null",
    "gpg.ssh.revocationfile": "/dev/null",
    "uploadpack.packobjectshook": "",
}
#: ``<section>.<name>.<key>`` families: (section, key) -> neutral value.
_FAMILIES = {
    ("filter", "clean"): "",  # an empty filter is no filter
    ("filter", "smudge"): "",
    ("filter", "process"): "",
    ("filter", "required"): "false",
    ("diff", "textconv"): "cat",  # the file as it is
    ("diff", "command"): "",
    ("diff", "cachetextconv"): "false",
    ("merge", "driver"): "false",  # a custom merge driver always reports a conflict
    ("credential", "helper"): "",
    ("remote", "uploadpack"): "",
    ("remote", "receivepack"): "",
    ("remote", "proxy"): "",
    ("remote", "vcs"): "",
    ("http", "proxy"): "",
    ("difftool", "cmd"): "",
    ("mergetool", "cmd"): "",
    ("browser", "cmd"): "",
    ("man", "cmd"): "",
    ("submodule", "update"): "none",
}
#: Last components that name a program anywhere else (a safety net for sections not listed above).
_COMMAND_KEYS = frozenset(
    {"command", "cmd", "program", "driver", "textconv", "helper", "hookspath", "sshcommand", "askpass", "tunnel"}
)
#: At most this many repository keys are neutralized; more is refused (the environment has limits).
MAX_OVERRIDES = 512


def neutral(key: str) -> str | None:
    """Return the value that neutralizes ``key`` (as ``git config --list`` prints it), or None to keep it."""
    parts = key.split(".")
    section, last = parts[0].lower(), parts[-1].lower()
    if key.lower() in _EXACT:
        return _EXACT[key.lower()]
    if section == "pager" and len(parts) == 2:
        return "false"  # pager.<command>: never page
    if len(parts) >= 3 and (section, last) in _FAMILIES:
        return _FAMILIES[(section, last)]
    if last in _COMMAND_KEYS and section not in ("core", "sequence", "gpg", "interactive"):
        return ""
    return None


@dataclasses.dataclass(frozen=True)
class Repository:
    """The repository a git command works in: its git folder and work tree, both in the workspace."""

    git_dir: Path
    work_tree: Path


def find_repository(workspace: Workspace, cwd: Path) -> Repository | None:
    """Find the repository git would use from ``cwd``, without leaving the workspace.

    Like git's discovery, the nearest ``.git`` (a folder, or a file saying ``gitdir: <path>``)
    from ``cwd`` up to the workspace root wins. Everything it points to must be in the workspace.
    """
    folder = cwd
    while True:
        dotgit = folder / ".git"
        if os.path.lexists(dotgit):
            git_dir = _git_dir(workspace, dotgit)
            _check_git_dir(workspace, git_dir)
            return Repository(git_dir=git_dir, work_tree=folder)
        if folder == workspace.root or workspace.root not in folder.parents:
            return None
        folder = folder.parent


def _inside(workspace: Workspace, path: str | os.PathLike[str], what: str) -> Path:
    real = Path(os.path.realpath(path))
    if not workspace.contains(real):
        raise PathOutsideWorkspace(f"{what} points outside the workspace; git is not run")
    return real


def _git_dir(workspace: Workspace, dotgit: Path) -> Path:
    shown = workspace.relative(dotgit)
    if os.path.isdir(dotgit):
        return _inside(workspace, dotgit, f"'{shown}'")
    if not os.path.isfile(dotgit):
        raise ToolError(f"'{shown}' is neither a folder nor a 'gitdir:' file; git is not run")
    try:
        with open(dotgit, encoding="utf-8", errors="replace") as handle:
            line = handle.read(4096).splitlines()[0] if os.path.getsize(dotgit) else ""
    except (OSError, IndexError):
        line = ""
    if not line.startswith("gitdir: "):
        raise ToolError(f"'{shown}' is a file without a 'gitdir: <path>' line; git is not run")
    target = _inside(workspace, dotgit.parent / line[len("gitdir: ") :].strip(), f"'{shown}'")
    if not target.is_dir():
        raise ToolError(f"'{shown}' points to a folder that does not exist; git is not run")
    return target


def _check_git_dir(workspace: Workspace, git_dir: Path) -> None:
    """Refuse a git folder that leads outside: commondir, alternates, symlinked entries."""
    shown = workspace.relative(git_dir)
    common = git_dir
    commondir = git_dir / "commondir"
    if commondir.is_file():
        value = commondir.read_text(encoding="utf-8", errors="replace").strip()
        common = _inside(workspace, git_dir / value, f"'{shown}/commondir'")
    for folder in {git_dir, common, common / "objects"}:
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            if entry.is_symlink():
                _inside(workspace, entry.path, f"'{workspace.relative(entry.path)}'")
    seen: set[Path] = set()
    pending = [common / "objects"]
    while pending:
        objects = pending.pop()
        if objects in seen:
            continue
        seen.add(objects)
        alternates = objects / "info" / "alternates"
        if not alternates.is_file():
            continue
        for raw in alternates.read_text(encoding="utf-8", errors="replace").splitlines():
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            if line.startswith('"'):
                raise ToolError(f"'{workspace.relative(alternates)}' has a quoted entry; git is not run")
            pending.append(_inside(workspace, objects / line, f"'{workspace.relative(alternates)}'"))


def base_environment(workspace: Workspace, repository: Repository | None, *, init: bool) -> dict[str, str]:
    """Return the git variables of the child's environment (without the configuration overrides)."""
    env = {
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_ATTR_NOSYSTEM": "1",
        "GIT_CEILING_DIRECTORIES": str(workspace.root.parent),
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_PAGER": "cat",
        "GIT_EDITOR": "true",
        "GIT_SEQUENCE_EDITOR": "true",
        "GIT_NO_LAZY_FETCH": "1",
        "GIT_PROTOCOL_FROM_USER": "0",
    }
    if repository is not None and not init:
        env["GIT_DIR"] = str(repository.git_dir)
        env["GIT_WORK_TREE"] = str(repository.work_tree)
    return env


async def repository_keys(git: str, env: dict[str, str], cwd: Path, timeout: float) -> list[str]:
    """Return every key of the repository's effective configuration (includes followed)."""
    try:
        proc = await asyncio.create_subprocess_exec(
            "git",
            "config",
            "--list",
            "--name-only",
            "-z",
            executable=git,
            cwd=cwd,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
    except OSError as exc:
        raise ToolError(f"cannot start git: {exc.strerror or exc}") from None
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise ToolError("reading the repository's git configuration timed out; git is not run") from None
    if proc.returncode != 0:
        lines = [line for line in err.decode("utf-8", "replace").splitlines() if line.strip()]
        reason = lines[0][:200] if lines else f"status {proc.returncode}"
        raise ToolError(f"cannot read the repository's git configuration: {reason}")
    return [key for key in out.decode("utf-8", "surrogateescape").split("\0") if key]


def overrides(keys: list[str]) -> list[tuple[str, str]]:
    """Return ``FIXED`` plus a neutral setting for every dangerous key among ``keys``."""
    chosen = {name.lower(): (name, value) for name, value in FIXED}
    for key in keys:
        value = neutral(key)
        canonical = _canonical(key)
        if value is not None and canonical not in chosen:
            chosen[canonical] = (key, value)
    if len(chosen) - len(FIXED) > MAX_OVERRIDES:
        raise ToolError(f"the repository's git configuration sets more than {MAX_OVERRIDES} commands; git is not run")
    return list(chosen.values())


def _canonical(key: str) -> str:
    # Section and key are case-insensitive, a subsection is not.
    parts = key.split(".")
    if len(parts) < 3:
        return key.lower()
    return ".".join([parts[0].lower(), *parts[1:-1], parts[-1].lower()])


def config_environment(settings: list[tuple[str, str]]) -> dict[str, str]:
    """Return ``GIT_CONFIG_COUNT``/``KEY_n``/``VALUE_n`` for ``settings`` (no quoting problems, unlike ``-c``)."""
    env = {"GIT_CONFIG_COUNT": str(len(settings))}
    for index, (key, value) in enumerate(settings):
        env[f"GIT_CONFIG_KEY_{index}"] = key
        env[f"GIT_CONFIG_VALUE_{index}"] = value
    return env
