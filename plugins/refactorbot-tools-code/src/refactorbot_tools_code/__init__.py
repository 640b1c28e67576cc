"""refactorbot agent tools for code: indexed search, transactional multi-file patches, multi-step edits."""

from __future__ import annotations

from refactorbot_tools_code.tools import ApplyPatch, CodeConfig, CodeSearch, EditFile

__all__ = ["ApplyPatch", "CodeConfig", "CodeSearch", "EditFile"]
