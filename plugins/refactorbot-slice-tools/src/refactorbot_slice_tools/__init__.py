"""refactorbot tools slice: the registry of installed tools, validated execution and its log."""

from __future__ import annotations

from refactorbot_slice_tools.models import ExecuteParams, ToolInfo, ToolList, ToolsConfig, ToolStats
from refactorbot_slice_tools.slice import ToolsSlice

__all__ = ["ExecuteParams", "ToolInfo", "ToolList", "ToolStats", "ToolsConfig", "ToolsSlice"]
