"""Which installed plugins the environment lets load: ``RB_LOAD_PLUGINS`` and ``RB_DISABLE_PLUGINS``.

Kept apart from ``refactorbot.plugins`` so that the command line can apply the same rule to a
cached plugin command without importing pluggy.
"""

from __future__ import annotations

import re
from collections.abc import Mapping


def normalize_name(name: str) -> str:
    """Return a distribution name in its PEP 503 normal form."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _env_list(env: Mapping[str, str], key: str) -> set[str] | None:
    value = env.get(key)
    if value is None:
        return None
    return {normalize_name(p) for p in value.split(",") if p.strip()}


def blocked(dist: str, env: Mapping[str, str]) -> bool:
    """Return whether distribution ``dist`` is kept from loading (not in ``RB_LOAD_PLUGINS``, or in ``RB_DISABLE_PLUGINS``)."""
    norm = normalize_name(dist)
    allow = _env_list(env, "RB_LOAD_PLUGINS")
    return (allow is not None and norm not in allow) or norm in (_env_list(env, "RB_DISABLE_PLUGINS") or ())
