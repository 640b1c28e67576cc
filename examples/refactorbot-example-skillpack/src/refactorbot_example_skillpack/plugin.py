"""Entry point of refactorbot-example-skillpack: the folder of skills it ships."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from refactorbot import hookimpl

#: The plugin API versions this plugin supports.
REFACTORBOT_API = 1


@hookimpl
def register_skills(register: Callable[[Path], None]) -> None:
    """Register the skills folder installed with this package."""
    register(Path(__file__).parent / "skills")
