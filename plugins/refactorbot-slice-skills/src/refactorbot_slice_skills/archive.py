"""Install a skill from a folder or a zip archive into a skills folder, and nowhere else.

A zip is checked member by member before anything is written: no absolute paths, drive letters,
``..`` or backslashes (zip-slip), no symlinks or special files, at most ``MAX_ENTRIES`` members,
each and all of them within the size limits by the sizes the archive declares, and within a
compression ratio (zip bombs); the bytes actually written are counted again while extracting, so
an archive that lies about its sizes is stopped at the limit. Everything is unpacked into a
hidden staging folder inside the skills folder, checked as a skill there, then renamed into place;
a refused archive leaves nothing behind.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
import zipfile
from pathlib import Path, PurePosixPath

from refactorbot_slice_skills.folder import (
    MAX_DEPTH,
    MAX_ENTRIES,
    MAX_FILE_BYTES,
    MAX_TOTAL_BYTES,
    SKILL_FILE,
    load_folder,
)
from refactorbot_slice_skills.skillfile import SkillError, check_name

#: Largest archive accepted, in bytes.
MAX_ARCHIVE_BYTES = 32 * 1024 * 1024
#: Largest ratio of a member's size to its compressed size.
MAX_RATIO = 200
STAGING_PREFIX = ".staging-"


def install(source: Path, skills_dir: Path, *, replace: bool = False) -> tuple[str, Path]:
    """Install the skill in ``source`` (a folder or a ``.zip``) into ``skills_dir``; return its name and folder."""
    skills_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=skills_dir))
    try:
        if source.is_dir() and not source.is_symlink():
            staged = _copy_folder(source, staging)
        elif source.is_file() and zipfile.is_zipfile(source):
            staged = _unzip(source, staging)
        elif source.is_file():
            raise SkillError(f"{source.name}: not a folder or a zip archive")
        else:
            raise SkillError(f"{source}: no such folder or file")
        skill = load_folder(staged)
        target = skills_dir / skill.spec.name
        if target.exists() or target.is_symlink():
            if not replace:
                raise SkillError(
                    f"a skill named {skill.spec.name!r} is already installed in {skills_dir}; pass replace"
                )
            if target.is_symlink() or not target.is_dir():
                raise SkillError(f"{target} is not a skill folder; remove it first")
            shutil.rmtree(target)
        os.rename(staged, target)
        return skill.spec.name, target
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _copy_folder(source: Path, staging: Path) -> Path:
    """Copy a checked skill folder (regular files only) into ``staging``."""
    name = check_name(source.name)
    from refactorbot_slice_skills.folder import walk

    files = walk(source)
    target = staging / name
    target.mkdir()
    for entry in files:
        destination = target / entry.path
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source / entry.path, destination, follow_symlinks=False)
    return target


def _member_parts(info: zipfile.ZipInfo) -> tuple[str, ...]:
    name = info.filename
    if "\\" in name or "\x00" in name:
        raise SkillError(f"archive member {name[:120]!r} has a backslash or NUL in its path")
    path = PurePosixPath(name)
    if path.is_absolute() or (name[:2].endswith(":")):
        raise SkillError(f"archive member {name[:120]!r} has an absolute path")
    parts = tuple(p for p in path.parts if p not in ("", "."))
    if ".." in parts:
        raise SkillError(f"archive member {name[:120]!r} climbs out of its folder ('..')")
    if len(parts) > MAX_DEPTH + 1:
        raise SkillError(f"archive member {name[:120]!r} is nested too deeply")
    return parts


def _check_members(archive: zipfile.ZipFile) -> tuple[list[tuple[zipfile.ZipInfo, tuple[str, ...]]], str]:
    """Return the members to extract and the skill's folder name, or raise ``SkillError``."""
    infos = archive.infolist()
    if len(infos) > MAX_ENTRIES:
        raise SkillError(f"archive has {len(infos)} members, over the limit of {MAX_ENTRIES}")
    members, total, tops = [], 0, set()
    for info in infos:
        parts = _member_parts(info)
        if not parts:
            continue
        # Unix mode bits; many archivers (Python's zipfile, Windows) set permissions without a file
        # type, or nothing at all: such members are files or folders (by a trailing '/').
        kind = stat.S_IFMT((info.external_attr >> 16) & 0xFFFF)
        if kind == stat.S_IFLNK:
            raise SkillError(f"archive member {info.filename[:120]!r} is a symlink")
        if kind and kind not in (stat.S_IFREG, stat.S_IFDIR):
            raise SkillError(f"archive member {info.filename[:120]!r} is not a regular file")
        if info.flag_bits & 0x1:
            raise SkillError(f"archive member {info.filename[:120]!r} is encrypted")
        if info.file_size > MAX_FILE_BYTES:
            raise SkillError(f"archive member {info.filename[:120]!r} is {info.file_size} bytes, over {MAX_FILE_BYTES}")
        if info.file_size > max(info.compress_size, 1) * MAX_RATIO and info.file_size > 1024 * 1024:
            raise SkillError(f"archive member {info.filename[:120]!r} expands more than {MAX_RATIO} times: a zip bomb")
        total += info.file_size
        if total > MAX_TOTAL_BYTES:
            raise SkillError(f"archive expands to over {MAX_TOTAL_BYTES} bytes")
        tops.add(parts[0])
        members.append((info, parts))
    names = {parts for _, parts in members}
    if (SKILL_FILE,) in names:
        raise SkillError("archive holds SKILL.md at its top; put the skill in a folder named after it")
    if len(tops) != 1:
        raise SkillError(f"archive must hold exactly one skill folder, found {len(tops)}")
    return members, check_name(next(iter(tops)))


def _unzip(source: Path, staging: Path) -> Path:
    if source.stat().st_size > MAX_ARCHIVE_BYTES:
        raise SkillError(f"archive is over the limit of {MAX_ARCHIVE_BYTES} bytes")
    try:
        with zipfile.ZipFile(source) as archive:
            members, name = _check_members(archive)
            written = 0
            for info, parts in members:
                destination = staging.joinpath(*parts)
                if info.is_dir():
                    destination.mkdir(parents=True, exist_ok=True)
                    continue
                destination.parent.mkdir(parents=True, exist_ok=True)
                with archive.open(info) as src, open(destination, "xb") as dst:
                    size = 0
                    for chunk in iter(lambda: src.read(1 << 16), b""):
                        size += len(chunk)
                        written += len(chunk)
                        if size > MAX_FILE_BYTES or size > info.file_size or written > MAX_TOTAL_BYTES:
                            raise SkillError(f"archive member {info.filename[:120]!r} is larger than it declares")
                        dst.write(chunk)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, EOFError) as exc:
        raise SkillError(f"{source.name}: not a readable zip archive: {exc}") from None
    except FileExistsError as exc:
        raise SkillError(f"archive holds {Path(str(exc.filename)).name!r} twice") from None
    return staging / name
