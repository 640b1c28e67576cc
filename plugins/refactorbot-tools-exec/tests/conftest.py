"""Fixtures shared with every tool plugin's tests (from the testing kit), and the sandbox requirement."""

import pytest
from refactorbot.testing.tool_fixtures import ctx, outside, sentinel, workspace  # noqa: F401
from refactorbot_tools_exec import ExecRun


@pytest.fixture
def bwrap() -> None:
    """Fail (never skip) when bubblewrap cannot sandbox here: it is a declared test requirement."""
    tool = ExecRun({})
    if tool.sandbox() is None:
        pytest.fail(
            "bubblewrap is a test requirement of refactorbot-tools-exec (apt-get install bubblewrap): "
            + "; ".join(tool.warnings())
        )


@pytest.fixture(params=["off", "auto"], ids=["policy-only", "sandboxed"])
def sandbox_mode(request: pytest.FixtureRequest) -> str:
    """Run a test without and with the OS sandbox (the sandboxed run needs bubblewrap)."""
    if request.param == "auto":
        request.getfixturevalue("bwrap")
    return str(request.param)
