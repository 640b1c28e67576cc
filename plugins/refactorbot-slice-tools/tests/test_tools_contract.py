"""The tools slice passes the core's ``SliceContract``."""

from __future__ import annotations

from refactorbot.testing import SliceContract
from refactorbot_slice_tools import ToolsSlice


class TestToolsSliceContract(SliceContract):
    slice_class = ToolsSlice
    plugin = "refactorbot_slice_tools.plugin"
    valid_payloads = {
        "list": {"include_disabled": True},
        "execute": {"tool": "no_such_tool", "arguments": {}},
        "stats": {},
        "history": {"limit": 5},
    }
    invalid_payloads = {
        "execute": [{"arguments": {}}, {"tool": ""}, {"tool": "x", "unknown": 1}],
        "history": [{"limit": 0}, {"limit": 5000}],
        "enable": [{}],
    }
