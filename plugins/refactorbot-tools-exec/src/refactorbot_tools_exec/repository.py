"""The repository a git command of ``exec_run`` works in, found without leaving the workspace.

git's configuration is isolated by ``refactorbot.git_environment`` (no system or global
configuration, command-scope settings that switch off everything that could run a program, and a
neutral value for each such key the repository's own configuration sets). What this module adds
is where git may look:

- the repository is found by us, like git's discovery but never above the workspace: the nearest
  ``.git`` from ``cwd`` up to the workspace root, passed as ``GIT_DIR`` and ``GIT_WORK_TREE``
  (``core.worktree`` is then ignored), with ``GIT_CEILING_DIRECTORIES`` at the workspace's parent;
- everything the ``.git`` entry leads to (its ``gitdir:`` target, ``commondir``, alternates,
  symlinked entries) must be in the workspace, with one exception: a **linked worktree** (``git
  worktree add``) whose ``.git`` file names ``<repository>/.git/worktrees/<name>``, where the
  repository registered this very ``.git`` file as that worktree (``worktrees/<name>/gitdir``
  names it back, ``commondir`` leads to the repository's git folder). Only the repository itself
  writes that registration, outside the workspace, so a planted ``.git`` file cannot claim one.
  The repository's git folder is then reachable by git only: in the OS sandbox it is mounted for
  git commands alone, with its ``config``, ``hooks``, ``info`` and the other worktrees' folders
  read-only.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from refactorbot import PathOutsideWorkspace, ToolError, Workspace

#: Folders and files of a linked worktree's repository that git commands of the worktree only read.
READ_ONLY = ("config", "hooks", "info", "worktrees")


@dataclasses.dataclass(frozen=True)
class Repository:
    """The repository a git command works in: its git folder and work tree.

    ``common_dir`` is set for a linked worktree whose repository lies outside the workspace: its
    git folder, which git must reach too.
    """

    git_dir: Path
    work_tree: Path
    common_dir: Path | None = None

    def mounts(self) -> list[tuple[str, Path]]:
        """Return the sandbox mounts git needs beyond the workspace, in order: ``("rw" | "ro", path)``.

        The repository's git folder is writable (objects, refs, logs, packed refs), then its
        configuration, hooks and other worktrees are put back read-only, then this worktree's own
        folder writable again (its index, HEAD and logs).
        """
        if self.common_dir is None:
            return []
        found: list[tuple[str, Path]] = [("rw", self.common_dir)]
        found += [("ro", self.common_dir / name) for name in READ_ONLY if os.path.lexists(self.common_dir / name)]
        found.append(("rw", self.git_dir))
        return found


def find_repository(workspace: Workspace, cwd: Path) -> Repository | None:
    """Find the repository git would use from ``cwd``, without leaving the workspace.

    Like git's discovery, the nearest ``.git`` (a folder, or a file saying ``gitdir: <path>``)
    from ``cwd`` up to the workspace root wins. Everything it points to must be in the workspace,
    or be the repository of a registered linked worktree.
    """
    folder = cwd
    while True:
        dotgit = folder / ".git"
        if os.path.lexists(dotgit):
            git_dir, common = _git_dir(workspace, dotgit)
            _check_git_dir(workspace, git_dir, common)
            return Repository(git_dir=git_dir, work_tree=folder, common_dir=common)
        if folder == workspace.root or workspace.root not in folder.parents:
            return None
        folder = folder.parent


def git_variables(workspace: Workspace, repository: Repository | None, *, init: bool) -> dict[str, str]:
    """Return the variables that pin git to ``repository`` and keep it from looking above the workspace."""
    env = {"GIT_CEILING_DIRECTORIES": str(workspace.root.parent)}
    if repository is not None and not init:
        env["GIT_DIR"] = str(repository.git_dir)
        env["GIT_WORK_TREE"] = str(repository.work_tree)
    return env


def _inside(allowed: list[Path], workspace: Workspace, path: str | os.PathLike[str], what: str) -> Path:
    real = Path(os.path.realpath(path))
    if not workspace.contains(real) and not any(real == a or a in real.parents for a in allowed):
        raise PathOutsideWorkspace(f"{what} points outside the workspace; git is not run")
    return real


def _git_dir(workspace: Workspace, dotgit: Path) -> tuple[Path, Path | None]:
    """Return the git folder ``dotgit`` leads to and, for a registered linked worktree, its repository's."""
    shown = workspace.relative(dotgit)
    if os.path.isdir(dotgit):
        return _inside([], workspace, dotgit, f"'{shown}'"), None
    if not os.path.isfile(dotgit):
        raise ToolError(f"'{shown}' is neither a folder nor a 'gitdir:' file; git is not run")
    try:
        with open(dotgit, encoding="utf-8", errors="replace") as handle:
            line = handle.read(4096).splitlines()[0] if os.path.getsize(dotgit) else ""
    except (OSError, IndexError):
        line = ""
    if not line.startswith("gitdir: "):
        raise ToolError(f"'{shown}' is a file without a 'gitdir: <path>' line; git is not run")
    raw = dotgit.parent / line[len("gitdir: ") :].strip()
    target = Path(os.path.realpath(raw))
    common = None if workspace.contains(target) else _registered_worktree(dotgit, target)
    if common is None:
        target = _inside([], workspace, raw, f"'{shown}'")
    if not target.is_dir():
        raise ToolError(f"'{shown}' points to a folder that does not exist; git is not run")
    return target, common


def _registered_worktree(dotgit: Path, target: Path) -> Path | None:
    """Return the repository's git folder when ``target`` is the linked worktree registered at ``dotgit``."""
    if os.path.islink(dotgit) or target.parent.name != "worktrees" or not target.is_dir():
        return None
    try:
        back = (target / "gitdir").read_text(encoding="utf-8", errors="replace").strip()
        common_value = (target / "commondir").read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        return None
    if not back or os.path.realpath(target / back) != os.path.realpath(dotgit):
        return None
    common = Path(os.path.realpath(target / common_value))
    if common != target.parent.parent or not (common / "objects").is_dir() or not (common / "HEAD").is_file():
        return None
    return common


def _check_git_dir(workspace: Workspace, git_dir: Path, linked: Path | None) -> None:
    """Refuse a git folder that leads outside: commondir, alternates, symlinked entries."""
    allowed = [linked] if linked is not None else []
    shown = _shown(workspace, git_dir)
    common = git_dir
    commondir = git_dir / "commondir"
    if commondir.is_file():
        value = commondir.read_text(encoding="utf-8", errors="replace").strip()
        common = _inside(allowed, workspace, git_dir / value, f"'{shown}/commondir'")
    for folder in {git_dir, common, common / "objects"}:
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            if entry.is_symlink():
                _inside(allowed, workspace, entry.path, f"'{_shown(workspace, entry.path)}'")
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
        where = _shown(workspace, alternates)
        for raw in alternates.read_text(encoding="utf-8", errors="replace").splitlines():
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            if line.startswith('"'):
                raise ToolError(f"'{where}' has a quoted entry; git is not run")
            pending.append(_inside(allowed, workspace, objects / line, f"'{where}'"))


def _shown(workspace: Workspace, path: str | os.PathLike[str]) -> str:
    return workspace.relative(path) if workspace.contains(path) else os.fspath(path)
