from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

SKILLS = "refactorbot_slice_skills.plugin"
PEERS = Path(__file__).parent / "peers"
# No background rescans: tests scan through the operations (reload, list, install...) or turn it on.
QUIET: dict[str, Any] = {"core": {"health_interval": 3600}, "slices": {"skills": {"rescan_interval": 0}}}


def write_skill(
    root: Path, name: str, description: str = "Does a thing.", body: str = "Do it.", extra: str = ""
) -> Path:
    """Write ``root/name/SKILL.md`` and return the skill folder."""
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "SKILL.md").write_text(f"---\nname: {name}\ndescription: {description}\n{extra}---\n\n{body}\n")
    return folder


def copy_peers(target: Path) -> Path:
    """Copy the peer skills (published shapes of other agents) into ``target``."""
    shutil.copytree(PEERS, target, dirs_exist_ok=True)
    return target


@pytest.fixture(autouse=True)
def user_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point HOME at an empty folder, so ``~/.agents/skills`` is the test's, never the developer's."""
    home = tmp_path / "user-home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    return home


@pytest.fixture
def rb_plugins() -> list[Any]:
    return [SKILLS]


@pytest.fixture
def rb_config() -> dict[str, Any]:
    return QUIET
