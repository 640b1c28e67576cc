"""The ``refactorbot`` command line (click); plugins add commands with ``register_commands``."""

from __future__ import annotations

from refactorbot.cli.main import main

__all__ = ["main"]
