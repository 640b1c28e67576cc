"""The integration tests run with every distribution of the repository installed (``nox -s integration``).

A distribution missing from the environment would turn its tests into skips or import errors far from
the cause, so the run stops before collecting anything, naming what is missing. The list is read from
the ``pyproject.toml`` files under ``plugins/`` and ``examples/``, the way the noxfile finds what to
install (the template is a pattern to copy, never installed).
"""

from __future__ import annotations

import importlib.metadata
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def required_distributions() -> list[str]:
    """Return the name of every distribution under ``plugins/`` and ``examples/`` but the template."""
    names = []
    for parent in ("plugins", "examples"):
        for pyproject in sorted((ROOT / parent).glob("*/pyproject.toml")):
            if not pyproject.parent.name.endswith("_template"):
                names.append(tomllib.loads(pyproject.read_text())["project"]["name"])
    return names


def missing_distributions() -> list[str]:
    """Return the required distributions this environment does not have installed."""
    missing = []
    for name in required_distributions():
        try:
            importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            missing.append(name)
    return missing


def pytest_configure(config: pytest.Config) -> None:
    missing = missing_distributions()
    if missing:
        raise pytest.UsageError(
            f"tests/ needs every distribution of the repository installed; missing: {', '.join(missing)}. "
            "`nox -s integration` installs them all and runs tests/."
        )
