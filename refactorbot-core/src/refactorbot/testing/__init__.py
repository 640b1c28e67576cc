"""The testing kit for plugin authors: an isolated host, fixtures and contract tests.

Installed as a pytest plugin (entry point ``pytest11``), so its fixtures are available in any
test suite once ``refactorbot-core[testing]`` is installed. Subclass the contracts::

    from refactorbot.testing import SliceContract

    class TestNotes(SliceContract):
        slice_class = NotesSlice
        plugin = "refactorbot_example_notes.plugin"
"""

from __future__ import annotations

from refactorbot.testing.contracts import SliceContract, check_import_cost
from refactorbot.testing.host import build_host, host_running
from refactorbot.testing.tool_contract import ToolContract

__all__ = ["SliceContract", "ToolContract", "build_host", "check_import_cost", "host_running"]
