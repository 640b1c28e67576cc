"""A notes and to-do slice for refactorbot: the worked example of the plugin-authoring guide."""

from __future__ import annotations

__version__ = "0.1.0"
