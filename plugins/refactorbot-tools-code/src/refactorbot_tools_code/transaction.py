"""Write several files as one transaction: all the changes land, or none does.

Every change is computed and checked in memory first (``Change``: new bytes, or a deletion).
``commit`` then checks that no file changed since it was read, writes each file atomically
(``Workspace.write_file``: a temporary file, fsync, rename — a reader sees the old content or the
new, never a mix) and deletes what is deleted. When any step fails it puts back, in reverse
order, every file it had already touched — the old bytes and mode, or no file at all where there
was none — and removes the folders it created, then raises ``ToolError`` saying what failed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import stat
from pathlib import Path

from refactorbot import ToolError, Workspace


@dataclasses.dataclass
class Change:
    """One file's change: ``data`` is its new content (None: delete it)."""

    path: Path
    rel: str
    data: bytes | None
    original: bytes | None  # None: the file does not exist yet
    original_mode: int | None = None
    mode: int | None = None  # permission bits to set (None: keep the old ones, or 0o644)


def read_original(ws: Workspace, path: Path, rel: str, limit: int | None) -> tuple[bytes | None, int | None]:
    """Return the file's bytes and permission bits, or (None, None) when it does not exist."""
    try:
        fd = ws.open_file(path)
    except FileNotFoundError:
        return None, None
    except OSError as exc:
        raise ToolError(f"'{rel}' cannot be read: {exc.strerror or exc}") from None
    with os.fdopen(fd, "rb") as handle:
        mode = stat.S_IMODE(os.fstat(handle.fileno()).st_mode)
        data = handle.read() if limit is None else handle.read(limit + 1)
    if limit is not None and len(data) > limit:
        raise ToolError(f"'{rel}' is over the {limit}-byte limit of the code tools")
    return data, mode


def decode(rel: str, data: bytes) -> str:
    """Return ``data`` as text, refusing binary and non-UTF-8 files in one line."""
    if b"\x00" in data[:8192]:
        raise ToolError(f"'{rel}' is a binary file; only text files can be edited")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ToolError(f"'{rel}' is not UTF-8 text (byte {exc.start})") from None


def commit(ws: Workspace, changes: list[Change]) -> None:
    """Apply ``changes`` all together, or restore every file touched and raise ``ToolError``."""
    for change in changes:
        _unchanged_since_read(ws, change)
    done: list[Change] = []
    created_dirs: list[Path] = []
    try:
        for change in changes:
            if change.data is None:
                _delete(ws, change)
            else:
                created_dirs += _missing_parents(ws, change.path)
                ws.write_file(change.path, change.data, create_dirs=True)
                mode = change.mode if change.mode is not None else change.original_mode
                if mode is not None:
                    _chmod(ws, change.path, mode)
            done.append(change)
    except Exception as exc:
        failed = changes[len(done)].rel
        problems = _roll_back(ws, done, created_dirs)
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        message = f"nothing was changed: writing '{failed}' failed ({reason}); every file was restored"
        if problems:
            message = (
                f"writing '{failed}' failed ({reason}) and restoring failed for {', '.join(problems)}; "
                "those files may hold the new content"
            )
        raise ToolError(message) from None


def _unchanged_since_read(ws: Workspace, change: Change) -> None:
    current, _ = read_original(ws, change.path, change.rel, None)
    if _digest(current) != _digest(change.original):
        raise ToolError(f"'{change.rel}' changed while the edit was being prepared; read it again and retry")


def _digest(data: bytes | None) -> str | None:
    return None if data is None else hashlib.sha256(data).hexdigest()


def _delete(ws: Workspace, change: Change) -> None:
    with ws.parent_dir(change.path) as dir_fd:
        os.unlink(change.path.name, dir_fd=dir_fd)


def _chmod(ws: Workspace, path: Path, mode: int) -> None:
    fd = ws.open_file(path)
    try:
        os.fchmod(fd, mode)
    finally:
        os.close(fd)


def _missing_parents(ws: Workspace, path: Path) -> list[Path]:
    """Return the folders ``write_file`` will create for ``path``, deepest last."""
    missing: list[Path] = []
    folder = path.parent
    while folder != ws.root and not folder.exists():
        missing.append(folder)
        folder = folder.parent
    return list(reversed(missing))


def _roll_back(ws: Workspace, done: list[Change], created_dirs: list[Path]) -> list[str]:
    """Undo ``done`` in reverse order; return the files that could not be restored."""
    problems: list[str] = []
    for change in reversed(done):
        try:
            if change.original is None:
                with contextlib.suppress(FileNotFoundError), ws.parent_dir(change.path) as dir_fd:
                    os.unlink(change.path.name, dir_fd=dir_fd)
            else:
                ws.write_file(change.path, change.original, create_dirs=True)
                if change.original_mode is not None:
                    _chmod(ws, change.path, change.original_mode)
        except Exception:
            problems.append(change.rel)
    for folder in reversed(created_dirs):
        with contextlib.suppress(OSError):
            os.rmdir(folder)  # only when empty: something else may have been put there since
    return problems
