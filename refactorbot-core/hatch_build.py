"""Build hook: ship the plugin template (``../plugins/_template``) inside the package."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface


class TemplateHook(BuildHookInterface):
    """Add the repository's plugin template to the sdist and as ``refactorbot/_template`` in the wheel."""

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if version == "editable":
            return  # an editable install finds the template in the checkout itself
        root = Path(self.root)
        in_repo = root.parent / "plugins" / "_template"
        in_sdist = root / "_template"  # where the sdist keeps it
        source = in_repo if (in_repo / "pyproject.toml").is_file() else in_sdist
        if not (source / "pyproject.toml").is_file():
            return  # building from an unusual place: `refactorbot new` needs the repository then
        target = "_template" if self.target_name == "sdist" else "refactorbot/_template"
        build_data["force_include"][str(source)] = target
