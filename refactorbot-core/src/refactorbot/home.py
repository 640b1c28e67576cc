"""Where refactorbot keeps its data when ``--home`` is not given, and keeping it owner-only (cheap to import).

The home holds the API token, the configuration and every database, so it is private to its
owner: the directory is ``0700`` and the files refactorbot creates in it are ``0600``, whatever
the process umask (files are created with an explicit mode; the umask is never changed).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from pathlib import Path

#: Mode of the home directory and of its ``slices`` folder.
PRIVATE_DIR = 0o700
#: Mode of every file refactorbot creates in the home.
PRIVATE_FILE = 0o600


def default_home(env: Mapping[str, str] | None = None) -> Path:
    """Return ``RB_HOME`` or the per-user data directory."""
    env = os.environ if env is None else env
    if env.get("RB_HOME"):
        return Path(env["RB_HOME"]).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir("refactorbot", appauthor=False))


def make_private(path: Path) -> str | None:
    """Remove group and other permissions from ``path`` (not following a symlink).

    Return ``"<path> 0644 -> 0600"`` when the mode changed, None when it was already private
    or ``path`` does not exist.
    """
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return None
    if stat.S_ISLNK(info.st_mode):
        return None
    mode = stat.S_IMODE(info.st_mode)
    if not mode & 0o077:
        return None
    os.chmod(path, mode & 0o700)
    return f"{path} {mode:04o} -> {mode & 0o700:04o}"


def private_dir(path: Path) -> str | None:
    """Create ``path`` (and missing parents) with the final folder ``0700``; tighten it if it exists."""
    if not path.is_dir():
        path.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
        os.chmod(path, PRIVATE_DIR)  # mkdir's mode is narrowed by the umask; set it exactly
        return None
    return make_private(path)


def create_private_file(path: Path) -> str | None:
    """Create an empty ``path`` with mode ``0600`` unless it exists; tighten an existing one.

    Return what was tightened (see ``make_private``), or None.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), PRIVATE_FILE)
    except FileExistsError:
        return make_private(path)
    try:
        os.fchmod(fd, PRIVATE_FILE)  # exactly 0600: a strict umask must not leave it unwritable
    finally:
        os.close(fd)
    return None


def secure_home(home: Path) -> list[str]:
    """Make ``home`` private: create it ``0700``, tighten it, its files, ``slices/`` and the files there.

    Only group and other permissions are removed; other folders (``workspace/``) keep their
    modes but are unreachable through the ``0700`` home. The changes are logged as a warning,
    unless the home was an empty folder (just created by the caller: nothing was exposed).
    Return the changes.
    """
    exposed = home.is_dir() and any(home.iterdir())
    changes = [change for change in [private_dir(home)] if change]
    folders = [home]
    slices = home / "slices"
    if slices.is_dir() and not slices.is_symlink():
        changes += [change for change in [make_private(slices)] if change]
        folders.append(slices)
    for folder in folders:
        for entry in sorted(folder.iterdir()):
            if entry.is_file() and not entry.is_symlink():
                change = make_private(entry)
                if change:
                    changes.append(change)
    if changes:
        import logging  # here, not at the top: a command that only reads the home never imports it

        shown = "; ".join(changes[:5]) + (f"; and {len(changes) - 5} more" if len(changes) > 5 else "")
        level = logging.WARNING if exposed else logging.DEBUG
        logging.getLogger("refactorbot.home").log(
            level, "home %s was open to other users; removed their permissions: %s", home, shown
        )
    return changes
