"""Find skills in their sources, in precedence order, re-reading only folders that changed.

Sources, first wins on a name: the workspace's ``skills/``, ``<home>/skills``, the workspace's
``.agents/skills``, any ``extra_dirs``, then the folders skill packs register
(``register_skills``). A skill of the same name further down is listed as shadowed, not loaded.
Every folder that is not a valid skill is listed with the reason it was refused.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from refactorbot_slice_skills.folder import SKILL_FILE, Entry, SkillFolder, load_folder, walk
from refactorbot_slice_skills.skillfile import SkillError, check_name

#: Most skill folders read from one source.
MAX_SKILLS_PER_SOURCE = 2000


@dataclasses.dataclass(frozen=True)
class Source:
    """A folder of skills: its kind (``workspace``, ``home``, ``agents``, ``extra``, ``pack``), label and path."""

    kind: str
    label: str
    path: Path
    writable: bool = True


@dataclasses.dataclass(frozen=True)
class Found:
    """One folder met in a source: a loaded skill, or one refused or shadowed, with why."""

    name: str
    source: Source
    path: Path
    skill: SkillFolder | None = None
    error: str | None = None
    shadowed_by: str | None = None


class Scanner:
    """Scans sources; keeps each folder's parse while none of its files changed."""

    def __init__(self) -> None:
        self._cache: dict[str, tuple[tuple[Entry, ...], SkillFolder]] = {}

    def scan(self, sources: list[Source]) -> list[Found]:
        """Return every folder met in ``sources``, winners first within precedence order."""
        found: list[Found] = []
        winners: dict[str, str] = {}
        live: set[str] = set()
        for source in sources:
            for path in _children(source.path):
                live.add(str(path))
                item = self._one(source, path)
                if item.skill is not None:
                    if item.name in winners:
                        item = dataclasses.replace(item, skill=None, shadowed_by=winners[item.name])
                    else:
                        winners[item.name] = f"{source.label} ({path})"
                found.append(item)
        for stale in set(self._cache) - live:
            del self._cache[stale]
        return found

    def _one(self, source: Source, path: Path) -> Found:
        name = path.name
        try:
            check_name(name)
            files = tuple(walk(path))
            cached = self._cache.get(str(path))
            if cached is not None and cached[0] == files:
                return Found(name, source, path, skill=cached[1])
            if not any(f.path == SKILL_FILE for f in files) and not os.path.lexists(path / SKILL_FILE):
                raise SkillError("no SKILL.md in the folder")
            skill = load_folder(path)
        except SkillError as exc:
            self._cache.pop(str(path), None)
            return Found(name, source, path, error=str(exc))
        self._cache[str(path)] = (skill.files, skill)
        return Found(name, source, path, skill=skill)


def _children(root: Path) -> list[Path]:
    """Return the entries of a source folder that may be skills (not hidden, folders or links)."""
    try:
        names = sorted(os.listdir(root))
    except OSError:
        return []
    paths = []
    for name in names:
        if name.startswith("."):
            continue
        path = root / name
        if path.is_symlink() or path.is_dir():
            paths.append(path)
        if len(paths) >= MAX_SKILLS_PER_SOURCE:
            break
    return paths
