"""Check a skill's folder: what it holds, that nothing in it leads outside it, and its content hash.

A skill is a folder with ``SKILL.md``; it may hold ``scripts/``, ``references/``, ``assets/`` and
anything else, within limits. Refused, with one line: a skill folder that is itself a symlink, a
``SKILL.md`` that is not a regular file, a symlink inside the folder that resolves outside it,
devices, pipes and sockets, too many files, too deep a tree, a file or a total over the size
limits. The content hash is SHA-256 over every regular file's relative path and bytes, so any
change to the skill changes it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import stat
from pathlib import Path

from refactorbot_slice_skills.skillfile import MAX_SKILL_MD_BYTES, SkillError, SkillSpec, parse_skill

SKILL_FILE = "SKILL.md"
#: Most entries (files, folders, links) in one skill.
MAX_ENTRIES = 1000
#: Deepest path inside a skill, in components.
MAX_DEPTH = 12
#: Largest single file in a skill, in bytes.
MAX_FILE_BYTES = 16 * 1024 * 1024
#: Largest skill, all files together, in bytes.
MAX_TOTAL_BYTES = 64 * 1024 * 1024


@dataclasses.dataclass(frozen=True)
class Entry:
    """One file of a skill: its path relative to the skill folder, size and modification time."""

    path: str
    size: int
    mtime_ns: int


@dataclasses.dataclass(frozen=True)
class SkillFolder:
    """A checked skill folder: its parsed ``SKILL.md``, files and content hash."""

    path: Path
    spec: SkillSpec
    files: tuple[Entry, ...]
    content_hash: str
    skill_md: str


def walk(folder: Path) -> list[Entry]:
    """Return the regular files of a skill folder, or raise ``SkillError`` at the first thing refused."""
    try:
        info = os.lstat(folder)
    except OSError as exc:
        raise SkillError(f"cannot read the skill folder: {exc.strerror}") from None
    if stat.S_ISLNK(info.st_mode):
        raise SkillError("the skill folder is a symlink; copy the skill instead")
    if not stat.S_ISDIR(info.st_mode):
        raise SkillError("not a folder")
    root = os.path.realpath(folder)
    entries: list[Entry] = []
    seen = total = 0
    for current, dirs, files in os.walk(folder, followlinks=False, onerror=_raise):
        rel_dir = os.path.relpath(current, folder)
        depth = 0 if rel_dir == os.curdir else rel_dir.count(os.sep) + 1
        if depth >= MAX_DEPTH:
            raise SkillError(f"'{rel_dir}' is nested deeper than {MAX_DEPTH} folders")
        for name in sorted([*dirs, *files]):
            seen += 1
            if seen > MAX_ENTRIES:
                raise SkillError(f"more than {MAX_ENTRIES} files and folders")
            full = os.path.join(current, name)
            rel = os.path.normpath(os.path.join(rel_dir, name))
            info = os.lstat(full)
            if stat.S_ISLNK(info.st_mode):
                _check_link(full, rel, root)
                continue
            if stat.S_ISDIR(info.st_mode):
                continue
            if not stat.S_ISREG(info.st_mode):
                raise SkillError(f"'{rel}' is not a regular file (a device, pipe or socket)")
            if info.st_size > MAX_FILE_BYTES:
                raise SkillError(f"'{rel}' is {info.st_size} bytes, over the limit of {MAX_FILE_BYTES}")
            total += info.st_size
            if total > MAX_TOTAL_BYTES:
                raise SkillError(f"the skill's files total over {MAX_TOTAL_BYTES} bytes")
            entries.append(Entry(rel.replace(os.sep, "/"), info.st_size, info.st_mtime_ns))
    return entries


def _raise(exc: OSError) -> None:
    raise SkillError(f"cannot read '{exc.filename}': {exc.strerror}")


def _check_link(full: str, rel: str, root: str) -> None:
    target = os.path.realpath(full)
    if target != root and not target.startswith(root + os.sep):
        raise SkillError(f"symlink '{rel}' points outside the skill folder")
    if not os.path.exists(target):
        raise SkillError(f"symlink '{rel}' is broken")


def read_skill_md(folder: Path) -> str:
    """Return the text of ``folder/SKILL.md`` (a regular file, within the size limit), or raise ``SkillError``."""
    path = folder / SKILL_FILE
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0) | os.O_NONBLOCK
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise SkillError("no SKILL.md in the folder") from None
    except OSError as exc:
        raise SkillError(f"SKILL.md cannot be opened ({exc.strerror}); it must be a regular file") from None
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            raise SkillError("SKILL.md is not a regular file")
        data = handle.read(MAX_SKILL_MD_BYTES + 1)
    if len(data) > MAX_SKILL_MD_BYTES:
        raise SkillError(f"SKILL.md is over the limit of {MAX_SKILL_MD_BYTES} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SkillError(f"SKILL.md is not UTF-8 text (byte {exc.start})") from None


def content_hash(folder: Path, files: list[Entry] | tuple[Entry, ...]) -> str:
    """Return the SHA-256 over every file's relative path and bytes, in path order."""
    digest = hashlib.sha256()
    for entry in sorted(files, key=lambda e: e.path):
        digest.update(entry.path.encode("utf-8", "surrogateescape") + b"\0")
        digest.update(str(entry.size).encode() + b"\0")
        with open(folder / entry.path, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 16), b""):
                digest.update(chunk)
    return digest.hexdigest()


def load_folder(folder: Path, name: str | None = None) -> SkillFolder:
    """Return the checked skill in ``folder``, or raise ``SkillError`` with one line.

    ``name`` is the name the skill must carry (default: the folder's); a skill reached through a
    symlink carries the link's name.
    """
    files = walk(folder)
    text = read_skill_md(folder)
    spec = parse_skill(text, name or folder.name)
    return SkillFolder(
        path=folder, spec=spec, files=tuple(files), content_hash=content_hash(folder, files), skill_md=text
    )
