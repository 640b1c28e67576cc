"""Whether a skill's requirements are met here: programs on ``PATH``, environment variables, the OS."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Mapping

from refactorbot_slice_skills.skillfile import Requirements


def unmet(requires: Requirements, env: Mapping[str, str], platform: str = sys.platform) -> str | None:
    """Return why ``requires`` is not met (one line), or ``None`` when the skill can be used."""
    reasons = []
    if requires.os and platform not in requires.os:
        reasons.append(f"runs only on {', '.join(requires.os)} (this is {platform})")
    path = env.get("PATH", "")
    missing = [b for b in requires.bins if shutil.which(b, path=path) is None]
    if missing:
        reasons.append(f"needs program(s) not found on PATH: {', '.join(missing)}")
    if requires.any_bins and not any(shutil.which(b, path=path) for b in requires.any_bins):
        reasons.append(f"needs one of these programs on PATH: {', '.join(requires.any_bins)}")
    unset = [name for name in requires.env if not env.get(name)]
    if unset:
        reasons.append(f"needs environment variable(s) set: {', '.join(unset)}")
    return "; ".join(reasons) or None
