"""Find skills in their sources, in precedence order, re-reading only folders that changed.

Sources, first wins on a name: the workspace's ``skills/``, ``<home>/skills``, the workspace's
``.agents/skills``, the user's ``~/.agents/skills``, any ``extra_dirs``, then the folders skill
packs register (``register_skills``). A skill of the same name further down is listed as
shadowed, not loaded. Every folder that is not a valid skill is listed with the reason it was
refused. Two sources that are the same folder (through a symlink, say) are read once.

A skill folder may be a symlink, as the installers of other agents make them (one copy in
``~/.agents/skills``, a link to it in each agent's folder), when the folder it points to lies
inside a skill source or the workspace; a link to anywhere else is refused, and nothing inside a
skill may point out of it (``folder.walk``).
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
    linked_to: Path | None = None  # the real folder, when ``path`` is a symlink to it
    writable: bool = True  # whether the workshop may change the skill where it lives


def _inside(path: str, root: str) -> bool:
    return path.startswith(root.rstrip(os.sep) + os.sep)


class Scanner:
    """Scans sources; keeps each folder's parse while none of its files changed."""

    def __init__(self) -> None:
        self._cache: dict[str, tuple[tuple[Entry, ...], SkillFolder]] = {}
        self.scans = 0

    def scan(self, sources: list[Source], also_allowed: tuple[Path, ...] = ()) -> list[Found]:
        """Return every folder met in ``sources``, winners first within precedence order.

        A skill folder that is a symlink is followed when it points inside one of the sources or
        ``also_allowed`` (the workspace); it is refused otherwise.
        """
        self.scans += 1
        found: list[Found] = []
        winners: dict[str, str] = {}
        live: set[str] = set()
        real_sources: list[tuple[Source, str]] = []
        for source in sources:
            real = os.path.realpath(source.path)
            if all(real != other for _, other in real_sources):
                real_sources.append((source, real))
        allowed = [real for _, real in real_sources] + [os.path.realpath(p) for p in also_allowed]
        read_only = [real for source, real in real_sources if not source.writable]
        for source, _ in real_sources:
            for path in _children(source.path):
                item = self._one(source, path, allowed, read_only)
                live.add(self._key(path, item.linked_to))
                if item.skill is not None:
                    if item.name in winners:
                        item = dataclasses.replace(item, skill=None, shadowed_by=winners[item.name])
                    else:
                        winners[item.name] = f"{source.label} ({path})"
                found.append(item)
        for stale in set(self._cache) - live:
            del self._cache[stale]
        return found

    @staticmethod
    def _key(path: Path, linked_to: Path | None) -> str:
        return f"{path}\0{linked_to}" if linked_to is not None else str(path)

    def _one(self, source: Source, path: Path, allowed: list[str], read_only: list[str]) -> Found:
        name = path.name
        folder, linked = path, None
        try:
            check_name(name)
            if path.is_symlink():
                target = os.path.realpath(path)
                if target in allowed:
                    raise SkillError("the skill folder is a symlink to a whole skill source")
                if not any(_inside(target, root) for root in allowed):
                    raise SkillError(
                        f"the skill folder is a symlink to {target}, outside every skill source and the workspace;"
                        " copy the skill, or add its parent folder to [slices.skills] extra_dirs"
                    )
                folder = linked = Path(target)
            writable = source.writable and not any(_inside(os.path.realpath(folder), r) for r in read_only)
            files = tuple(walk(folder))
            key = self._key(path, linked)
            cached = self._cache.get(key)
            if cached is not None and cached[0] == files:
                return Found(name, source, path, skill=cached[1], linked_to=linked, writable=writable)
            if not any(f.path == SKILL_FILE for f in files) and not os.path.lexists(folder / SKILL_FILE):
                raise SkillError("no SKILL.md in the folder")
            skill = load_folder(folder, name=name)
        except SkillError as exc:
            self._cache.pop(self._key(path, linked), None)
            return Found(name, source, path, error=str(exc), linked_to=linked)
        self._cache[key] = (skill.files, skill)
        return Found(name, source, path, skill=skill, linked_to=linked, writable=writable)


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
