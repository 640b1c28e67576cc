"""The one place for path safety: confine user-supplied paths to a workspace directory.

``Workspace.resolve`` turns a path a model (or a user) wrote into a real, symlink-free path
inside the workspace, or raises ``PathOutsideWorkspace`` with one line saying why. Tools then
open what it returned through ``Workspace.open_dir`` / ``Workspace.open_file``, which walk the
path again one component at a time with ``O_NOFOLLOW``: a directory swapped for a symlink
between the check and the use is refused instead of followed.

Version-control metadata (``.git``, ``.hg``, ``.svn``, ``.bzr`` and any folder git would take
for a repository) can be read but never written, created or deleted through a ``Workspace``:
``resolve(path, write=True)``, ``write_file``, ``open_file`` with a writing flag and
``open_dir(create=True)`` refuse it, so a tool cannot plant hooks or configuration that git
would later obey.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import re
import stat
import unicodedata
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote

from refactorbot.errors import PathOutsideWorkspace

#: Longest path accepted, in characters.
MAX_PATH_CHARS = 1024
#: Longest single component accepted, in UTF-8 bytes (the usual file-system limit).
MAX_NAME_BYTES = 255
#: Deepest path accepted, in components.
MAX_DEPTH = 64

_DRIVE = re.compile(r"^[A-Za-z]:")
_PERCENT_ESCAPE = re.compile(r"%[0-9A-Fa-f]{2}")
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
#: errno values of an ``O_NOFOLLOW`` open that met a symlink (or a file where a folder was).
_SWAPPED = {errno.ELOOP, errno.ENOTDIR, getattr(errno, "EMLINK", errno.ELOOP)}
#: Folder names of version-control metadata (compared case-insensitively, trailing dots and spaces ignored).
VCS_METADATA = frozenset({".git", ".hg", ".svn", ".bzr"})
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


class Workspace:
    """A directory tools are confined to; every path goes through ``resolve``."""

    def __init__(self, root: str | os.PathLike[str], *, create: bool = True) -> None:
        path = Path(root).expanduser()
        if create:
            path.mkdir(parents=True, exist_ok=True)
        if not path.is_dir():
            raise PathOutsideWorkspace(f"workspace {path} is not a directory")
        self.root = Path(os.path.realpath(path))

    def __repr__(self) -> str:
        return f"Workspace({str(self.root)!r})"

    # -- checking --------------------------------------------------------------------------

    def resolve(self, user_path: str, *, write: bool = False) -> Path:
        """Return the real path of ``user_path`` inside the workspace, or raise ``PathOutsideWorkspace``.

        The path must be relative; ``.`` is the workspace itself. It need not exist yet. With
        ``write`` (the caller will create, change, move or delete it), a path inside
        version-control metadata is refused too (see ``check_writable``).
        """
        parts = self._parts(user_path)
        current = self.root
        missing = False
        for index, name in enumerate(parts):
            candidate = current / name
            if missing:
                current = candidate
                continue
            try:
                info = os.lstat(candidate)
            except FileNotFoundError:
                missing, current = True, candidate
                continue
            except NotADirectoryError:
                shown = "/".join(parts[:index])
                raise PathOutsideWorkspace(f"{user_path!r}: '{shown}' is not a directory") from None
            except OSError as exc:
                raise PathOutsideWorkspace(f"{user_path!r}: cannot inspect: {exc.strerror}") from None
            if stat.S_ISLNK(info.st_mode):
                current = self._follow(user_path, candidate, "/".join(parts[: index + 1]))
            else:
                current = candidate
        if not missing:
            self._refuse_special(user_path, current)
        if write:
            self.check_writable(current)
        return current

    def check_writable(self, path: str | os.PathLike[str]) -> None:
        """Raise ``PathOutsideWorkspace`` when ``path`` (a real path in the workspace) is VCS metadata.

        Refused: a component named ``.git``, ``.hg``, ``.svn`` or ``.bzr`` (in any case, also with
        trailing dots or spaces), and anything inside a folder git would take for a repository
        (``HEAD`` plus ``objects/`` and ``refs/``, or a ``commondir`` file): that covers bare
        repositories and the folders that ``.git`` files point to (``gitdir: ...``).
        """
        rel = os.path.relpath(path, self.root)
        if rel == os.curdir:
            return
        parts = rel.split(os.sep)
        if parts[0] == os.pardir:
            raise PathOutsideWorkspace(f"{path}: not inside the workspace")
        for part in parts:
            if part.lower().rstrip(". ") in VCS_METADATA:
                raise PathOutsideWorkspace(
                    f"'{rel}' is version-control metadata ({part}); it cannot be written, created or deleted"
                )
        folder = self.root
        for part in parts:
            folder = folder / part
            if _looks_like_git_dir(folder):
                shown = self.relative(folder)
                raise PathOutsideWorkspace(
                    f"'{rel}' is inside a git repository's metadata folder ('{shown}');"
                    " it cannot be written, created or deleted"
                )

    def contains(self, path: str | os.PathLike[str]) -> bool:
        """Return whether the real path ``path`` is the workspace or lies inside it."""
        real = os.path.realpath(path)
        return real == str(self.root) or real.startswith(str(self.root) + os.sep)

    def relative(self, path: str | os.PathLike[str]) -> str:
        """Return ``path`` (inside the workspace) relative to its root, ``.`` for the root."""
        rel = os.path.relpath(path, self.root)
        return "." if rel == os.curdir else rel

    def _parts(self, user_path: str) -> list[str]:
        if not isinstance(user_path, str):
            raise PathOutsideWorkspace(f"path must be a string, not {type(user_path).__name__}")
        if not user_path or not user_path.strip():
            raise PathOutsideWorkspace("path is empty")
        shown = user_path if len(user_path) <= 80 else user_path[:77] + "..."
        if len(user_path) > MAX_PATH_CHARS:
            raise PathOutsideWorkspace(f"path is too long ({len(user_path)} characters, limit {MAX_PATH_CHARS})")
        if "\x00" in user_path:
            raise PathOutsideWorkspace(f"{shown!r}: NUL bytes are not allowed in paths")
        for char in user_path:
            if unicodedata.category(char) in ("Cc", "Cf"):
                raise PathOutsideWorkspace(
                    f"{shown!r}: control or invisible character U+{ord(char):04X} is not allowed in paths"
                )
        if "\\" in user_path:
            raise PathOutsideWorkspace(f"{shown!r}: backslashes are not allowed (use '/'-separated relative paths)")
        if _DRIVE.match(user_path):
            raise PathOutsideWorkspace(f"{shown!r}: drive-letter paths are not allowed (use a relative path)")
        if user_path.startswith("/"):
            raise PathOutsideWorkspace(
                f"{shown!r}: absolute paths are not allowed (use a path relative to the workspace)"
            )
        if _PERCENT_ESCAPE.search(user_path) and unquote(user_path) != user_path:
            raise PathOutsideWorkspace(f"{shown!r}: percent-encoded paths are not allowed (write the name as is)")
        self._refuse_lookalikes(shown, user_path)
        parts = [p for p in user_path.split("/") if p not in ("", ".")]
        if len(parts) > MAX_DEPTH:
            raise PathOutsideWorkspace(f"{shown!r}: path is too deep ({len(parts)} levels, limit {MAX_DEPTH})")
        for part in parts:
            if part == "..":
                raise PathOutsideWorkspace(f"{shown!r}: '..' is not allowed in paths")
            if part[0] in "~$":
                raise PathOutsideWorkspace(f"{shown!r}: '{part[0]}' expansion is not supported in paths")
            if set(part) <= {".", " "}:
                raise PathOutsideWorkspace(f"{shown!r}: a name made only of dots and spaces is not allowed")
            if part != part.strip():
                raise PathOutsideWorkspace(f"{shown!r}: names may not start or end with whitespace")
            if len(part.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES:
                raise PathOutsideWorkspace(f"{shown!r}: a name is longer than {MAX_NAME_BYTES} bytes")
        return parts

    @staticmethod
    def _refuse_lookalikes(shown: str, user_path: str) -> None:
        # Look-alikes of '.' and '/' (fullwidth, one-dot leader, ...) become real ones under
        # NFKC, which some tools and file systems apply; refuse them rather than guess.
        folded = unicodedata.normalize("NFKC", user_path)
        if folded == user_path:
            return
        if folded.count("/") != user_path.count("/") or "\\" in folded:
            raise PathOutsideWorkspace(f"{shown!r}: a look-alike of a path separator is not allowed")
        raw_parts, folded_parts = user_path.split("/"), folded.split("/")
        for raw, norm in zip(raw_parts, folded_parts, strict=False):
            if raw != norm and set(norm) <= {"."}:
                raise PathOutsideWorkspace(f"{shown!r}: a look-alike of '.' or '..' is not allowed")

    def _follow(self, user_path: str, link: Path, shown: str) -> Path:
        try:
            target = os.path.realpath(link, strict=True)
        except OSError:
            raise PathOutsideWorkspace(
                f"{user_path!r}: symlink '{shown}' is broken or loops (symlinks must point to existing files)"
            ) from None
        if not self.contains(target):
            raise PathOutsideWorkspace(f"{user_path!r}: symlink '{shown}' points outside the workspace")
        return Path(target)

    @staticmethod
    def _refuse_special(user_path: str, path: Path) -> None:
        try:
            mode = os.stat(path).st_mode
        except OSError:
            return
        if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
            raise PathOutsideWorkspace(f"{user_path!r}: devices, pipes and sockets are not allowed")

    # -- opening ---------------------------------------------------------------------------

    def open_dir(self, path: str | os.PathLike[str], *, create: bool = False) -> int:
        """Open the directory ``path`` (a result of ``resolve``) walking it with ``O_NOFOLLOW``; return its fd.

        With ``create``, missing directories are made on the way. A symlink met on the way means the
        tree changed since ``resolve`` and is refused. The caller closes the fd.
        """
        rel = os.path.relpath(path, self.root)
        parts = [] if rel == os.curdir else rel.split(os.sep)
        if parts and parts[0] == os.pardir:
            raise PathOutsideWorkspace(f"{path}: not inside the workspace")
        if create:
            self.check_writable(path)
        flags = os.O_RDONLY | _DIRECTORY | _NOFOLLOW | _CLOEXEC
        fd = os.open(self.root, flags)
        try:
            for name in parts:
                try:
                    child = os.open(name, flags, dir_fd=fd)
                except FileNotFoundError:
                    if not create:
                        raise
                    with contextlib.suppress(FileExistsError):
                        os.mkdir(name, 0o755, dir_fd=fd)
                    child = os.open(name, flags, dir_fd=fd)
                except OSError as exc:
                    if exc.errno not in _SWAPPED:
                        raise
                    raise PathOutsideWorkspace(
                        f"'{self.relative(path)}': '{name}' changed into a symlink or a file while in use"
                    ) from None
                os.close(fd)
                fd = child
        except BaseException:
            os.close(fd)
            raise
        return fd

    @contextlib.contextmanager
    def parent_dir(self, path: str | os.PathLike[str], *, create: bool = False) -> Iterator[int]:
        """Yield an fd of the directory holding ``path`` (see ``open_dir``); closed afterwards."""
        fd = self.open_dir(Path(path).parent, create=create)
        try:
            yield fd
        finally:
            os.close(fd)

    def open_file(self, path: str | os.PathLike[str], flags: int = os.O_RDONLY, mode: int = 0o644) -> int:
        """Open the file ``path`` (a result of ``resolve``) without following symlinks; return its fd.

        Only regular files are opened: a symlink, device, pipe or socket is refused. Opening for
        writing (any of ``O_WRONLY``, ``O_RDWR``, ``O_CREAT``, ``O_TRUNC``, ``O_APPEND``) refuses
        version-control metadata (``check_writable``).
        """
        if flags & _WRITE_FLAGS:
            self.check_writable(path)
        name = Path(path).name
        with self.parent_dir(path) as dir_fd:
            try:
                fd = os.open(name, flags | _NOFOLLOW | _CLOEXEC | os.O_NONBLOCK, mode, dir_fd=dir_fd)
            except OSError as exc:
                if exc.errno not in _SWAPPED:
                    raise
                raise PathOutsideWorkspace(f"'{self.relative(path)}' became a symlink while in use") from None
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise PathOutsideWorkspace(f"'{self.relative(path)}' is not a regular file")
            os.set_blocking(fd, True)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def write_file(self, path: str | os.PathLike[str], data: bytes | str, *, create_dirs: bool = True) -> None:
        """Write ``data`` to ``path`` (a result of ``resolve``) atomically, making parent folders if asked.

        Version-control metadata is refused (``check_writable``).
        """
        self.check_writable(path)
        with self.parent_dir(path, create=create_dirs) as dir_fd:
            atomic_write(Path(path).name, data, dir_fd=dir_fd)


def _looks_like_git_dir(folder: Path) -> bool:
    # What git's own discovery accepts as a repository folder (setup.c: is_git_directory).
    try:
        if not stat.S_ISDIR(os.lstat(folder).st_mode):
            return False
        if not os.path.isfile(folder / "HEAD"):
            return False
        if os.path.isfile(folder / "commondir"):
            return True
        return os.path.isdir(folder / "objects") and os.path.isdir(folder / "refs")
    except OSError:
        return False


def atomic_write(path: str | os.PathLike[str], data: bytes | str, *, dir_fd: int | None = None) -> None:
    """Write ``data`` to ``path`` atomically: a temp file in the same folder, fsync, ``os.replace``.

    With ``dir_fd``, ``path`` is a name inside that directory. Readers see the old content or
    the new, never a mix; a symlink at ``path`` is replaced, never written through.
    """
    payload = data.encode("utf-8") if isinstance(data, str) else data
    target = os.fspath(path)
    folder, name = os.path.split(target)
    tmp_name = os.path.join(folder, f".{name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC
    mode = 0o644
    with contextlib.suppress(OSError):
        current = os.stat(target, dir_fd=dir_fd, follow_symlinks=False)
        if stat.S_ISREG(current.st_mode):
            mode = stat.S_IMODE(current.st_mode)
    fd = os.open(tmp_name, flags, mode, dir_fd=dir_fd)
    try:
        with os.fdopen(fd, "wb", closefd=True) as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, target, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name, dir_fd=dir_fd)
        raise
    _fsync_dir(folder, dir_fd)


def _fsync_dir(folder: str, dir_fd: int | None) -> None:
    # Make the rename durable; not every platform lets a directory be fsynced.
    if dir_fd is not None:
        with contextlib.suppress(OSError):
            os.fsync(dir_fd)
        return
    try:
        fd = os.open(folder or os.curdir, os.O_RDONLY | _DIRECTORY | _CLOEXEC)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)


@functools.lru_cache(maxsize=64)
def _workspace_at(root: Path) -> Workspace:
    return Workspace(root)


def workspace_for(configured: str | os.PathLike[str] | None, default: str | os.PathLike[str]) -> Workspace:
    """Return the tool's configured workspace, else the caller's ``default`` (created once, then cached)."""
    return _workspace_at(Path(configured or default).expanduser())
