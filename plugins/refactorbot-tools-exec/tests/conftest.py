"""Fixtures shared with every tool plugin's tests (from the testing kit)."""

from refactorbot.testing.tool_fixtures import ctx, outside, sentinel, workspace  # noqa: F401
