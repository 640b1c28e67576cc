"""Which files of a workspace are indexed: everything git would not ignore.

The workspace is walked without following symlinks. ``.gitignore`` files are honoured at every
level with git's rules (``pathspec.GitIgnoreSpec``: a deeper file wins over a shallower one, the
last matching line of a file wins, ``!`` re-includes, a folder that is ignored is not entered),
then ``.git/info/exclude`` when ``.git`` is a folder of the workspace, then the configured
``exclude`` patterns (lowest precedence, gitignore syntax). git itself is not run: a workspace's
git configuration is never consulted, and a ``git worktree`` (whose ``.git`` is a file pointing
outside the workspace) is listed the same way. Version-control folders are never listed;
symlinks, devices and sockets are skipped.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator, Sequence
from typing import Any

VCS_DIRS = frozenset({".git", ".hg", ".svn", ".bzr"})
_SPEC_CACHE: dict[tuple[str, int, int], Any] = {}


def _spec(lines: Sequence[str]) -> Any:
    from pathspec import GitIgnoreSpec

    return GitIgnoreSpec.from_lines(lines)


def _read_ignore_file(path: str) -> Any:
    """Return the ``GitIgnoreSpec`` of an ignore file (cached by mtime and size), or None."""
    try:
        info = os.stat(path, follow_symlinks=False)
    except OSError:
        return None
    if not stat.S_ISREG(info.st_mode) or info.st_size > 1_000_000:
        return None
    key = (path, info.st_mtime_ns, info.st_size)
    cached = _SPEC_CACHE.get(key)
    if cached is None:
        try:
            with open(path, encoding="utf-8", errors="replace") as handle:
                cached = _spec(handle.read().splitlines())
        except OSError:
            return None
        if len(_SPEC_CACHE) > 4096:
            _SPEC_CACHE.clear()
        _SPEC_CACHE[key] = cached
    return cached


def walk(root: str, exclude: Sequence[str]) -> Iterator[tuple[str, os.stat_result]]:
    """Yield ``(relative path, stat)`` of every regular file under ``root`` that is not ignored."""
    base: list[tuple[str, Any]] = []
    if exclude:
        base.append(("", _spec(exclude)))
    info_exclude = os.path.join(root, ".git", "info", "exclude")
    if os.path.isdir(os.path.join(root, ".git")) and not os.path.islink(os.path.join(root, ".git")):
        spec = _read_ignore_file(info_exclude)
        if spec is not None:
            base.append(("", spec))
    yield from _walk_dir(root, "", base)


def _ignored(specs: list[tuple[str, Any]], rel: str, is_dir: bool) -> bool:
    for prefix, spec in reversed(specs):  # deepest (and highest precedence) first
        sub = rel[len(prefix) :] if prefix else rel
        result = spec.check_file(sub + "/" if is_dir else sub)
        if result.include is not None:
            return bool(result.include)
    return False


def _walk_dir(root: str, prefix: str, specs: list[tuple[str, Any]]) -> Iterator[tuple[str, os.stat_result]]:
    folder = os.path.join(root, prefix) if prefix else root
    own = _read_ignore_file(os.path.join(folder, ".gitignore"))
    if own is not None:
        specs = [*specs, (prefix, own)]
    try:
        with os.scandir(folder) as entries:
            listed = sorted(entries, key=lambda e: e.name)
    except OSError:
        return
    for entry in listed:
        if entry.name in VCS_DIRS:
            continue
        rel = prefix + entry.name
        try:
            if entry.is_symlink():
                continue
            if entry.is_dir(follow_symlinks=False):
                if specs and _ignored(specs, rel, True):
                    continue
                yield from _walk_dir(root, rel + "/", specs)
            elif entry.is_file(follow_symlinks=False):
                if specs and _ignored(specs, rel, False):
                    continue
                yield rel, entry.stat(follow_symlinks=False)
        except OSError:
            continue
