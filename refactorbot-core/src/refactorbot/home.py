"""Where refactorbot keeps its data when ``--home`` is not given (cheap to import)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path


def default_home(env: Mapping[str, str] | None = None) -> Path:
    """Return ``RB_HOME`` or the per-user data directory."""
    env = os.environ if env is None else env
    if env.get("RB_HOME"):
        return Path(env["RB_HOME"]).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir("refactorbot", appauthor=False))
