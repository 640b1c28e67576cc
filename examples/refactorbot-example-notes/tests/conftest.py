from __future__ import annotations

from typing import Any

import pytest

PLUGIN = "refactorbot_example_notes.plugin"


@pytest.fixture
def rb_plugins() -> list[Any]:
    """Register only the notes plugin in ``rb_host``."""
    return [PLUGIN]


@pytest.fixture
def rb_config() -> dict[str, Any]:
    """Keep the supervisor quiet and the note limit small enough to reach in a test."""
    return {"core": {"health_interval": 3600}, "slices": {"notes": {"max_notes": 5}}}
